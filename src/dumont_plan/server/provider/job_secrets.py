"""A job's secret values: kept in memory and in the runner's environment, never on disk.

A create request tells the control plane which values are secret: the additive `secrets` map
(name -> value; the client sends every `${secret.NAME}` the job uses) and the credentials of an
`https://user:token@host/repo` git URL. `split_secrets` returns the job's configuration to
store (`spec.json`, the database, `run.sh`): every string in it, at any depth, with each value
replaced by `***`, and the credentials cut out of `git_url`; and a `Carried` with what only
the runner needs: the real `command` and `setup_script` when a value was masked in them, the
real value of each other field the runner uses (`CARRIED_FIELDS`: `pip_packages`, `hf_repo`,
...) that held one, the secrets to export by name, and the git credentials. A value in any
other field (`name`, `image`, `output_paths`, ...) is refused (`refused_field`: a 422 naming
the field). A value shorter than 3 characters is not masked.

The control plane hands a `Carried` to the runner in one environment variable (`CARRY_VAR`,
never written anywhere), and keeps it in memory to relaunch an interrupted runner. The runner
pops it, masks every value in the job's log, runs the command and setup script through
`eval "$DUMONT_JOB_COMMAND"` (so `run.sh` holds no value), runs each other script line that
the real fields change through `eval "$DUMONT_JOB_LINE_<n>"` (`hide_lines`), exports the
secrets under their names, and clones through `GIT_ASKPASS` (a script reading
`DUMONT_GIT_USERNAME` and `DUMONT_GIT_PASSWORD`), so the credentials are in no argv,
`.git/config` or file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

CARRY_VAR = "DUMONT_JOB_SECRETS"
MASK = "***"
# Shorter values are not masked in text: "***" for every "a" would make logs unreadable.
MIN_MASKED = 3
MASKED_FIELDS = ("command", "setup_script")
# The other fields the runner needs real: masked when stored, carried whole to the runner.
CARRIED_FIELDS = ("git_url", "git_branch", "hf_repo", "hf_revision", "pip_packages")
LINE_VAR = "DUMONT_JOB_LINE_"
ASKPASS_NAME = "dumont-askpass"
COMMAND_VAR = "DUMONT_JOB_COMMAND"
SETUP_VAR = "DUMONT_JOB_SETUP"
GIT_USER_VAR = "DUMONT_GIT_USERNAME"
GIT_PASSWORD_VAR = "DUMONT_GIT_PASSWORD"
ASKPASS_SCRIPT = f"""#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "${GIT_USER_VAR}" ;;
  *) printf '%s\\n' "${GIT_PASSWORD_VAR}" ;;
esac
"""


@dataclass
class Carried:
    env: dict[str, str] = field(default_factory=dict)
    command: str | None = None
    setup_script: str | None = None
    git_username: str | None = None
    git_password: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    # Filled by `hide_lines` in the runner: the real script lines, by variable name.
    lines: dict[str, str] = field(default_factory=dict)

    def values(self) -> list[str]:
        """Every secret value, for masking."""
        found = [*self.env.values(), self.git_password or ""]
        return [v for v in found if len(v) >= MIN_MASKED]

    def to_env(self) -> dict[str, str]:
        return {CARRY_VAR: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Carried | None:
        raw = environ.get(CARRY_VAR)
        if not raw:
            return None
        data: dict[str, Any] = json.loads(raw)
        return cls(**data)

    def workload_env(self, bin_dir: str) -> dict[str, str]:
        """What the job's script gets: the secrets by name, the real command and setup script
        when `run.sh` refers to them, and the git credentials for GIT_ASKPASS (in `bin_dir`,
        as the job sees it)."""
        env = {**self.env, **self.lines}
        if self.command is not None:
            env[COMMAND_VAR] = self.command
        if self.setup_script is not None:
            env[SETUP_VAR] = self.setup_script
        if self.git_password is not None or self.git_username is not None:
            env[GIT_USER_VAR] = self.git_username or ""
            env[GIT_PASSWORD_VAR] = self.git_password or ""
            env["GIT_ASKPASS"] = f"{bin_dir}/{ASKPASS_NAME}"
        return env

    def write_askpass(self, bin_dir: Path) -> None:
        if self.has_git_credentials:
            askpass = bin_dir / ASKPASS_NAME
            askpass.write_text(ASKPASS_SCRIPT, encoding="utf-8")
            askpass.chmod(0o700)

    def clone_lines(self, args: str) -> list[str]:
        """`git clone ARGS` for the script: with credentials, asked through GIT_ASKPASS (no
        credential helper may store them), then dropped from the environment."""
        if not self.has_git_credentials:
            return [f"git clone {args}"]
        return [
            f"git -c credential.helper= clone {args}",
            f"unset GIT_ASKPASS {GIT_USER_VAR} {GIT_PASSWORD_VAR}",
        ]

    def script_line(self, name: str, stored: str) -> str:
        """The script's line for `command` or `setup_script`: the stored text, or, when a
        value was masked in it, the real text evaluated from the environment."""
        if getattr(self, name) is None:
            return stored
        return f'eval "${COMMAND_VAR if name == "command" else SETUP_VAR}"'

    def hide_lines(self, masked: list[str], real: list[str]) -> list[str]:
        """The script's lines built from the stored (`masked`) fields, each one that differs
        from its twin built from the real fields replaced by an `eval` of the real line, which
        `workload_env` then carries."""
        self.lines = {}
        lines = []
        for number, (stored, wanted) in enumerate(zip(masked, real, strict=True)):
            if stored != wanted:
                self.lines[f"{LINE_VAR}{number}"] = wanted
                stored = f'eval "${LINE_VAR}{number}"'
            lines.append(stored)
        return lines

    @property
    def has_git_credentials(self) -> bool:
        return self.git_password is not None or self.git_username is not None


def mask_text(text: str, values: list[str]) -> str:
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def mask_value(value: Any, values: list[str]) -> Any:
    """`value` with each of `values` masked in every string it holds, at any depth."""
    if isinstance(value, str):
        return mask_text(value, values)
    if isinstance(value, list):
        return [mask_value(item, values) for item in value]
    if isinstance(value, dict):
        return {key: mask_value(item, values) for key, item in value.items()}
    return value


def secret_values(secrets: Mapping[str, str] | None, git_url: Any) -> list[str]:
    password = strip_credentials(git_url)[2] if isinstance(git_url, str) else None
    return Carried(env=dict(secrets or {}), git_password=password).values()


def refused_field(config: Mapping[str, Any], secrets: Mapping[str, str] | None) -> str | None:
    """The first field of `config` that holds a secret value where none may be used (neither
    masked text nor a field the runner gets real), or None."""
    values = secret_values(secrets, config.get("git_url"))
    for name, value in config.items():
        if name in (*MASKED_FIELDS, *CARRIED_FIELDS):
            continue
        if values and mask_value(value, values) != value:
            return name
    return None


def strip_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without user:password@, username, password) of a clone URL."""
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
        hostname, port = parts.hostname, parts.port
    except ValueError:
        return url, None, None
    if username is None and password is None:
        return url, None, None
    host = hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, unquote(username or ""), None if password is None else unquote(password)


def split_secrets(
    config: dict[str, Any], secrets: Mapping[str, str] | None
) -> tuple[dict[str, Any], Carried | None]:
    """The configuration to store (no secret value in it) and what the runner must carry."""
    carried = Carried(env=dict(secrets or {}))
    git_url = config.get("git_url")
    if isinstance(git_url, str):
        clean, username, password = strip_credentials(git_url)
        carried.git_username, carried.git_password = username, password
        config = {**config, "git_url": clean}
    values = carried.values()
    masked = dict(config)
    for name, value in config.items():
        hidden = mask_value(value, values) if values else value
        if hidden == value:
            continue
        if name in MASKED_FIELDS:
            setattr(carried, name, value)
        elif name in CARRIED_FIELDS:
            carried.fields[name] = value
        else:  # the route refuses these first (`refused_field`)
            raise ValueError(f"a secret may not be used in `{name}`")
        masked[name] = hidden
    if not carried.env and not carried.has_git_credentials:
        return masked, None
    return masked, carried


class SecretKeeper:
    """Per job, what its runner gets in its environment beyond the usual: the Hugging Face
    token and the `Carried` secrets; in this process's memory only (a restart forgets them)."""

    def __init__(self) -> None:
        self._env: dict[str, dict[str, str]] = {}

    def keep(self, job_id: str, hf_token: str | None, carried: Carried | None) -> None:
        env = {"HF_TOKEN": hf_token} if hf_token else {}
        env.update(carried.to_env() if carried is not None else {})
        if env:
            self._env[job_id] = env

    def env(self, job_id: str) -> dict[str, str]:
        return dict(self._env.get(job_id, {}))

    def forget(self, job_id: str) -> None:
        self._env.pop(job_id, None)

    def missing(self, job_id: str, spec: Mapping[str, Any]) -> bool:
        """Whether the job had secrets this process no longer holds (it was restarted)."""
        needed = bool(spec.get("has_hf_token") or spec.get("carries_secrets"))
        return needed and job_id not in self._env
