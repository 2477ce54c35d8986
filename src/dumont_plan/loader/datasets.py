"""Fine-tunes' local dataset files: found relative to the spec file, hashed, pinned.

A `finetunes.NAME.dataset` that is not a URL, an uploaded server path or a Hugging Face id
names a file on this machine, relative to the folder of the file that declares it. The loader
checks it is there (a located error otherwise), reads its sha256 (in chunks, never whole) into
`dataset_sha256`, so the plan diffs the content and says "dataset changed", and rewrites the
path relative to the stack's root (the first spec file's folder): a checkout moved elsewhere
plans the same. A `dataset_sha256` the user wrote pins the content: a file that differs is an
error. The file itself is uploaded at apply (`kinds/finetune_ops.py`). A job's `workdir:`
folder is found and hashed the same way (`check_workdirs`; packed and uploaded by
`kinds/job_ops.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

from dumont_plan.loader.links import Decl, Fail
from dumont_plan.spec.finetune import (
    DATASET_SUFFIXES,
    FinetuneSpec,
    file_sha256,
    remote_dataset_source,
)
from dumont_plan.spec.job import JobSpec
from dumont_plan.spec.workdir import tree_hash


def stack_relative(path: Path, root: Path) -> str:
    """`path` relative to the stack's root when it is inside it, else absolute (POSIX `/`)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def check_datasets(decls: dict[str, Decl], fail: Fail, cwd: Path, root: Path) -> None:
    """Locate, hash and pin every fine-tune's local dataset file (see the module doc)."""
    for decl in decls.values():
        spec = decl.spec
        if not isinstance(spec, FinetuneSpec) or remote_dataset_source(spec.dataset):
            continue
        doc, loc = decl.where(("dataset",))
        base = (cwd / doc.file).resolve().parent
        path = (base / os.path.expanduser(spec.dataset)).resolve()
        if not path.is_file():
            if spec.dataset.endswith(DATASET_SUFFIXES):
                fail(
                    doc,
                    loc,
                    f"no such file: {spec.dataset} (looked in {stack_relative(base, root) or '.'})",
                    "a local dataset is relative to the spec file that names it",
                )
            else:
                fail(
                    doc,
                    loc,
                    f"{spec.dataset!r} is not a file here, an http(s) URL or a Hugging Face "
                    "dataset id",
                    "use a .jsonl file, https://.../data.jsonl, or owner/name",
                )
            continue
        if not path.name.endswith(DATASET_SUFFIXES):
            fail(
                doc,
                loc,
                f"{spec.dataset}: only .json and .jsonl files can be uploaded",
                "save the records as JSON Lines (one JSON object a line) in a .jsonl file",
            )
            continue
        digest = file_sha256(path)
        if spec.dataset_sha256 is not None and spec.dataset_sha256 != digest:
            pinned_doc, pinned_loc = decl.where(("dataset_sha256",))
            fail(
                pinned_doc,
                pinned_loc,
                f"{spec.dataset} has sha256 {digest[:12]}…, not the pinned "
                f"{spec.dataset_sha256[:12]}…",
                "restore the file, or update dataset_sha256 (or remove it to follow the file)",
            )
            continue
        spec.dataset_sha256 = digest
        spec.dataset = stack_relative(path, root)


def check_workdirs(decls: dict[str, Decl], fail: Fail, cwd: Path, root: Path) -> None:
    """Locate and hash every job's `workdir:` folder (relative to the file that names it); the
    path becomes stack-relative and `workdir_sha256` its content (`spec.workdir.tree_hash`)."""
    for decl in decls.values():
        spec = decl.spec
        if not isinstance(spec, JobSpec) or not spec.workdir:
            continue
        doc, loc = decl.where(("workdir",))
        base = (cwd / doc.file).resolve().parent
        path = (base / os.path.expanduser(spec.workdir)).resolve()
        if not path.is_dir():
            fail(
                doc,
                loc,
                f"no such folder: {spec.workdir} (looked in {stack_relative(base, root) or '.'})",
                "a workdir is a folder of code, relative to the spec file that names it",
            )
            continue
        spec.workdir_sha256 = tree_hash(path)
        spec.workdir = stack_relative(path, root) or "."
