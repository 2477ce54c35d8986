"""Servers of the fine-tune API tests.

`ft_api_server`: a real control plane whose users may train no fine-tune at once
(`DUMONT_SERVER_MAX_RUNNING_FINETUNES=0`), so every fine-tune stays `pending` and the API's
own behaviour is seen without a trainer; its Hugging Face home is an empty temporary folder
(plus what a test puts there), its dataset cap small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import LocalServer, UserSession, new_user

DATASET_CAP = 3 * 1024 * 1024


@pytest.fixture(scope="session")
def api_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ft-api-hf-home")
    (home / "hub").mkdir()
    return home


@pytest.fixture(scope="session")
def ft_api_server(
    tmp_path_factory: pytest.TempPathFactory, api_hf_home: Path
) -> Iterator[LocalServer]:
    env = {
        "DUMONT_SERVER_HF_HOME": str(api_hf_home),
        "DUMONT_SERVER_MAX_RUNNING_FINETUNES": "0",
        "DUMONT_SERVER_DATASET_MAX_BYTES": str(DATASET_CAP),
    }
    srv = LocalServer(tmp_path_factory.mktemp("ft-api-server"), env=env).start()
    yield srv
    srv.stop()


@pytest.fixture
def ft_user(ft_api_server: LocalServer) -> UserSession:
    return new_user(ft_api_server.url)


@pytest.fixture
def make_ft_user(ft_api_server: LocalServer) -> Callable[[], UserSession]:
    return lambda: new_user(ft_api_server.url)
