"""Options a server may ignore: a warning, once per option, when `/health` does not list the
capability that makes it work (the real platform lists none; the local control plane lists
its additive extensions in `server/routes/health.py` CAPABILITIES)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dumont_plan.client import DumontClient
from dumont_plan.wire_models import Job

# capability -> what the server does instead, when it lacks it (said after the option's name).
IGNORED = {
    "idempotency-key": "ignores Idempotency-Key: a job of the same name is looked up first",
    "jobs.auto-destroy": "ignores it: the machine is destroyed after the job",
    "jobs.max-retries": "ignores it: a failed job is not retried",
    "jobs.outputs": "keeps no outputs: nothing will be downloadable",
    "jobs.timeout-status": "ends a job past its timeout as `completed`, not `timeout`",
    "jobs.logs-tail": "ignores it: the whole log is printed",
    "auth.revocable-logout": "does not revoke tokens: this one stays valid until it expires "
    "(it is forgotten here)",
}

_warned: set[str] = set()


def missing(client: DumontClient, capability: str) -> bool:
    """Whether the server does not list `capability` (a server that lists none lacks all)."""
    return capability not in client.capabilities()


def warn_ignored(client: DumontClient, used: Iterable[tuple[str, str]]) -> list[str]:
    """For each (option, capability) given by the user that the server lacks: one warning on
    stderr (once per process). The warnings printed."""
    from dumont_plan.cli.output import err_console

    printed = []
    for option, capability in used:
        if capability in _warned or not missing(client, capability):
            continue
        _warned.add(capability)
        text = (
            f"warning: {option}: this server {IGNORED[capability]} (no `{capability}` in /health)"
        )
        err_console.print(text, markup=False, highlight=False)
        printed.append(text)
    return printed


def ignorable_options(
    flags: Mapping[str, Any], idempotency_key: str | None
) -> list[tuple[str, str]]:
    """The options of `job create` given here that need a capability: (option, capability)."""
    used = [
        ("--idempotency-key", "idempotency-key", idempotency_key is not None),
        ("--no-auto-destroy", "jobs.auto-destroy", flags.get("auto_destroy") is False),
        ("--max-retries", "jobs.max-retries", bool(flags.get("max_retries"))),
        ("--output-path", "jobs.outputs", bool(flags.get("output_paths"))),
        ("--timeout", "jobs.timeout-status", flags.get("timeout_minutes") is not None),
    ]
    return [(option, capability) for option, capability, given in used if given]


def create_once(client: DumontClient, idempotency_key: str | None, body: dict[str, Any]) -> Job:
    """`POST /jobs/` with the key; where the server does not honour the key, a job of the same
    name is looked for first and returned (a retry after a lost answer makes no second job),
    as `apply` adopts an object it finds by its remote name."""
    name = body.get("name")
    if idempotency_key and name and missing(client, "idempotency-key"):
        for job in client.jobs.iter_all():
            if job.name == name:
                return job
    return client.jobs.create(idempotency_key=idempotency_key, **body)
