"""The client against both profiles: pagination, retries, 500 reasons, a missing provider key."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from dumont_plan.apply.observe import observe
from dumont_plan.client import DumontClient, RetryPolicy
from dumont_plan.config import APP_NAME
from dumont_plan.errors import ServerError
from dumont_plan.state.ledger import LedgerEntry, LedgerState
from tests.server.jobfixtures import create_job
from tests.support import LocalServer, UserSession, cli_env, new_user, run_cli


def test_a_ledger_job_past_the_first_page_is_not_gone(
    profile_user: UserSession, real_platform: bool
) -> None:
    """Item 2: 5 jobs, pages of 2: the real platform answers the newest 2 to every offset; the
    older ledger jobs are read one by one, and only a 404 makes one gone."""
    ids = [create_job(profile_user, name=f"p{i}", command="true")["id"] for i in range(5)]
    state = LedgerState(project="p")
    for i, job_id in enumerate(ids):
        state.resources[f"job.p{i}"] = LedgerEntry(kind="job", remote_id=job_id)
    state.resources["job.lost"] = LedgerEntry(kind="job", remote_id="job_00000000")
    with httpx.Client(base_url=profile_user.url, timeout=30) as http:
        client = DumontClient(http, profile_user.token, retry=RetryPolicy(attempts=1))
        client.jobs.page_size = 2
        observed = observe(client, ["job"], ledger=state)
        assert client.jobs.complete is not real_platform
    live = {job.id for job in observed.objects("job")}  # type: ignore[attr-defined]
    assert set(ids) <= live
    assert "job_00000000" not in live


def test_a_500_prints_the_servers_reason(profile_server: LocalServer, real_platform: bool) -> None:
    """Item 4: "Internal server error" alone says nothing: the reason in `details` is shown."""
    with httpx.Client(base_url=profile_server.url, timeout=30) as http:
        client = DumontClient(http, retry=RetryPolicy(attempts=1))
        with pytest.raises(ServerError) as caught:
            client.transport.request("POST", "/api/v1/_local/raise")
    reason = "raised on purpose by the test hook" if real_platform else "DeliberateBug"
    assert f"Internal server error: {reason}" in str(caught.value)


def _cli(server: LocalServer, home: Path, **env: str) -> Callable[..., object]:
    user = new_user(server.url)
    environment = {**cli_env(home, server.url, user.token), **env}
    return lambda *args, **kw: run_cli(list(args), environment, cwd=home, **kw)


def test_a_missing_provider_key_fails_at_once_with_the_fix(
    provider_server: Callable[[str], LocalServer], tmp_path: Path
) -> None:
    """Items 3 and 5: a 503 "key not configured" is permanent (one request, no 60 s of
    retries); the server's words are shown with how to set the key."""
    server = provider_server("no-key")
    run = _cli(server, tmp_path)
    before = server.stats()["requests"].get("GET /api/v1/instances/offers", 0)
    started = time.monotonic()
    offers = run("instance", "offers")
    listed = run("instance", "list")
    assert time.monotonic() - started < 20
    assert offers.returncode == 1, offers  # type: ignore[attr-defined]
    assert "Vast.ai API key not configured on server." in offers.stderr  # type: ignore[attr-defined]
    assert "VAST_API_KEY" in offers.stderr  # type: ignore[attr-defined]
    assert server.stats()["requests"].get("GET /api/v1/instances/offers", 0) == before + 1
    assert listed.returncode == 1, listed  # type: ignore[attr-defined]
    out = listed.stderr  # type: ignore[attr-defined]
    assert "Vast.ai API key not configured. Please update settings." in out
    assert "dumont auth settings --vast-key" in out


def test_plan_names_the_missing_provider_key_not_the_login(
    provider_server: Callable[[str], LocalServer], tmp_path: Path
) -> None:
    """Item 5: plan said "check the API URL and your login" when the key was missing."""
    run = _cli(provider_server("no-key"), tmp_path)
    (tmp_path / "dumont.yaml").write_text(
        "project: keyless\njobs:\n  hello:\n    command: echo hi\n    gpu_type: RTX 4090\n"
    )
    result = run("plan")
    assert result.returncode == 1, result  # type: ignore[attr-defined]
    err = result.stderr  # type: ignore[attr-defined]
    assert "Vast.ai API key not configured" in err
    assert "dumont auth settings --vast-key" in err
    assert "your login" not in err


def test_an_unreachable_provider_fails_within_the_retry_deadline(
    provider_server: Callable[[str], LocalServer], tmp_path: Path
) -> None:
    """Item 3: "provider unreachable" is retried, but only within DUMONT_RETRY_DEADLINE."""
    server = provider_server("unreachable")
    for env, config in (({"DUMONT_RETRY_DEADLINE": "1"}, None), ({}, {"retry_deadline": 1})):
        home = tmp_path / f"home-{len(env)}"
        home.mkdir()
        if config is not None:  # the config file's `retry_deadline`
            (home / ".config" / APP_NAME).mkdir(parents=True)
            (home / ".config" / APP_NAME / "config.json").write_text(json.dumps(config))
        run = _cli(server, home, **env)
        before = server.stats()["requests"].get("GET /api/v1/instances", 0)
        started = time.monotonic()
        result = run("instance", "list")
        assert time.monotonic() - started < 15
        assert result.returncode != 0, result  # type: ignore[attr-defined]
        assert "provider unreachable" in result.stderr  # type: ignore[attr-defined]
        retried = server.stats()["requests"].get("GET /api/v1/instances", 0) - before
        assert 2 <= retried < 4, retried  # retried, but stopped by the deadline


def test_a_bad_retry_deadline_is_a_clear_error(profile_server: LocalServer, tmp_path: Path) -> None:
    run = _cli(profile_server, tmp_path, DUMONT_RETRY_DEADLINE="soon")
    result = run("instance", "list")
    assert result.returncode == 1, result  # type: ignore[attr-defined]
    assert "DUMONT_RETRY_DEADLINE: 'soon' is not a number of seconds" in result.stderr  # type: ignore[attr-defined]


def test_auth_settings_vast_key_lets_the_user_past_a_missing_key(
    provider_server: Callable[[str], LocalServer], tmp_path: Path
) -> None:
    """Item 5: `dumont auth settings --vast-key` is the fix the errors name, via the real
    `PUT /api/v1/settings`; the key is never printed, nor stored by the local control plane."""
    server = provider_server("no-key")
    run = _cli(server, tmp_path)
    assert run("instance", "list").returncode == 1  # type: ignore[attr-defined]
    secret = "vast-" + "k3y-never-shown"
    saved = run("auth", "settings", "--vast-key", secret)
    assert saved.returncode == 0, saved  # type: ignore[attr-defined]
    assert secret not in saved.stdout + saved.stderr  # type: ignore[attr-defined]
    listed = run("instance", "list")
    assert listed.returncode == 0, listed  # type: ignore[attr-defined]
    me = run("auth", "me", "--output", "json")
    assert '"vast_api_key_set": true' in me.stdout  # type: ignore[attr-defined]
    assert secret not in me.stdout  # type: ignore[attr-defined]
    assert secret.encode() not in (server.data_dir / "dumont.sqlite3").read_bytes()


def test_show_statuses_keep_a_ledger_job_past_the_first_page(
    profile_user: UserSession, tmp_path: Path
) -> None:
    """Item 2 for `dumont show` (`live_statuses`): never "gone" without a 404 for the id."""
    from dumont_plan.apply.plan_flow import live_statuses
    from dumont_plan.state.ledger import Ledger

    ids = [create_job(profile_user, name=f"s{i}", command="true")["id"] for i in range(3)]
    state = LedgerState(project="s")
    for i, job_id in enumerate(ids):
        state.resources[f"job.s{i}"] = LedgerEntry(kind="job", remote_id=job_id)
    state.resources["job.lost"] = LedgerEntry(kind="job", remote_id="job_00000000")
    with httpx.Client(base_url=profile_user.url, timeout=30) as http:
        client = DumontClient(http, profile_user.token, retry=RetryPolicy(attempts=1))
        client.jobs.page_size = 1
        statuses = live_statuses(client, Ledger(tmp_path / "state.json", state))
    assert set(statuses) == {"job.s0", "job.s1", "job.s2"}
