"""`dumont job create --workdir PATH`: pack the code, upload it, name it in the create body;
and the warning for a command that names a script while no code is shipped."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from dumont_plan.cli.output import err_console
from dumont_plan.client import DumontClient
from dumont_plan.errors import DumontError, MethodNotAllowedError, NotFoundError
from dumont_plan.spec import workdir as packing

# A word of the command that names a file of the user's code: train.py, ./run.sh, src/x.py.
SCRIPT_WORD = re.compile(r"^(?!-)[\w./-]*\.(py|sh)$")


def ship_workdir(client: DumontClient, root: Path) -> str:
    """Pack `root` (git-aware, `client.workdir`), upload it and return its workdir_id."""
    packed = packing.pack(root)
    try:
        size = packed.archive.stat().st_size
        if err_console.is_terminal and size > 1024 * 1024:
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, console=err_console, transient=True) as bar:
                task = bar.add_task(f"Uploading workdir {root}", total=size)
                answer = client.jobs.upload_workdir(
                    packed.archive,
                    progress=lambda sent, total: bar.update(task, completed=sent, total=total),
                )
        else:
            answer = client.jobs.upload_workdir(packed.archive)
    except (NotFoundError, MethodNotAllowedError):
        raise DumontError(
            f"--workdir {root}: this server does not take workdir uploads (no `jobs.workdir` "
            "capability in its /health)",
            "push the code and use --git-url, or run against the local control plane",
        ) from None
    finally:
        packed.archive.unlink(missing_ok=True)
    err_console.print(
        f"Workdir {root}: {len(packed.files)} files, {packed.size / 1e6:.2f} MB "
        f"(sha256 {packed.sha256[:12]}) -> /workspace",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return str(answer["workdir_id"])


def named_scripts(command: str) -> list[str]:
    """The words of `command` that look like files of the user's code (`*.py`, `*.sh`)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return [w for w in words if SCRIPT_WORD.match(w)]


def missing_code_warning(body: dict[str, Any]) -> str | None:
    """A warning when the command runs a script of the user's and no code is shipped."""
    if body.get("workdir_id") or body.get("source", "command") not in ("command", "script"):
        return None
    scripts = named_scripts(str(body.get("command") or ""))
    setup = str(body.get("setup_script") or "")
    if not scripts or re.search(r"\b(git clone|curl|wget)\b", setup):
        return None
    return (
        f"warning: the command runs {scripts[0]}, but no code is shipped: the job's workspace "
        "starts empty. Ship your code with --workdir . (or `workdir:` in the spec), or use "
        "--git-url / --hf-repo."
    )
