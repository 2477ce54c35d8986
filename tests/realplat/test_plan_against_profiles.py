"""Plans against both profiles: spot jobs priced at the spot rate (item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support import UserSession, cli_env, run_cli

SPEC = """project: prices
jobs:
  spot:
    command: "true"
    gpu_type: RTX 4090
  steady:
    command: "true"
    gpu_type: RTX 4090
    use_spot: false
"""


def _cheapest(url: str, machine_type: str) -> float:
    params = {"gpu_name": "RTX 4090", "max_price": 1000, "min_disk": 0, "min_inet_down": 0}
    answer = httpx.get(
        url + "/api/v1/instances/offers",
        params={**params, "machine_type": machine_type, "limit": 100},
        timeout=30,
    )
    return min(o["dph_total"] for o in answer.json()["offers"])


def test_a_spot_job_is_priced_from_interruptible_offers(
    profile_user: UserSession, tmp_path: Path
) -> None:
    (tmp_path / "dumont.yaml").write_text(SPEC)
    env = cli_env(tmp_path / "home", profile_user.url, profile_user.token)
    result = run_cli(["plan", "--output", "json"], env, cwd=tmp_path)
    assert result.returncode in (0, 2), result
    changes = {c["address"]: c for c in json.loads(result.stdout)["changes"]}
    spot, steady = changes["job.spot"]["hourly_cost"], changes["job.steady"]["hourly_cost"]
    assert spot is not None and steady is not None
    assert abs(spot - _cheapest(profile_user.url, "interruptible")) < 0.02
    assert abs(steady - _cheapest(profile_user.url, "on-demand")) < 0.02
    assert spot < steady
