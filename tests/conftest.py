from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import (
    LocalServer,
    SilentServer,
    UserSession,
    cli_env,
    close_user_clients,
    new_user,
    reap_and_collect,
    run_cli,
)


@pytest.fixture(scope="session", autouse=True)
def _no_process_outlives_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session, kill whatever still runs from the test temp dirs (embedded
    servers started by CLI tests, job runners, instance processes)."""
    yield
    reap_and_collect(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def _close_user_clients() -> Iterator[None]:
    """Close the HTTP clients of the users the test made (no socket left to the collector)."""
    yield
    close_user_clients()


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the session server lets every job read (`DUMONT_SERVER_SHARED_DIRS`).

    Readable by others, as shared folders must be: a server run as root runs jobs as an
    unprivileged uid."""
    path = tmp_path_factory.mktemp("shared-with-jobs")
    path.chmod(0o755)
    return path


@pytest.fixture
def shared_path(shared_root: Path) -> Path:
    """A fresh folder that jobs of the session server can read (e.g. a local git repo)."""
    path = shared_root / uuid.uuid4().hex[:12]
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, shared_root: Path) -> Iterator[LocalServer]:
    """One real local control plane for the session, on a free loopback port."""
    env = {"DUMONT_SERVER_SHARED_DIRS": str(shared_root)}
    srv = LocalServer(tmp_path_factory.mktemp("control-plane"), env=env).start()
    yield srv
    srv.stop()


@pytest.fixture
def user(server: LocalServer) -> UserSession:
    """A fresh user on the session server."""
    return new_user(server.url)


@pytest.fixture
def make_user(server: LocalServer) -> Callable[[], UserSession]:
    return lambda: new_user(server.url)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cli(home: Path, user: UserSession) -> Callable[..., object]:
    """Run the `dumont` CLI as `user` against the session server (subprocess)."""
    env = cli_env(home, user.url, user.token)

    def _run(*args: str, **kwargs: object) -> object:
        return run_cli(list(args), env, **kwargs)  # type: ignore[arg-type]

    return _run


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    """A loopback port whose connections are accepted and never answered."""
    server = SilentServer()
    yield server
    server.close()
