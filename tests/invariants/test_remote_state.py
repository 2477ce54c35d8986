"""Remote state (`backend: {type: http}`): two checkouts of one repo, each with its own HOME,
against one local control plane share one state and one lock.

- apply in the first checkout, then an empty plan (exit 0 with --detailed-exitcode) in the
  second, which has no `.dumont/state.json` at all;
- a remote lock held by someone else stops an apply with the holder's details;
  `dumont force-unlock ID` frees it;
- a stale write is refused with a clear message; push/pull round trip;
- a secret's value is in no remote document and no output.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.client.state_http import HttpStateSettings, HttpStateStore
from dumont_plan.errors import StateConflictError
from dumont_plan.state.backend import RemoteBackend
from tests.apply.applykit import Project, live_names
from tests.invariants.test_lock import first_to_exit
from tests.state.tfhttp import Backend
from tests.support import LocalServer, UserSession, new_user

SECRET = "s3cr3t-marker-7f9a2c"
SPEC = """
version: 1
project: team
backend:
  type: http
jobs:
  first:
    command: "echo one ${secret.API_KEY}"
    timeout_minutes: 10
  second:
    command: "echo after ${job.first.id}"
    timeout_minutes: 10
"""


def checkouts(tmp_path: Path, user: UserSession) -> tuple[Project, Project]:
    """Two folders with the same spec, two HOMEs, one account (a team's shared token)."""
    made = []
    for name in ("laptop", "ci"):
        home = tmp_path / name / "home"
        home.mkdir(parents=True)
        proj = Project(tmp_path / name / "repo", home, user.url, user.token, API_KEY=SECRET)
        proj.write(SPEC)
        made.append(proj)
    return made[0], made[1]


def remote_document(user: UserSession, project: str = "team") -> dict[str, Any]:
    with user.http() as http:
        response = http.get(f"/api/v1/state/{project}")
        assert response.status_code == 200, response.text
        assert SECRET not in response.text
        data: dict[str, Any] = response.json()
        return data


def lock(user: UserSession, lock_id: str, who: str = "bo@build-7") -> None:
    info = {
        "ID": lock_id,
        "Operation": "dumont apply",
        "Who": who,
        "Created": "2026-01-02T03:04:05Z",
    }
    with user.http() as http:
        assert http.request("LOCK", "/api/v1/state/team", json=info).status_code == 200


def test_two_checkouts_share_one_remote_state(tmp_path: Path, user: UserSession) -> None:
    laptop, ci = checkouts(tmp_path, user)
    outputs = [laptop("apply", "-y"), ci("plan", "--detailed-exitcode")]
    assert "No changes" in outputs[1].stdout
    for proj in (laptop, ci):
        assert not (proj.folder / ".dumont" / "state.json").exists()
    assert live_names(user.client)[0] == {"team-first": 1, "team-second": 1}
    document = remote_document(user)
    assert set(document["resources"]) == {"job.first", "job.second"}
    assert document["pending"] == []
    outputs += [ci("state", "list"), ci("apply", "-y"), ci("state", "list", "--output", "json")]
    assert "job.first" in outputs[2].stdout
    assert "No changes" in outputs[3].stdout
    listed = json.loads(outputs[4].stdout)
    assert listed["path"] == f"{user.url}/api/v1/state/team"
    assert live_names(user.client)[0] == {"team-first": 1, "team-second": 1}  # nothing twice
    for result in outputs:
        assert SECRET not in result.stdout + result.stderr

    # A lock held elsewhere stops an apply with the holder's details; force-unlock frees it.
    lock(user, "lock-from-ci-7")
    held = laptop("apply", "-y", code=1)
    assert (
        "state is locked by bo@build-7 since 2026-01-02T03:04:05Z (dumont apply); "
        "lock ID lock-from-ci-7" in held.stderr
    )
    assert "dumont force-unlock lock-from-ci-7" in held.stderr
    refused = laptop("force-unlock", "other-id", "-y", code=1)
    assert "locked by bo@build-7" in refused.stderr
    laptop("force-unlock", "lock-from-ci-7", "-y")
    assert "No changes" in laptop("apply", "-y").stdout

    # `state mv` / `state rm` in one checkout are what the other one plans from.
    ci("state", "mv", "job.second", "job.renamed")
    assert "job.renamed" in remote_document(user)["resources"]
    ci("state", "mv", "job.renamed", "job.second")
    assert "No changes" in laptop("plan").stdout
    ci("state", "rm", "job.second")  # let go: its id is never adopted again (as locally)
    assert "+ create job.second" in laptop("plan").stdout
    assert (laptop.folder / ".dumont" / ".gitignore").exists() is False  # nothing local written


def test_a_stale_write_is_refused_with_a_clear_message(tmp_path: Path, user: UserSession) -> None:
    laptop, _ = checkouts(tmp_path, user)
    laptop("apply", "-y")
    settings = HttpStateSettings(address=f"{user.url}/api/v1/state/team", token=user.token)
    backend = RemoteBackend(HttpStateStore(settings))
    try:
        with backend.locked("team", command="dumont state rm") as ledger:
            newer = ledger.state.model_copy(deep=True)
            newer.serial += 5  # someone else wrote since (under this very lock, by mistake)
            with user.http() as http:
                url = "/api/v1/state/team"
                posted = http.post(
                    url, params={"ID": ledger.lock_id}, content=newer.model_dump_json()
                )
                assert posted.status_code == 200
            with pytest.raises(StateConflictError) as caught:
                ledger.remove("job.second")
        text = str(caught.value)
        assert f"stale serial {newer.serial - 4}" in text
        assert f"the stored state is at serial {newer.serial}" in text
        assert "nothing was merged" in text
    finally:
        backend.close()
    assert "job.second" in remote_document(user)["resources"]


def test_push_and_pull_round_trip(tmp_path: Path, user: UserSession) -> None:
    home = tmp_path / "home"
    home.mkdir()
    proj = Project(tmp_path / "repo", home, user.url, user.token, API_KEY=SECRET)
    proj.write(SPEC.replace("backend:\n  type: http\n", ""))  # today's local ledger
    proj("apply", "-y")
    local = proj.state()
    assert (proj.folder / ".dumont" / ".gitignore").read_text().count("secrets.env") == 1
    asked = proj("state", "push", code=1, input="yes\n")  # no terminal: asks for -y
    assert "--auto-approve" in asked.stderr
    pushed = proj("state", "push", "-y")
    assert f"{user.url}/api/v1/state/team" in pushed.stdout
    document = remote_document(user)
    assert document["lineage"] == local["lineage"]
    assert document["resources"].keys() == local["resources"].keys()
    again = proj("state", "push", "-y", code=1)  # the remote is newer now: refused
    assert "newer" in again.stderr

    proj.write(SPEC)  # the team moves to the remote backend
    assert "No changes" in proj("plan", "--detailed-exitcode").stdout
    pulled = tmp_path / "pulled.json"
    proj("state", "pull", "-y", "--state", str(pulled))
    back = json.loads(pulled.read_text())
    assert back["lineage"] == local["lineage"]
    assert back["resources"].keys() == local["resources"].keys()
    other = tmp_path / "other.json"
    shutil.copy(proj.folder / ".dumont" / "state.json", other)
    data = json.loads(other.read_text())
    other.write_text(json.dumps({**data, "lineage": "another", "serial": 99}))
    mixed = proj("state", "pull", "-y", "--state", str(other), code=1)
    assert "another state" in mixed.stderr
    assert SECRET not in pushed.stdout + mixed.stderr + pulled.read_text()


def test_a_server_without_remote_state_is_a_clear_error(tmp_path: Path) -> None:
    """The default address needs the API's `state.http-backend` capability (a 404 would
    otherwise read as "no state" and plan duplicates)."""
    other = Backend("ana", "pw").start()
    try:
        home = tmp_path / "home"
        home.mkdir()
        proj = Project(tmp_path / "repo", home, other.url, "token")
        proj.write(SPEC)
        failed = proj("plan", code=1)
    finally:
        other.stop()
    assert "does not serve remote state (no `state.http-backend` capability)" in failed.stderr
    assert "backend: address:" in failed.stderr


@pytest.mark.slow
def test_sigkill_mid_apply_with_the_remote_backend_converges(
    tmp_path: Path, server: LocalServer
) -> None:
    """Killed after each ledger write (the remote lock is left behind), the next apply takes
    the lock over (same machine, the holder is gone) and converges with no duplicate."""
    for n in (1, 2, 3, 4):
        user = new_user(server.url)
        proj = checkouts(tmp_path / f"kill-{n}", user)[0]
        died = proj.popen("apply", "-y", extra_env={"DUMONT_TEST_CRASH_AFTER": str(n)})
        died.communicate(timeout=180)
        assert died.returncode == 137, n
        rerun = proj("apply", "-y", timeout=180)
        assert "Took over the state lock" in rerun.stderr, n
        proj("plan", "--detailed-exitcode")
        assert remote_document(user)["pending"] == []
        assert live_names(user.client)[0] == {"team-first": 1, "team-second": 1}, n


@pytest.mark.slow
def test_a_real_sigkill_in_flight_with_the_remote_backend_converges(
    tmp_path: Path, user: UserSession
) -> None:
    proj = checkouts(tmp_path, user)[0]
    victim = proj.popen("apply", "-y", "--json")
    assert victim.stdout is not None
    for line in victim.stdout:
        if json.loads(line)["type"] == "change_start":
            break
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    proj("apply", "-y", timeout=180)
    proj("plan", "--detailed-exitcode")
    assert remote_document(user)["pending"] == []
    assert live_names(user.client)[0] == {"team-first": 1, "team-second": 1}


def test_the_cli_against_a_generic_http_backend_with_basic_auth(
    tmp_path: Path, user: UserSession
) -> None:
    """GitLab-style: the address, lock address and methods in the spec, the user name too;
    the password only in DUMONT_BACKEND_PASSWORD (or --backend-config)."""
    password = "glpat-" + SECRET
    other = Backend("ana", password).start()
    try:
        address = f"{other.url}/api/v4/projects/42/terraform/state/team"
        spec = SPEC.replace(
            "backend:\n  type: http\n",
            f"backend:\n  type: http\n  address: {address}\n  lock_address: {address}/lock\n"
            f"  unlock_address: {address}/lock\n  lock_method: POST\n  unlock_method: DELETE\n"
            "  username: ana\n",
        )
        laptop, ci = checkouts(tmp_path, user)
        for proj in (laptop, ci):
            proj.write(spec)
        laptop.env["DUMONT_BACKEND_PASSWORD"] = password
        results = [laptop("apply", "-y")]
        denied = ci("plan", code=1)  # no password: a clear error, nothing planned
        assert "refused the credentials (401)" in denied.stderr
        results += [ci("--backend-config", f"password={password}", "plan", "--detailed-exitcode")]
        assert "No changes" in results[-1].stdout
        assert other.lock is None and other.state is not None
        assert json.loads(other.state)["project"] == "team"
        assert ("POST", "/api/v4/projects/42/terraform/state/team/lock") in other.requests
        for result in [*results, denied]:
            assert password not in result.stdout + result.stderr
        assert SECRET not in other.state.decode()
    finally:
        other.stop()


@pytest.mark.slow
def test_two_concurrent_applies_from_two_checkouts(
    tmp_path: Path, shared_path: Path, user: UserSession
) -> None:
    """Both start at once: one applies, the other stops with the holder's details; the jobs
    exist once. (`hold` runs until the test creates the gate file.)"""
    gate = shared_path / "gate"
    spec = SPEC.replace(
        '"echo one ${secret.API_KEY}"', f"\"sh -c 'until [ -f {gate} ]; do sleep 0.05; done'\""
    )
    spec = spec.replace(
        "timeout_minutes: 10\n  second", "timeout_minutes: 10\n    wait: completed\n  second"
    )
    laptop, ci = checkouts(tmp_path, user)
    for proj in (laptop, ci):
        proj.write(spec)
    first, second = laptop.popen("apply", "-y"), ci.popen("apply", "-y")
    try:
        loser_pid = first_to_exit((first, second))
    finally:
        gate.touch()
    results = {p.pid: (p, *p.communicate(timeout=120)) for p in (first, second)}
    loser, _, loser_err = results[loser_pid]
    assert loser.returncode == 1, loser_err
    assert "state is locked by " in loser_err and "(dumont apply); lock ID " in loser_err
    winner = next(p for pid, (p, _, _) in results.items() if pid != loser_pid)
    assert winner.returncode == 0
    assert live_names(user.client)[0] == {"team-first": 1, "team-second": 1}
    assert "No changes" in ci("apply", "-y").stdout
