"""Servers for the tests that run against both profiles of the local control plane.

`profile_server` is one server per profile ("local", and "real-platform": what the real
Dumont server was observed to do), shared by the session; a test that takes it runs twice.
`provider_server(state)` starts a real-platform server whose simulated provider is "no-key"
or "unreachable" (module scope: the test module stops it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import LocalServer, UserSession, new_user

PROFILES = ["local", "real-platform"]


@pytest.fixture(scope="session", params=PROFILES)
def profile_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    profile = str(request.param)
    srv = LocalServer(tmp_path_factory.mktemp(f"cp-{profile}"), extra_args=["--profile", profile])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def profile_user(profile_server: LocalServer) -> UserSession:
    return new_user(profile_server.url)


@pytest.fixture
def real_platform(profile_server: LocalServer) -> bool:
    return "--profile" in profile_server.extra_args and "real-platform" in profile_server.extra_args


@pytest.fixture(scope="module")
def provider_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], LocalServer]]:
    started: dict[str, LocalServer] = {}

    def start(state: str) -> LocalServer:
        if state not in started:
            directory: Path = tmp_path_factory.mktemp(f"cp-provider-{state}")
            started[state] = LocalServer(
                directory, extra_args=["--profile", "real-platform", "--provider", state]
            ).start()
        return started[state]

    yield start
    for srv in started.values():
        srv.stop()
