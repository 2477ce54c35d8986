"""A fine-tune's kept outputs as one tar.gz (the adapter, tokenizer, checkpoints, stats)."""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from dumont_plan.server.provider.sandbox import Sandbox


def archive(box: Sandbox, job_id: str) -> Path:
    """A temporary tar.gz of every kept output file (paths relative to the outputs folder);
    the caller removes it once sent."""
    fd, name = tempfile.mkstemp(prefix=".archive-", suffix=".tar.gz", dir=box.root)
    os.close(fd)
    path = Path(name)
    try:
        with tarfile.open(path, "w:gz") as tar:
            for entry in box.list_outputs():
                file = box.output_file(str(entry["path"]))
                if file is not None:
                    tar.add(file, arcname=f"finetune-{job_id}/{entry['path']}", recursive=False)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
