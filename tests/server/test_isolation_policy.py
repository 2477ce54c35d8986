"""What a workload's sandbox may see (`isolation.workload_sandbox`), decided without running it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dumont_plan.server.provider.isolation import Limits, Mounts, workload_sandbox, wrap_command
from dumont_plan.server.settings import ServerSettings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServerSettings:
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "repo").mkdir()
    return ServerSettings(data_dir=tmp_path / "data", multi_user=False)


def test_a_single_user_server_shares_the_local_paths_a_job_names(
    settings: ServerSettings, tmp_path: Path
) -> None:
    config = {"git_url": (tmp_path / "repo").as_uri(), "pip_packages": ["/", "numpy"]}

    policy = workload_sandbox(config, settings, 1)

    # Never `/` or anything else holding the data dir, never a relative name.
    assert policy["shared"] == [str((tmp_path / "repo").resolve())]
    assert policy["hidden"] == [str(settings.data_dir.resolve())]


def test_a_multi_user_server_shares_only_what_the_operator_shares(
    settings: ServerSettings, tmp_path: Path
) -> None:
    settings.multi_user = True
    settings.shared_dirs = [tmp_path / "repo", settings.data_dir / "sandboxes", tmp_path / "gone"]

    policy = workload_sandbox({"git_url": f"file://{settings.data_dir}"}, settings, 1)

    assert policy["shared"] == [str((tmp_path / "repo").resolve())]


@pytest.mark.parametrize(
    ("disk_size", "file_bytes"), [(10, 10 * 1024**3), (float("inf"), 0), (1e300, 0)]
)
def test_the_file_size_limit_follows_disk_size(
    settings: ServerSettings, disk_size: float, file_bytes: int
) -> None:
    policy = workload_sandbox({"disk_size": disk_size}, settings, 1)
    assert policy["limits"]["file_bytes"] == file_bytes


def test_a_data_dir_under_a_shared_path_is_covered(tmp_path: Path) -> None:
    mounts = Mounts(tmp_path / "ws", shared=(tmp_path,), hidden=(tmp_path / "data",))

    argv = wrap_command(["true"], mounts, Limits())

    bind = argv.index(str(tmp_path.resolve()))
    cover = argv.index(str((tmp_path / "data").resolve()))
    assert argv[bind - 1] == "--ro-bind" and argv[cover - 1] == "--tmpfs" and cover > bind
    assert "/etc/shadow" not in argv
