"""The fine-tune runner: the job runner (`runner.Runner`) with a fine-tune's inputs and cache.

`python -m dumont_plan.server.provider.ft_runner <dir> --token T --attempt N` runs a
fine-tune exactly as a job runs (detached, in its own session so that it outlives a restart of
the control plane; a bubblewrap sandbox; output streamed into `job.log`; `state.json`; SIGTERM
cancels; the outputs kept, the workspace destroyed), with two differences:

- before the script, the files of `<dir>/inputs/` (the dataset and the trainer's config) are
  copied into the fresh workspace's `input/` (the workload never sees the control plane's
  copy), and its `outputs/` (the trainer's output dir) is made;
- the workload's environment loads models from the server's Hugging Face model cache, mounted
  read-only (`spec["hf_hub_cache"]`), offline: `HF_HUB_CACHE`, `HF_HUB_OFFLINE=1`,
  `TRANSFORMERS_OFFLINE=1`, `HF_DATASETS_OFFLINE=1`; `HF_HOME` stays the sandbox's own
  writable folder (the operator's token is never there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from dumont_plan.server.provider.runner import Runner
from dumont_plan.server.provider.sandbox import Sandbox

INPUTS_DIR = "inputs"
WORKSPACE_INPUTS = "input"
OUTPUT_DIR = "outputs"  # the trainer's output_dir, kept after the run


class FinetuneRunner(Runner):
    def prepare(self) -> None:
        super().prepare()
        source = self.dir / INPUTS_DIR
        target = self.sandbox.workspace / WORKSPACE_INPUTS
        target.mkdir()
        (self.sandbox.workspace / OUTPUT_DIR).mkdir()
        for item in sorted(source.iterdir()) if source.is_dir() else []:
            if item.is_file() and not item.is_symlink():
                shutil.copyfile(item, target / item.name)

    def job_env(self, control_fd: int, sandbox: Sandbox | None = None) -> dict[str, str]:
        env = super().job_env(control_fd, sandbox)
        cache = self.spec.get("hf_hub_cache")
        if cache:
            env["HF_HUB_CACHE"] = str(cache)
        env.update(
            {
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        return env


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)
    parser = argparse.ArgumentParser(prog="python -m dumont_plan.server.provider.ft_runner")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--token", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return FinetuneRunner(ns.directory.resolve(), ns.token, ns.attempt).run()


if __name__ == "__main__":
    raise SystemExit(main())
