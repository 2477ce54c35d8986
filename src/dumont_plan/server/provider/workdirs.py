"""Job workdirs: a user's code, uploaded once as a tar.gz, unpacked into a job's workspace.

`POST /api/v1/jobs/workdirs` streams the archive to disk (`uploads.MultipartSink`, capped),
checks every member (`check_archive`: relative names without `..`, only files, folders and
symlinks that stay inside, at most `MAX_FILES` entries and `MAX_UNPACKED_BYTES` unpacked) and
keeps it as `<data_dir>/workdirs/<user id>/<workdir_id>.tar.gz` (folder 0700, file 0600). The id
is derived from the archive's sha256, so the same code uploaded twice is one workdir. A job that
names `workdir_id` gets a copy in its own directory (`WORKDIR_FILE`), and the runner unpacks it
into a fresh workspace before each attempt (`safe_extract`, which checks again). Another user's
id is unknown, exactly like a missing one. A user keeps the `KEEP_PER_USER` newest uploads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from dumont_plan.errors import WorkdirError

if TYPE_CHECKING:
    from dumont_plan.server.context import AppState
    from dumont_plan.server.provider.uploads import MultipartSink

WORKDIR_FILE = "workdir.tar.gz"
MAX_BYTES = 100 * 1024 * 1024  # the archive as uploaded
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
MAX_FILES = 20_000
# Workdirs kept per user (the newest uploads): a job copies its archive when it is created, so
# pruning an older upload never takes code from a job; only a later create by that id fails.
KEEP_PER_USER = 20
WORKDIR_ID = re.compile(r"wd_[0-9a-f]{24}")


def user_workdir_dir(state: AppState, user_id: int) -> Path:
    root = state.settings.data_dir / "workdirs"
    root.mkdir(mode=0o700, exist_ok=True)
    folder = root / str(user_id)
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    return folder


def _member_error(name: str, why: str) -> WorkdirError:
    return WorkdirError(422, f"the workdir archive's member {name!r} {why}; it was refused")


def _checked_name(member: tarfile.TarInfo) -> PurePosixPath:
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise _member_error(name, "is an absolute path")
    if ".." in path.parts:
        raise _member_error(name, "climbs out with '..'")
    if member.issym():
        target = PurePosixPath(member.linkname)
        inside = os.path.normpath(str(path.parent / target))
        if target.is_absolute() or inside == ".." or inside.startswith("../"):
            raise _member_error(name, f"is a link out of the workdir ({member.linkname})")
    elif not (member.isfile() or member.isdir()):
        raise _member_error(name, "is not a file, a folder or a link inside the workdir")
    return path


def check_archive(path: Path) -> tuple[int, int]:
    """(files, unpacked bytes) of a workdir archive; WorkdirError when it is not safe."""
    files = unpacked = 0
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                _checked_name(member)
                files += 1
                unpacked += max(member.size, 0)
                if files > MAX_FILES:
                    raise WorkdirError(413, f"the workdir has more than {MAX_FILES} files")
                if unpacked > MAX_UNPACKED_BYTES:
                    raise WorkdirError(
                        413, f"the workdir unpacks to more than {MAX_UNPACKED_BYTES} bytes"
                    )
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise WorkdirError(422, f"the workdir is not a readable tar.gz archive: {exc}") from None
    return files, unpacked


def safe_extract(archive_path: Path, dest: Path) -> int:
    """Unpack a workdir archive into `dest` (checked again, member by member); return the
    number of files. Links are made last, so nothing is ever written through one."""
    check_archive(archive_path)
    links: list[tuple[Path, str]] = []
    count = 0
    with tarfile.open(archive_path, "r:gz") as archive:
        for member in archive:
            target = dest.joinpath(*_checked_name(member).parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.issym():
                links.append((target, member.linkname))
            else:
                source = archive.extractfile(member)
                if source is None:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                mode = 0o755 if member.mode & 0o111 else 0o644
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                with source, os.fdopen(os.open(target, flags, mode), "wb") as out:
                    while chunk := source.read(1024 * 1024):
                        out.write(chunk)
                count += 1
    # Each link is checked where it really lands (through the links made before it), and all
    # of them again at the end: a lexically inside chain (`a/b/c/d -> ../../..`, then
    # `e -> a/b/c/d/../../..`) must not lead a write, or a link, out of `dest`.
    root = dest.resolve()
    try:
        for target, linkname in links:
            if not _inside(target.parent.resolve(), root):
                raise _member_error(str(target.relative_to(dest)), "lies behind a link out")
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                target.symlink_to(linkname)
        for target, _ in links:
            if not _inside(Path(os.path.realpath(target)), root):
                raise _member_error(str(target.relative_to(dest)), "leads out of the workdir")
    except WorkdirError:
        for made, _ in reversed(links):  # never through a link that leads out
            if _inside(made.parent.resolve(), root) and made.is_symlink():
                made.unlink()
        raise
    return count


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def store_workdir(state: AppState, user_id: int, sink: MultipartSink) -> dict[str, Any]:
    """Check the received archive and keep it under its content id; remove it on failure."""
    try:
        if not sink.complete or sink.temp_path is None:
            raise WorkdirError(
                422,
                "the body has no complete `file` part; send the workdir as a tar.gz in the "
                "multipart/form-data field `file`",
            )
        files, unpacked = check_archive(sink.temp_path)
        digest = sink.sha256.hexdigest()
        workdir_id = f"wd_{digest[:24]}"
        final = sink.temp_path.with_name(f"{workdir_id}.tar.gz")
        os.replace(sink.temp_path, final)
    except BaseException:
        sink.discard()
        raise
    view = {
        "workdir_id": workdir_id,
        "sha256": digest,
        "size": sink.size,
        "files": files,
        "unpacked_size": unpacked,
    }
    meta = final.with_suffix("").with_suffix(".json")
    meta.write_text(json.dumps(view), encoding="utf-8")
    os.utime(final)  # the same content uploaded again is the newest
    prune(final.parent)
    return view


def prune(folder: Path, keep: int = KEEP_PER_USER) -> None:
    """Keep the user's `keep` newest workdirs; remove the others (archive and its .json)."""
    archives = sorted(folder.glob("wd_*.tar.gz"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in archives[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()
            old.with_suffix("").with_suffix(".json").unlink(missing_ok=True)


def own_workdir(state: AppState, user_id: int, workdir_id: str) -> Path | None:
    """The caller's workdir archive, or None (a missing one, or another user's)."""
    if not WORKDIR_ID.fullmatch(workdir_id):
        return None
    path = state.settings.data_dir / "workdirs" / str(user_id) / f"{workdir_id}.tar.gz"
    return path if path.is_file() else None


# What python and bash print when the file a command names is not there.
MISSING_FILE = re.compile(
    r"can't open file '(?P<py>[^']+)'"
    r"|: (?:line \d+: )?(?P<sh>\./[^\s:]+|[^\s:]+\.(?:sh|py)): No such file or directory"
    r"|cannot open (?P<sh2>\S+\.(?:sh|py)): No such file"
)


def unpack_shipped(job_dir: Path, workspace: Path, note: Callable[[str], None]) -> None:
    """Unpack the job's workdir (if it has one) into its fresh workspace."""
    archive = job_dir / WORKDIR_FILE
    if archive.is_file():
        files = safe_extract(archive, workspace)
        note(f"workdir unpacked into /workspace ({files} files)")


def with_hint(
    message: str, step: str | None, code: int | None, job_dir: Path, log_name: str = "job.log"
) -> str:
    """A failed command's message, plus how to ship code when its script was missing (as the
    job's log `log_name` says: a rank's own, `provider.ranks`)."""
    if step != "command" or code not in (2, 127):
        return message
    hint = missing_file_hint(job_dir / log_name, (job_dir / WORKDIR_FILE).is_file())
    return f"{message}: {hint}" if hint else message


def missing_file_hint(log_path: Path, shipped: bool) -> str | None:
    """When the log's end says the command's script is missing: what to do about it."""
    try:
        with log_path.open("rb") as log:
            log.seek(max(0, log_path.stat().st_size - 8192))
            tail = log.read().decode("utf-8", "replace")
    except OSError:
        return None
    matches = list(MISSING_FILE.finditer(tail))
    if not matches:
        return None
    found = matches[-1]
    name = next(g for g in found.groups() if g)
    for prefix in ("/workspace/", "./"):
        name = name.removeprefix(prefix)
    if "/workspace/" in name:
        name = name.split("/workspace/", 1)[1]
    if shipped:
        return (
            f"the workspace has no {name}: the shipped workdir does not hold it (check the "
            "path, .gitignore and .dumontignore)"
        )
    return (
        f"the workspace has no {name}: ship your code with --workdir . (or `workdir:` in the spec)"
    )
