"""What the ledger says about a state document it cannot use, and the `.dumont/.gitignore`.

raise corrupt_error(path, exc)       # a local file: copied aside, left as it is
invalid_detail(exc)                  # "resources.job.a.kind: Field required"
write_gitignore(path.parent)         # on the first write into `.dumont/`
"""

from __future__ import annotations

import contextlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from dumont_plan.errors import StateError
from dumont_plan.files import create_atomic

GITIGNORE = """\
# Written by dumont: what must not be committed (the lock, backups, secrets, saved plans).
state.lock
*.backup
*.corrupt-*
.*.tmp
secrets.env
*.plan
plans/
"""


def write_gitignore(folder: Path) -> None:
    """`<folder>/.gitignore` on the folder's first write; one already there is kept."""
    with contextlib.suppress(OSError):
        create_atomic(folder / ".gitignore", GITIGNORE, mode=0o644)


def invalid_detail(exc: Exception) -> str:
    """Where and why a document is not a valid state (JSON position, or the first field)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno} column {exc.colno}: {exc.msg}"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc)


def _same_copy(path: Path) -> Path | None:
    """A `.corrupt-*` copy beside `path` with exactly its bytes, if one exists."""
    try:
        content = path.read_bytes()
        copies = sorted(path.parent.glob(f"{path.name}.corrupt-*"))
        return next((c for c in copies if c.read_bytes() == content), None)
    except OSError:
        return None


def corrupt_error(path: Path, exc: Exception) -> StateError:
    """The error for a state file that cannot be read: a copy is kept beside it, and the
    file itself is never overwritten (the message names the copy and the way out)."""
    copy = _same_copy(path)  # each command on the same damage names one copy, not a new one
    if copy is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        copy = path.with_name(f"{path.name}.corrupt-{stamp}")
        number = 1
        while copy.exists():  # another damage within the same second
            number += 1
            copy = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
        with contextlib.suppress(OSError):
            shutil.copy2(path, copy)
    backup = path.with_name(path.name + ".backup")
    way_out = (
        f"restore the previous version ({backup}) or move the file away to start afresh "
        "(the next plan adopts live objects by name)"
    )
    return StateError(
        f"state file {path} is not valid dumont state ({invalid_detail(exc)}); it was left as "
        f"it is and a copy is at {copy}",
        way_out,
    )
