"""`jobs:` — run a task on a GPU machine and destroy the machine afterwards."""

from __future__ import annotations

import json
import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dumont_plan.spec.common import Lifecycle, SpecModel
from dumont_plan.spec.schedule import JobScheduleSpec


class JobSpec(SpecModel):
    """A job: runs once (by default) on a GPU machine that is destroyed after it ends."""

    # Attributes other resources may reference as `${job.NAME.ATTR}`.
    REF_ATTRS: ClassVar[frozenset[str]] = frozenset({"id", "name", "status"})

    source: Literal["command", "git", "huggingface", "script"] = Field(
        "command",
        description=(
            "Where the code comes from: `command` (just run `command`), `git` (clone `git_url`), "
            "`huggingface` (download `hf_repo`) or `script` (same as `command`)."
        ),
    )
    command: str = Field("", description="Main command, run with bash in the job's directory.")
    workdir: str | None = Field(
        None,
        description=(
            "A local folder of code (relative to this spec file) shipped into /workspace at "
            "apply: git-aware (tracked + untracked-not-ignored files), `.dumontignore` honoured; "
            "tracked by its content (`workdir_sha256`)."
        ),
    )
    workdir_sha256: str | None = Field(
        None,
        description="The workdir's content hash. Filled by dumont: a change is 'workdir changed'.",
    )
    git_url: str | None = Field(None, description="Repository to clone when `source: git`.")
    git_branch: str | None = Field(None, description="Branch to clone (default branch if unset).")
    hf_repo: str | None = Field(
        None, description="Hugging Face repo id to download when `source: huggingface`."
    )
    hf_revision: str | None = Field(None, description="Revision of `hf_repo` (default `main`).")
    hf_token: str | None = Field(
        None, description="Hugging Face token; write `${secret.HF_TOKEN}`, never the value."
    )
    setup_script: str | None = Field(
        None, description="Shell script run after pip installs and before `command`."
    )
    pip_packages: list[str] = Field(default_factory=list, description="Packages to pip install.")
    gpu_type: str = Field("RTX 4090", description="GPU model, as the market names it.")
    num_gpus: int = Field(1, ge=1, le=8, description="Number of GPUs (1-8), on each node.")
    num_nodes: int = Field(
        1,
        ge=1,
        le=16,
        description=(
            "Machines (1-16), each with `num_gpus` GPUs; the job runs one rank per node "
            "(torch-distributed environment) and is billed for every node."
        ),
    )
    use_spot: bool = Field(True, description="Spot (interruptible, cheaper) or on-demand.")
    disk_size: float = Field(50, ge=10, description="Disk in GB (at least 10).")
    timeout_minutes: int = Field(
        480, ge=10, le=1440, description="Wall-clock limit in minutes (10-1440)."
    )
    image: str = Field(
        "pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime", description="Container image."
    )
    output_paths: list[str] = Field(
        default_factory=lambda: ["/workspace/output"],
        description="Paths kept as downloadable outputs after the job ends.",
    )
    auto_destroy: bool = Field(True, description="Destroy the machine when the job ends.")
    max_retries: int = Field(0, ge=0, le=5, description="Retries after a failure (0-5).")
    schedule: JobScheduleSpec | None = Field(
        None,
        description=(
            "When it starts: `{at: ISO time}` once (the job waits `scheduled`), or "
            "`{cron: '0 2 * * *', tz: Europe/Paris}`: a schedule on the control plane whose "
            "runs are jobs (run_policy and wait do not apply to it). A changed schedule is an "
            "update in place, not a new run."
        ),
    )
    run_policy: Literal["once", "on_change", "always"] = Field(
        "once",
        description=(
            "`once`: a finished job never re-runs; `on_change`: re-run when the spec changes; "
            "`always`: re-run on every apply."
        ),
    )
    wait: Literal["none", "running", "completed"] = Field(
        "none", description="What `apply` waits for after creating the job."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Addresses (`kind.name`) to apply before this one."
    )
    lifecycle: Lifecycle = Field(
        default_factory=Lifecycle,
        description="Guards on changes: `prevent_destroy`, `ignore_changes`.",
    )

    @field_validator("workdir_sha256")
    @classmethod
    def _a_sha256(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value.strip().lower()):
            raise ValueError(f"{value!r} is not a sha256 (64 hexadecimal digits)")
        return value.strip().lower() if value is not None else None

    @model_validator(mode="after")
    def _source_needs_its_field(self) -> JobSpec:
        if self.source == "git" and not self.git_url:
            raise ValueError("`source: git` needs `git_url`; add git_url: https://...")
        if self.source == "huggingface" and not self.hf_repo:
            raise ValueError("`source: huggingface` needs `hf_repo`; add hf_repo: OWNER/NAME")
        if self.schedule is not None and self.schedule.cron is not None:
            self._fits_a_cron_template()
        return self

    def _fits_a_cron_template(self) -> None:
        """A cron schedule stores its job template, which never holds a secret, and runs
        long after an upload is pruned."""
        if self.workdir is not None:
            raise ValueError(
                "`schedule.cron` cannot ship a `workdir` (an upload does not outlive the runs); "
                "use source: git with git_url, or a command that fetches the code"
            )
        if self.hf_token is not None or "${secret." in json.dumps(self.model_dump(mode="json")):
            raise ValueError(
                "`schedule.cron` stores the job as a template, and secrets are never stored; "
                "remove hf_token and ${secret.*}, or use `schedule.at` (one run)"
            )
