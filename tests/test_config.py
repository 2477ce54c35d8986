"""config.py: where dumont keeps its files (XDG base directories, DUMONT_DATA_DIR)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dumont_plan.config import config_dir, data_dir


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "DUMONT_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_defaults_are_under_home(home: Path) -> None:
    assert config_dir() == home / ".config" / "dumont-plan"
    assert data_dir() == home / ".local" / "share" / "dumont-plan"


def test_absolute_xdg_variables_are_honoured(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    assert config_dir() == home / "cfg" / "dumont-plan"
    assert data_dir() == home / "data" / "dumont-plan"


@pytest.mark.parametrize("value", ["relative/cfg", ""])
def test_relative_or_empty_xdg_variables_are_ignored(
    home: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", value)
    monkeypatch.setenv("XDG_DATA_HOME", value)
    assert config_dir() == home / ".config" / "dumont-plan"
    assert data_dir() == home / ".local" / "share" / "dumont-plan"


def test_dumont_data_dir_overrides_xdg(
    home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("DUMONT_DATA_DIR", "~/plane")
    assert data_dir() == home / "plane"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DUMONT_DATA_DIR", "rel")
    assert data_dir() == tmp_path / "rel"
