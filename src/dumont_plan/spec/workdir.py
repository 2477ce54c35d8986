"""Pack a job's workdir (the user's code) as a tar.gz to upload (`POST /jobs/workdirs`).

Which files go, like SkyPilot's and dstack's workdir sync: in a git repository, the files git
tracks plus the untracked ones it does not ignore (`git ls-files -co --exclude-standard`, so
`.gitignore` is honoured); elsewhere every file except `DEFAULT_IGNORE` (.git, .venv,
__pycache__, node_modules, ...). A `.dumontignore` (gitignore-style lines: names, globs,
`dir/`) leaves out more in both cases. The archive is deterministic (sorted names, fixed
times, no owners); the spec's `workdir:` is tracked by `tree_hash` (the files' names, modes and
contents). Past `max_bytes` the packing stops with the biggest files named.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dumont_plan.errors import DumontError

MAX_BYTES = 100 * 1024 * 1024  # the server's cap on an archive (workdirs.MAX_BYTES)
IGNORE_FILE = ".dumontignore"
DEFAULT_IGNORE = (
    ".git/",
    ".hg/",
    ".svn/",
    ".venv/",
    "venv/",
    "__pycache__/",
    "*.pyc",
    "node_modules/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".dumont/",
    ".DS_Store",
)


@dataclass
class PackedWorkdir:
    """A packed workdir: the archive's path (a temporary file the caller removes)."""

    archive: Path
    files: list[str] = field(default_factory=list)
    size: int = 0  # the files' total size, unpacked
    sha256: str = ""


def _patterns(root: Path) -> list[str]:
    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        return []
    lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(rel: PurePosixPath, patterns: list[str] | tuple[str, ...]) -> bool:
    for raw in patterns:
        folder_only = raw.endswith("/")
        pattern = raw.strip("/")
        anchored = "/" in pattern
        if anchored:
            text = str(rel)
            if fnmatch.fnmatch(text, pattern) or fnmatch.fnmatch(text, pattern + "/*"):
                return True
            continue
        # A folder pattern matches any parent folder; a name pattern any part.
        candidates = rel.parts[:-1] if folder_only else rel.parts
        if any(fnmatch.fnmatch(part, pattern) for part in candidates):
            return True
    return False


def _git_files(root: Path) -> list[str] | None:
    """Files git would ship (tracked + untracked not ignored), or None outside a repository."""
    try:
        inside = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return None
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z", "--", "."],
            capture_output=True,
            timeout=120,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [n for n in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return sorted(set(names))


def _walk_files(root: Path) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        rel_folder = PurePosixPath(Path(folder).relative_to(root).as_posix())
        dirs[:] = [
            d for d in dirs if not _ignored(rel_folder / d / "x", DEFAULT_IGNORE)
        ]  # a folder pattern matches its files' parents
        for name in files:
            rel = rel_folder / name
            if not _ignored(rel, DEFAULT_IGNORE):
                found.append(str(rel).removeprefix("./"))
    return sorted(found)


def list_files(root: Path) -> list[str]:
    """The relative paths (posix) that a workdir upload of `root` ships."""
    names = _git_files(root)
    if names is None:
        names = _walk_files(root)
    extra = _patterns(root)
    kept = []
    for name in names:
        rel = PurePosixPath(name)
        path = root / name
        if extra and _ignored(rel, extra):
            continue
        if not (path.is_file() or path.is_symlink()):
            continue  # deleted but still tracked, or a submodule
        kept.append(name)
    return kept


def _too_big(root: Path, names: list[str], total: int, max_bytes: int) -> DumontError:
    sizes = sorted(
        ((os.lstat(root / n).st_size, n) for n in names), key=lambda item: item[0], reverse=True
    )
    biggest = ", ".join(f"{n} ({s / 1e6:.1f} MB)" for s, n in sizes[:5])
    return DumontError(
        f"workdir {root}: {total / 1e6:.1f} MB of files is over the {max_bytes / 1e6:.0f} MB "
        f"limit; the biggest: {biggest}",
        f"leave them out with a {IGNORE_FILE} (or .gitignore) line each, and fetch data in the "
        "job instead",
    )


def pack(root: Path, max_bytes: int = MAX_BYTES) -> PackedWorkdir:
    """Pack `root`'s shippable files into a temporary tar.gz (deterministic)."""
    if not root.is_dir():
        raise DumontError(f"workdir {root}: not a folder", "give the folder of your code, e.g. .")
    names = list_files(root)
    if not names:
        raise DumontError(
            f"workdir {root}: no file to ship (all ignored or none there)",
            f"check .gitignore / {IGNORE_FILE}, or give the folder of your code",
        )
    total = sum(os.lstat(root / n).st_size for n in names)
    if total > max_bytes * 4:  # unpacked; the archive's own cap is checked below
        raise _too_big(root, names, total, max_bytes)
    handle, temp = tempfile.mkstemp(prefix="dumont-workdir-", suffix=".tar.gz")
    archive = Path(temp)
    try:
        with (
            os.fdopen(handle, "wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for name in names:
                info = tar.gettarinfo(str(root / name), arcname=name)
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o755 if info.mode & 0o111 else 0o644
                if info.isfile():
                    with (root / name).open("rb") as data:
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
        if archive.stat().st_size > max_bytes:
            raise _too_big(root, names, total, max_bytes)
        digest = hashlib.sha256()
        with archive.open("rb") as done:
            while chunk := done.read(1024 * 1024):
                digest.update(chunk)
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    return PackedWorkdir(archive=archive, files=names, size=total, sha256=digest.hexdigest())


def tree_hash(root: Path) -> str:
    """The sha256 of the files a workdir upload of `root` ships (names, executable bits and
    contents, not times): the spec's `workdir_sha256`, so an edit is "workdir changed"."""
    digest = hashlib.sha256()
    for name in list_files(root):
        path = root / name
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        if path.is_symlink():
            digest.update(b"L" + os.readlink(path).encode("utf-8", "surrogateescape"))
        else:
            digest.update(b"X" if os.access(path, os.X_OK) else b"F")
            with path.open("rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def content_hash(root: Path) -> str:
    """The sha256 of what `pack(root)` would upload (the archive is deterministic)."""
    packed = pack(root)
    packed.archive.unlink(missing_ok=True)
    return packed.sha256
