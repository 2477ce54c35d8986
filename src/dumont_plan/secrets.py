"""`${secret.NAME}`: values read only when a request is built, never printed or stored.

Where a secret's value comes from, first found wins:
1. the environment: `DUMONT_SECRET_NAME`, then `NAME`;
2. a secrets file of `KEY=VALUE` lines: `.dumont/secrets.env` beside the spec, then
   `~/.config/dumont-plan/secrets.env`. A secrets file must be mode 0600 (owner only).

    resolve_secrets({"hf_token": "${secret.HF_TOKEN}"}, os.environ, where="job.train")
    secret_names(spec_dict) -> {"HF_TOKEN"}
    fingerprint_secret(value, salt) -> "sha256:..."   (what the ledger and plans keep)

Error messages name the secret and where it is referenced, never a value.
"""

from __future__ import annotations

import hashlib
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dumont_plan.config import config_dir
from dumont_plan.errors import SecretError
from dumont_plan.spec.common import REF_RE, SECRET_NAME_RE
from dumont_plan.spec.refs import SECRET_KIND, iter_strings, refs_in

SECRETS_FILE = "secrets.env"
REDACTED = "(sensitive)"


def default_secrets_files(spec_root: Path) -> list[Path]:
    """`<spec_root>/.dumont/secrets.env`, then `~/.config/dumont-plan/secrets.env`."""
    return [spec_root / ".dumont" / SECRETS_FILE, config_dir() / SECRETS_FILE]


def secret_names(value: Any) -> set[str]:
    """The NAMEs of every `${secret.NAME}` inside a value (dicts, lists, strings)."""
    return {
        ref.name
        for _, text in iter_strings(value)
        for ref in refs_in(text)
        if ref.kind == SECRET_KIND
    }


def fingerprint_secret(value: str, salt: str | bytes) -> str:
    """A salted sha256 of a secret's value: comparable between runs, useless to a reader."""
    salt_bytes = salt.encode() if isinstance(salt, str) else salt
    digest = hashlib.sha256(salt_bytes + b"\0" + value.encode("utf-8")).hexdigest()
    return f"sha256:{digest}"


def redact(text: str, values: Iterable[str]) -> str:
    """`text` with every secret value in it replaced by `(sensitive)` (longest first)."""
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def read_secrets_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines (`export ` prefix, quotes and `#` comment lines allowed).

    Missing file: empty. A file readable by group or others is refused.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SecretError(f"cannot read secrets file {path}: {exc.strerror}") from exc
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise SecretError(
            f"secrets file {path} is readable by others (mode {mode:04o})",
            f"make it private: chmod 600 {path}",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"cannot read secrets file {path} as UTF-8 text") from exc
    except UnicodeDecodeError:
        # Not chained: the decode error shows a byte of the file, which may be a secret's, and
        # DUMONT_DEBUG prints the chain.
        raise SecretError(f"cannot read secrets file {path} as UTF-8 text") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not SECRET_NAME_RE.match(key):
            # Never echo the line: it may hold a value.
            raise SecretError(
                f"{path}:{number}: expected NAME=VALUE",
                "NAME is letters, digits and '_'; one secret per line",
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


class SecretStore:
    """Looks secrets up in the environment, then in the secrets files (read lazily, once)."""

    def __init__(self, env: Mapping[str, str], files: Sequence[Path] = ()) -> None:
        self.env = env
        self.files = list(files)
        self._from_files: dict[str, str] | None = None

    def _file_values(self) -> dict[str, str]:
        if self._from_files is None:
            merged: dict[str, str] = {}
            for path in reversed(self.files):  # earlier files win
                merged.update(read_secrets_file(path))
            self._from_files = merged
        return self._from_files

    def lookup(self, name: str) -> str | None:
        for key in (f"DUMONT_SECRET_{name}", name):
            value = self.env.get(key)
            if value:
                return value
        return self._file_values().get(name) or None

    def missing_hint(self, name: str) -> str:
        """How to provide the secret `name` (no value in it)."""
        files = " or ".join(_show(p) for p in self.files) or "a secrets file"
        return (
            f"export {name}=... (or DUMONT_SECRET_{name}) in the environment, "
            f"or add a {name}=... line to {files} (mode 0600)"
        )

    def get(self, name: str, where: str = "") -> str:
        """The secret's value; SecretError naming it and `where` it is used when missing."""
        value = self.lookup(name)
        if value is None:
            place = f" (referenced by {where})" if where else ""
            raise SecretError(f"secret {name} is not set{place}", self.missing_hint(name))
        return value


def _show(path: Path) -> str:
    """A path as short as it can be said: relative to here, or under ~."""
    for base, label in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return label + str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


def _path_text(where: str, path: tuple[str | int, ...]) -> str:
    text = where
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def resolve_secrets(
    value: Any,
    env: Mapping[str, str],
    secrets_file: Path | Sequence[Path] | None = None,
    *,
    where: str = "",
    store: SecretStore | None = None,
) -> Any:
    """A copy of `value` with every `${secret.NAME}` replaced by the secret's value.

    `secrets_file`: one file, a list searched in order, or None for `default_secrets_files` of
    the working directory. `where` (e.g. `job.train`) names the referencing resource in errors.
    Pass a `store` to share lookups (and the file read) across many resources.
    """
    if store is None:
        if secrets_file is None:
            files = default_secrets_files(Path.cwd())
        elif isinstance(secrets_file, Path):
            files = [secrets_file]
        else:
            files = list(secrets_file)
        store = SecretStore(env, files)
    return _resolve(value, store, where, ())


def _resolve(value: Any, store: SecretStore, where: str, path: tuple[str | int, ...]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, store, where, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, store, where, (*path, i)) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def _one(match: re.Match[str]) -> str:
        if match.group(1) != SECRET_KIND or match.group(3) is not None:
            return match.group(0)
        return store.get(match.group(2), _path_text(where, path))

    return REF_RE.sub(_one, value)
