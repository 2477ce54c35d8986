"""Reading `dumont job create`'s command line into a CreateJob body, and explaining refusals.

Pure functions (no I/O): the NAME and old-style `key=value` words plus the typed flags become
the API's CreateJob fields; what needs no server is checked here, before any request; a 422 of
the API becomes one line naming the flag, the value and the allowed range.
"""

from __future__ import annotations

from typing import Any

from dumont_plan.cli.output import split_key_values
from dumont_plan.client.base import error_message
from dumont_plan.errors import DumontError, UnprocessableError

TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "0", "off"})

# The old CLI's `key=value` words of `job create` -> CreateJob field.
CREATE_KEYS = {
    "name": "name",
    "command": "command",
    "source": "source",
    "gpu": "gpu_type",
    "gpu_type": "gpu_type",
    "num_gpus": "num_gpus",
    "use_spot": "use_spot",
    "spot": "use_spot",
    "timeout": "timeout_minutes",
    "timeout_minutes": "timeout_minutes",
    "disk": "disk_size",
    "disk_size": "disk_size",
    "image": "image",
    "setup": "setup_script",
    "setup_script": "setup_script",
    "pip": "pip_packages",
    "pip_packages": "pip_packages",
    "hf_repo": "hf_repo",
    "hf_revision": "hf_revision",
    "git_url": "git_url",
    "git_branch": "git_branch",
    "max_retries": "max_retries",
    "output_path": "output_paths",
    "output_paths": "output_paths",
    "auto_destroy": "auto_destroy",
}

# CreateJob field -> the flag users type (for error messages).
FLAG_OF = {
    "name": "NAME",
    "command": "--command",
    "source": "--source",
    "gpu_type": "--gpu",
    "num_gpus": "--num-gpus",
    "use_spot": "--use-spot",
    "spot": "--use-spot",
    "timeout_minutes": "--timeout",
    "timeout": "--timeout",
    "disk_size": "--disk",
    "image": "--image",
    "setup_script": "--setup",
    "pip_packages": "--pip",
    "hf_repo": "--hf-repo",
    "hf_revision": "--hf-revision",
    "hf_token": "--hf-token",
    "git_url": "--git-url",
    "git_branch": "--git-branch",
    "max_retries": "--max-retries",
    "output_paths": "--output-path",
    "auto_destroy": "--no-auto-destroy",
    "start_at": "--at",
    "cron": "--cron",
    "timezone": "--tz",
}

# Contract §5.2 ranges, to tell the user what to use when the API refuses a value.
RANGES = {
    "num_gpus": "1–8",
    "timeout_minutes": "10–1440 minutes",
    "timeout": "10–1440 minutes",
    "disk_size": "10 GB or more",
    "max_retries": "0–5",
    "name": "1–100 characters",
}
SECRET_FIELDS = frozenset({"hf_token"})


def parse_bool(value: str, flag: str, where: str = "job create") -> bool:
    """`true/false` (also yes/no, 1/0, on/off) for options like `--use-spot=false`."""
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    hint = f"use {flag}=true or {flag}=false"
    if flag.lstrip("-").replace("-", "_") in ("use_spot", "spot"):
        hint += " (or the flags --spot / --no-spot)"
    raise DumontError(f"{where}: {flag}={value}: expected true or false", hint)


def split_list(values: list[str] | None) -> list[str]:
    """`--pip="a,b" --pip=c` -> ["a", "b", "c"]."""
    items: list[str] = []
    for value in values or []:
        items.extend(part.strip() for part in value.split(",") if part.strip())
    return items


def _set(body: dict[str, Any], field: str, value: Any, where: str) -> None:
    """Set a CreateJob field once; the same field from a flag and a `key=value` word is an error."""
    if value is None:
        return
    if field in body and body[field] != value:
        shown = "(hidden)" if field in SECRET_FIELDS else repr(value)
        raise DumontError(
            f"{where}: {FLAG_OF.get(field, field)} is given twice ({shown} and {body[field]!r})",
            "give it once",
        )
    body[field] = value


def _kv_value(field: str, value: Any, where: str) -> Any:
    """Type an old-style `key=value` value for its CreateJob field."""
    if field in ("num_gpus", "timeout_minutes", "max_retries"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DumontError(f"{where}: {field}={value}: expected a whole number")
        return value
    if field == "disk_size":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DumontError(f"{where}: {field}={value}: expected a number of GB")
        return value
    if field in ("use_spot", "auto_destroy"):
        return value if isinstance(value, bool) else parse_bool(str(value), field, where)
    if field in ("pip_packages", "output_paths"):
        return split_list([str(value)])
    return str(value)


def build_create_body(
    words: list[str],
    flags: dict[str, Any],
    where: str = "job create",
) -> dict[str, Any]:
    """The CreateJob body from the NAME/`key=value` words and the typed flags.

    Checks what needs no server (a command for command jobs, a URL for git, a repo for
    huggingface) so a bad line fails before any request.
    """
    positionals, pairs = split_key_values(words, list(CREATE_KEYS), where)
    if len(positionals) > 1:
        raise DumontError(
            f"{where}: takes one NAME, got {len(positionals)} words: "
            + " ".join(repr(p) for p in positionals),
            'quote values with spaces, e.g. --command="python train.py"',
        )
    body: dict[str, Any] = {}
    if positionals:
        _set(body, "name", positionals[0], where)
    for field, value in flags.items():
        _set(body, field, value, where)
    for key, value in pairs.items():
        field = CREATE_KEYS[key]
        _set(body, field, _kv_value(field, value, where), where)

    source = body.get("source")
    if source is None:
        if body.get("git_url") and body.get("hf_repo"):
            raise DumontError(
                f"{where}: both --git-url and --hf-repo are given",
                "pick one: --source=git --git-url=URL or --source=huggingface --hf-repo=REPO",
            )
        if body.get("git_url"):
            source = body["source"] = "git"
        elif body.get("hf_repo"):
            source = body["source"] = "huggingface"
        else:
            source = "command"
    if source == "git" and not body.get("git_url"):
        raise DumontError(
            f"{where}: --source=git needs --git-url", 'add --git-url="https://…/repo.git"'
        )
    if source == "huggingface" and not body.get("hf_repo"):
        raise DumontError(
            f"{where}: --source=huggingface needs --hf-repo", 'add --hf-repo="user/repo"'
        )
    if source != "git" and (body.get("git_url") or body.get("git_branch")):
        raise DumontError(
            f"{where}: --git-url/--git-branch only apply to --source=git",
            "add --source=git or drop them",
        )
    if source != "huggingface" and (
        body.get("hf_repo") or body.get("hf_revision") or body.get("hf_token")
    ):
        raise DumontError(
            f"{where}: --hf-repo/--hf-revision/--hf-token only apply to --source=huggingface",
            "add --source=huggingface or drop them",
        )
    if source in ("command", "script") and not str(body.get("command") or "").strip():
        name = body.get("name", "NAME")
        raise DumontError(
            f"{where}: no command to run",
            f'add one, e.g. dumont job create {name} --command="python train.py"',
        )
    return body


def describe_rejection(exc: UnprocessableError, where: str) -> DumontError:
    """One readable line for a 422 of the API, naming the flag, the value and the range."""
    parts: list[str] = []
    for item in exc.details[:5]:
        loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query")]
        if loc[:1] == ["job"] and len(loc) > 1:  # a schedule's job template
            loc = loc[1:]
        field = loc[0] if loc else ""
        flag = FLAG_OF.get(field, field)
        msg = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        value = item.get("input")
        if field and field not in SECRET_FIELDS and isinstance(value, int | float | str):
            text = f"{flag}={value}"
        else:
            text = flag or "request"
        text += f": {msg[:1].lower()}{msg[1:]}"
        if field in RANGES:
            text += f" (use {RANGES[field]})"
        parts.append(text)
    if not parts:
        parts.append(error_message(exc.body, str(exc)))
    return DumontError(f"{where}: the API refused the job: " + "; ".join(parts))
