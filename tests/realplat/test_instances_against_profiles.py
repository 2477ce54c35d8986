"""`instance list` against both profiles (item 9: real instances have no geolocation)."""

from __future__ import annotations

from pathlib import Path

from tests.server.instancefixtures import create, delete_all
from tests.support import UserSession, cli_env, run_cli


def test_instance_list_location_is_never_empty(
    profile_user: UserSession, real_platform: bool, tmp_path: Path
) -> None:
    with profile_user.http() as http:
        offer = http.get("/api/v1/instances/offers", params={"limit": 1}).json()["offers"][0]
        made = create(http, offer["id"], label="where")
        try:
            env = cli_env(tmp_path, profile_user.url, profile_user.token)
            table = run_cli(["instance", "list"], env)
        finally:
            delete_all(http)
    assert table.returncode == 0, table
    row = next(line for line in table.stdout.splitlines() if line.split()[:1] == [str(made["id"])])
    location = "-" if real_platform else offer["geolocation"]
    assert f" {location} " in row, row
