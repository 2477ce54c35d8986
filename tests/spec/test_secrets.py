"""`${secret.NAME}`: resolved only on request, from the environment or a 0600 file; never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dumont_plan.cli.app import run
from dumont_plan.errors import SecretError
from dumont_plan.secrets import (
    SecretStore,
    fingerprint_secret,
    read_secrets_file,
    redact,
    resolve_secrets,
    secret_names,
)

MARKER = "s3cr3t-MARKER-7f1c"


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_resolve_from_the_environment_prefixed_name_first() -> None:
    value = {
        "hf_token": "${secret.TOKEN}",
        "command": "login --token ${ secret.TOKEN } && run ${job.a.id}",
        "list": ["${secret.OTHER}", 3],
    }
    env = {"TOKEN": "plain", "DUMONT_SECRET_TOKEN": "prefixed", "OTHER": "o"}
    assert resolve_secrets(value, env, []) == {
        "hf_token": "prefixed",
        "command": "login --token prefixed && run ${job.a.id}",
        "list": ["o", 3],
    }
    assert value["hf_token"] == "${secret.TOKEN}"  # the input is not changed


def test_resolve_from_a_private_secrets_file(tmp_path: Path) -> None:
    first = private_file(
        tmp_path / "project" / ".dumont" / "secrets.env",
        "# comment\nexport TOKEN='from-project'\n\nQUOTED=\"a b\"\n",
    )
    second = private_file(tmp_path / "home" / "secrets.env", "TOKEN=from-home\nHOME_ONLY=h\n")
    assert read_secrets_file(first) == {"TOKEN": "from-project", "QUOTED": "a b"}
    value = ["${secret.TOKEN}", "${secret.QUOTED}", "${secret.HOME_ONLY}"]
    assert resolve_secrets(value, {}, [first, second]) == ["from-project", "a b", "h"]
    assert resolve_secrets(value, {"TOKEN": "env"}, [first, second])[0] == "env"


def test_a_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = private_file(tmp_path / "secrets.env", f"TOKEN={MARKER}\n", mode=0o644)
    with pytest.raises(SecretError) as info:
        resolve_secrets("${secret.TOKEN}", {}, path)
    assert str(info.value) == (
        f"secrets file {path} is readable by others (mode 0644); make it private: chmod 600 {path}"
    )


def test_a_malformed_line_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = private_file(tmp_path / "secrets.env", f"TOKEN={MARKER}\n{MARKER} oops\n")
    with pytest.raises(SecretError) as info:
        read_secrets_file(path)
    assert str(info.value).startswith(f"{path}:2: expected NAME=VALUE")
    assert MARKER not in str(info.value)


def test_a_secrets_file_that_is_not_utf8_is_refused_without_chaining_the_byte(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secrets.env"
    path.write_bytes(b"TOKEN=s3cr\xe9t\n")
    path.chmod(0o600)
    with pytest.raises(SecretError) as info:
        read_secrets_file(path)
    assert str(info.value) == f"cannot read secrets file {path} as UTF-8 text"
    # DUMONT_DEBUG prints the chain: the decode error (it shows the byte) is not in it.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_a_missing_secret_names_itself_and_where_it_is_used(tmp_path: Path) -> None:
    files = [tmp_path / ".dumont" / "secrets.env"]
    with pytest.raises(SecretError) as info:
        resolve_secrets({"hf_token": "${secret.HF_TOKEN}"}, {"OTHER": MARKER}, files, where="job.a")
    text = str(info.value)
    assert text.startswith(
        "secret HF_TOKEN is not set (referenced by job.a.hf_token); export HF_TOKEN=... "
        "(or DUMONT_SECRET_HF_TOKEN) in the environment, or add a HF_TOKEN=... line to "
    )
    assert MARKER not in text


def test_the_store_reads_files_once_and_only_when_needed(tmp_path: Path) -> None:
    path = private_file(tmp_path / "secrets.env", "A=1\n", mode=0o644)  # unsafe, but never read
    store = SecretStore({"A": "env"}, [path])
    assert store.get("A") == "env"
    path.chmod(0o600)
    store = SecretStore({}, [path])
    assert store.get("A") == "1"
    path.unlink()
    assert store.get("A") == "1"  # cached


def test_names_fingerprints_and_redaction() -> None:
    spec = {"a": "${secret.X} ${secret.Y}", "b": ["${secret.X}"], "c": "${job.a.id}", "d": 1}
    assert secret_names(spec) == {"X", "Y"}
    one = fingerprint_secret(MARKER, "salt-1")
    assert one == fingerprint_secret(MARKER, b"salt-1")
    assert one.startswith("sha256:") and MARKER not in one
    assert one != fingerprint_secret(MARKER, "salt-2")
    assert one != fingerprint_secret(MARKER + "x", "salt-1")
    assert (
        redact(f"token {MARKER} and {MARKER}!", [MARKER, ""])
        == "token (sensitive) and (sensitive)!"
    )


def test_validate_check_secrets_never_prints_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dumont.yaml").write_text(
        "project: demo\njobs:\n  a:\n    command: echo ${secret.TOKEN}\n    num_gpus: 9\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith(("DUMONT_", "XDG_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TOKEN", MARKER)
    assert run(["validate", "--check-secrets"]) == 1
    out, err = capsys.readouterr()
    assert "num_gpus: 9 is above the limit of 8" in err
    assert MARKER not in out + err
    (tmp_path / "dumont.yaml").write_text(
        "project: demo\njobs:\n  a:\n    command: echo ${secret.TOKEN}\n", encoding="utf-8"
    )
    assert run(["validate", "--check-secrets", "--json"]) == 0
    out, err = capsys.readouterr()
    assert MARKER not in out + err
    monkeypatch.delenv("TOKEN")
    assert run(["validate", "--check-secrets"]) == 1
    assert "dumont.yaml:4:14 jobs.a.command: secret TOKEN is not set" in capsys.readouterr().err
