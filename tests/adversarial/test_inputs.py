"""Hostile input that must not come back out (issue 10, item 9).

- `output_paths` through a symlink in the middle of the path (`lnk/etc/passwd`, lnk -> /) must
  not turn a host file into a downloadable output;
- control characters in a job's name must not reach the terminal through the CLI's tables;
- a 422 never echoes the raw input (a text/plain login body with a password in it).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.jobfixtures import JOBS, create_job, wait_for
from tests.support import PASSWORD, LocalServer, UserSession, cli_env, run_cli


def test_an_output_path_through_a_symlink_stays_inside_the_workspace(
    user: UserSession,
) -> None:
    job = create_job(
        user,
        name="escape",
        command="ln -s / lnk && mkdir -p output && echo kept > output/ok.txt",
        output_paths=["/workspace/lnk/etc/passwd", "lnk/etc/hostname", "lnk/etc", "output"],
        timeout_minutes=10,
    )
    assert wait_for(user, job["id"], {"completed", "failed"})["status"] == "completed"
    with user.http() as http:
        listed = http.get(f"{JOBS}{job['id']}/outputs").json()["outputs"]
        assert [item["path"] for item in listed] == ["output/ok.txt"]
        for path in ("lnk/etc/passwd", "lnk/etc/hostname"):
            assert http.get(f"{JOBS}{job['id']}/outputs/{path}").status_code == 404


def test_control_characters_of_a_name_never_reach_the_terminal(
    user: UserSession, home: Path
) -> None:
    evil = "evil\x1b]0;owned\x07\x1b[2J\x9b31m-name"
    job = create_job(user, name=evil, command="true", timeout_minutes=10)
    env = cli_env(home, user.url, user.token)
    for args in (["job", "list"], ["job", "status", job["id"]]):
        shown = run_cli(args, env)
        assert shown.returncode == 0, shown.stderr
        assert "evil" in shown.stdout and "-name" in shown.stdout
        for control in ("\x1b", "\x07", "\x9b"):
            assert control not in shown.stdout, (args, shown.stdout)


def test_a_422_never_echoes_a_raw_body(server: LocalServer) -> None:
    secret = f"password={PASSWORD}-and-more"
    as_text = httpx.post(
        server.url + "/api/v1/auth/login",
        content=secret.encode(),
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    as_json_string = httpx.post(server.url + "/api/v1/auth/login", json=secret, timeout=10)
    as_list = httpx.post(server.url + "/api/v1/auth/login", json=[secret], timeout=10)
    for answer in (as_text, as_json_string, as_list):
        assert answer.status_code == 422
        assert answer.json()["error"] == "Validation error"
        assert answer.json()["details"], answer.text
        assert PASSWORD not in answer.text
