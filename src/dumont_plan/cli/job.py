"""`dumont job create|list|status|logs|cancel|wait`: run a command on a GPU once, then destroy.

The flags are the sprint's (`--gpu`, `--use-spot=false`, `--timeout=480`, `--disk`, `--pip`,
`--setup`); the old CLI's `key=value` words work too (`dumont job create train
command="python x.py" gpu="RTX 4090"`). Every command takes `--output json` for scripts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from dumont_plan.cli import durations
from dumont_plan.cli.capabilities import create_once, ignorable_options, missing, warn_ignored
from dumont_plan.cli.job_input import build_create_body, describe_rejection, parse_bool, split_list
from dumont_plan.cli.job_schedule import check_options, schedules_app, show_schedule, start_at
from dumont_plan.cli.job_schedule import timezone as check_timezone
from dumont_plan.cli.job_watch import (
    LIST_COLUMNS,
    RankLogs,
    about_job,
    about_rank,
    created_text,
    finish_wait,
    follow_logs,
    list_row,
    print_job,
)
from dumont_plan.cli.job_workdir import missing_code_warning, ship_workdir
from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    console,
    emit_json,
    err_console,
    print_table,
    split_key_values,
)
from dumont_plan.cli.session import complete_ids, open_client
from dumont_plan.errors import DumontError, UnprocessableError
from dumont_plan.spec.messages import suggest
from dumont_plan.wire import JOB_STATUSES

app = typer.Typer(
    help=(
        "Run a command on a GPU machine once, then destroy the machine (Jobs).\n\n"
        'Typical use: `dumont job create train --command="python train.py" '
        '--gpu="RTX 4090" --wait`, then `dumont job logs <id> --follow`.'
    ),
    no_args_is_help=True,
)
app.add_typer(schedules_app, name="schedules")


def complete_job_id(incomplete: str) -> list[str]:
    """Shell completion of a job id (your newest 100 jobs)."""
    return complete_ids("/api/v1/jobs/?limit=100", "id", incomplete)


JobIdArg = typer.Argument(
    ..., metavar="JOB_ID", help="The job's id (job_…).", autocompletion=complete_job_id
)
WaitTimeoutOpt = typer.Option(
    None,
    "--wait-timeout",
    help="With --wait/--follow: stop waiting after this long (30s, 15m, 2h; a bare number is "
    "seconds; exit 4). Default: no limit.",
    metavar="DURATION",
    parser=durations.seconds,
)


@app.command(
    epilog=(
        "Examples:\n\n"
        '  dumont job create train --command="python train.py" --gpu="RTX 4090"\n\n'
        '  dumont job create train --workdir . --command="python train.py"\n\n'
        '  dumont job create fetch --source=huggingface --hf-repo="user/repo" '
        '--hf-token-env=HF_TOKEN --command="python main.py"\n\n'
        '  dumont job create build --source=git --git-url="https://github.com/acme/x.git" '
        '--command="./run.sh"\n\n'
        '  dumont job create train --command="python train.py" --use-spot=false '
        "--timeout=480 --disk=100 --wait\n\n"
        '  dumont job create nightly --command="python train.py" --at="2026-12-05T02:00Z"\n\n'
        '  dumont job create nightly --command="python train.py" --cron="0 2 * * *" '
        "--tz=Europe/Paris\n\n"
        '  dumont job create train command="python train.py" gpu="RTX 4090"   (old form)'
    )
)
def create(
    ctx: typer.Context,
    words: list[str] | None = typer.Argument(
        None,
        metavar="NAME [KEY=VALUE]",
        help="Job name (not unique), then optional old-style key=value words.",
        show_default=False,
    ),
    command: str | None = typer.Option(
        None, "--command", "-c", help="The command to run (required for --source=command)."
    ),
    source: str | None = typer.Option(
        None,
        "--source",
        help="Where the code comes from: command, huggingface, git or script. "
        "Default: git with --git-url, huggingface with --hf-repo, else command.",
    ),
    gpu: str | None = typer.Option(
        None, "--gpu", "--gpu-type", help='GPU model, exactly as offered (default "RTX 4090").'
    ),
    num_gpus: int | None = typer.Option(None, "--num-gpus", help="Number of GPUs, 1–8."),
    nodes: int | None = typer.Option(
        None,
        "--nodes",
        min=1,
        max=16,
        help="Machines, each with --num-gpus GPUs, each billed (the local control plane runs "
        "them as ranks: `dumont job logs --rank`).",
    ),
    use_spot: str | None = typer.Option(
        None,
        "--use-spot",
        metavar="BOOL",
        help="true = spot (cheaper, may be interrupted; the default), false = on-demand.",
    ),
    spot: bool | None = typer.Option(
        None, "--spot/--no-spot", help="Short for --use-spot=true / --use-spot=false."
    ),
    timeout: int | None = typer.Option(
        None,
        "--timeout",
        "--timeout-minutes",
        help="Job time limit, 10m–24h (90m, 2h; a bare number is MINUTES; default 8h); then "
        "status `timeout`.",
        metavar="DURATION",
        parser=durations.minutes,
    ),
    disk: float | None = typer.Option(
        None, "--disk", "--disk-size", help="Disk size in GB, at least 10 (default 50)."
    ),
    image: str | None = typer.Option(None, "--image", help="Container image."),
    setup: str | None = typer.Option(
        None, "--setup", "--setup-script", help="Shell script run before the command."
    ),
    pip: list[str] | None = typer.Option(
        None, "--pip", help='Pip packages, comma-separated and/or repeated: --pip="pkg1,pkg2".'
    ),
    hf_repo: str | None = typer.Option(None, "--hf-repo", help='Hugging Face repo "user/repo".'),
    hf_revision: str | None = typer.Option(
        None, "--hf-revision", help="Branch, tag or commit of --hf-repo (default main)."
    ),
    hf_token_env: str | None = typer.Option(
        None,
        "--hf-token-env",
        metavar="NAME",
        help="Read the Hugging Face token from environment variable NAME (the safe way).",
    ),
    hf_token: str | None = typer.Option(
        None,
        "--hf-token",
        help="Hugging Face token (visible in your shell history: prefer --hf-token-env). "
        "Never printed.",
        show_default=False,
    ),
    git_url: str | None = typer.Option(None, "--git-url", help="Git URL to clone."),
    git_branch: str | None = typer.Option(None, "--git-branch", help="Branch of --git-url."),
    workdir: Path | None = typer.Option(
        None,
        "--workdir",
        metavar="PATH",
        help="Ship this folder's code into /workspace before the command (git-aware: tracked "
        "and untracked-but-not-ignored files; elsewhere all but .git, .venv, __pycache__...; "
        "a .dumontignore leaves out more).",
    ),
    max_retries: int | None = typer.Option(
        None, "--max-retries", help="Retries after a failure or interruption, 0–5 (default 0)."
    ),
    output_path: list[str] | None = typer.Option(
        None,
        "--output-path",
        help="A path kept as a downloadable output after the job (repeatable).",
    ),
    no_auto_destroy: bool = typer.Option(
        False, "--no-auto-destroy", help="Keep the machine's workspace after the job."
    ),
    idempotency_key: str | None = typer.Option(
        None,
        "--idempotency-key",
        help="Repeat-safe create: the same key returns the first job instead of a new one "
        "(a server without the `idempotency-key` capability, such as the real platform, "
        "ignores the key: a job of the same name is returned instead of a new one).",
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for the job to finish (exit 0 completed, 5 failed)."
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Stream the job's log until it finishes (implies --wait)."
    ),
    wait_timeout: float | None = WaitTimeoutOpt,
    at: str | None = typer.Option(
        None,
        "--at",
        metavar="TIME",
        help='Start at this ISO time ("2026-12-05T02:00Z"; without Z or an offset it is UTC); '
        "until then the job is `scheduled`.",
    ),
    cron: str | None = typer.Option(
        None,
        "--cron",
        metavar="EXPR",
        help='Make a schedule instead: this job runs at each time of the cron expression ("0 2 '
        '* * *": daily at 02:00). See `dumont job schedules`.',
    ),
    tz: str | None = typer.Option(
        None, "--tz", metavar="ZONE", help="The --cron timezone, e.g. Europe/Paris (default UTC)."
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Create a job: run a command on a GPU machine, then destroy the machine.

    The job's source step runs first (clone --git-url, or download --hf-repo), then --pip
    packages, then --setup, then --command. Exit codes with --wait/--follow: 0 completed,
    5 failed/cancelled/timeout, 4 when --wait-timeout elapses.
    """
    where = "job create"
    if use_spot is not None and spot is not None:
        raise DumontError(f"{where}: both --use-spot and --spot/--no-spot are given", "use one")
    token = hf_token
    if hf_token_env is not None:
        if hf_token is not None:
            raise DumontError(
                f"{where}: both --hf-token and --hf-token-env are given", "use --hf-token-env"
            )
        token = os.environ.get(hf_token_env)
        if not token:
            raise DumontError(
                f"{where}: --hf-token-env={hf_token_env}: that environment variable is not set",
                f"export {hf_token_env}=... first",
            )
    flags: dict[str, Any] = {
        "command": command,
        "source": source,
        "gpu_type": gpu,
        "num_gpus": num_gpus,
        "num_nodes": nodes,
        "use_spot": parse_bool(use_spot, "--use-spot") if use_spot is not None else spot,
        "timeout_minutes": timeout,
        "disk_size": disk,
        "image": image,
        "setup_script": setup,
        "pip_packages": split_list(pip) or None,
        "hf_repo": hf_repo,
        "hf_revision": hf_revision,
        "hf_token": token,
        "git_url": git_url,
        "git_branch": git_branch,
        "max_retries": max_retries,
        "output_paths": list(output_path) if output_path else None,
        "auto_destroy": False if no_auto_destroy else None,
    }
    check_options(at, cron, tz, where, waits="--follow" if follow else "--wait" if wait else None)
    body = build_create_body(list(words or []), flags, where)
    if at is not None:
        body["start_at"] = start_at(at, where)
    zone = check_timezone(tz, where) if tz is not None else "UTC"
    client = open_client(ctx)
    if (nodes or 1) > 1 and missing(client, "jobs.num-nodes"):
        raise DumontError(
            f"{where}: --nodes={nodes}: this server runs a job on one machine "
            "(no `jobs.num-nodes` in /health)",
            "leave out --nodes, or use the local control plane (`dumont server start`)",
        )
    if workdir is not None:
        body["workdir_id"] = ship_workdir(client, workdir)
    warning = missing_code_warning(body)
    if warning:
        err_console.print(warning, markup=False, highlight=False, soft_wrap=True, style="yellow")
    warn_ignored(client, ignorable_options(flags, idempotency_key))
    try:
        if cron is not None:
            made = client.jobs.create_schedule(cron, zone, body, idempotency_key=idempotency_key)
            show_schedule(made, output)
            return
        job = create_once(client, idempotency_key, body)
    except UnprocessableError as exc:
        # Not chained: the API's 422 can echo the values sent, hf_token among them (which
        # describe_rejection leaves out), and DUMONT_DEBUG prints the chain.
        raise describe_rejection(exc, where) from None
    if not (wait or follow):
        if output is OutputFormat.json:
            emit_json(job.raw)
        else:
            console.print(created_text(job), markup=False)
            console.print(
                f"Follow it: dumont job logs {job.id} --follow", markup=False, style="dim"
            )
        return
    if output is OutputFormat.table:
        err_console.print(created_text(job), markup=False)
    finish_wait(
        client,
        job.id,
        timeout=wait_timeout,
        poll=1.0,
        follow=follow,
        output=output,
    )


@app.command(
    name="list",
    epilog=(
        "Examples:\n\n  dumont job list\n\n  dumont job list --status=running\n\n"
        "  dumont job list status=failed --output json"
    ),
)
def list_(
    ctx: typer.Context,
    words: list[str] | None = typer.Argument(
        None, metavar="KEY=VALUE", help="Old-style status=… / limit=… words."
    ),
    status: str | None = typer.Option(
        None, "--status", help="Only jobs in this status: " + ", ".join(JOB_STATUSES) + "."
    ),
    limit: int = typer.Option(50, "--limit", min=1, max=100, help="At most this many, 1–100."),
    all_: bool = typer.Option(False, "--all", help="Every job (pages through the API)."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List your jobs, newest first."""
    where = "job list"
    positionals, pairs = split_key_values(list(words or []), ["status", "limit"], where)
    if positionals:
        raise DumontError(
            f"{where}: unexpected word {positionals[0]!r}", "use --status=STATUS or --limit=N"
        )
    if "status" in pairs:
        status = str(pairs["status"])
    if "limit" in pairs:
        value = pairs["limit"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise DumontError(f"{where}: limit={value}: expected a whole number 1–100")
        limit = value
    if status is not None and status not in JOB_STATUSES:
        close = suggest(status, list(JOB_STATUSES))
        raise DumontError(
            f"{where}: --status={status} is not a job status",
            (f"did you mean {close!r}? " if close else "")
            + "use one of: "
            + ", ".join(JOB_STATUSES),
        )
    client = open_client(ctx)
    if all_:
        jobs = client.jobs.list_all(status=status)
        total: int | None = len(jobs)
        answer: dict[str, Any] = {"jobs": [j.raw for j in jobs], "total": total}
    else:
        page = client.jobs.list(limit=limit, status=status)
        jobs, total, answer = page.jobs, page.total, page.raw
    if output is OutputFormat.json:
        emit_json(answer)
        return
    print_table((list_row(j) for j in jobs), LIST_COLUMNS)
    if total is not None and total > len(jobs):
        console.print(
            f"Showing {len(jobs)} of {total} jobs; see more with --limit=100 or --all.",
            markup=False,
            style="dim",
        )


@app.command(epilog="Example:\n\n  dumont job status job_1a2b3c4d")
def status(
    ctx: typer.Context,
    job_id: str = JobIdArg,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show a job: status, machine, timing and cost so far."""
    with about_job(job_id, "job status"):
        job = open_client(ctx).jobs.get(job_id)
    if output is OutputFormat.json:
        emit_json(job.raw)
    else:
        print_job(job)


@app.command(
    epilog=(
        "Examples:\n\n  dumont job logs job_1a2b3c4d --tail=100\n\n"
        "  dumont job logs job_1a2b3c4d --follow\n\n"
        "  dumont job logs job_1a2b3c4d --rank=1 --follow"
    )
)
def logs(
    ctx: typer.Context,
    job_id: str = JobIdArg,
    tail: int | None = typer.Option(None, "--tail", "-n", min=0, help="Only the last N lines."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing new lines until the job finishes."
    ),
    poll: float = typer.Option(1.0, "--poll", min=0.1, help="Seconds between checks."),
    rank: int | None = typer.Option(
        None,
        "--rank",
        min=0,
        max=15,  # a job has at most 16 nodes (--nodes)
        help="A job of several nodes (--nodes): this rank's log, 0-based (default: rank 0's).",
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print a job's log (while it runs and after). With --follow, stream it until the end.

    With --output json: the API's {"job_id", "logs"} object; with --follow, one JSON object
    per line ({"job_id", "line"}).
    """
    client = open_client(ctx)
    if tail is not None:
        warn_ignored(client, [("--tail", "jobs.logs-tail")])
    if rank and missing(client, "jobs.logs-rank"):
        raise DumontError(
            f"job logs: --rank={rank}: this server keeps one log per job "
            "(no `jobs.logs-rank` in /health)",
            "leave out --rank",
        )
    jobs = RankLogs(client.jobs, rank)
    if not follow:
        with about_job(job_id, "job logs"), about_rank(rank, "job logs"):
            answer = jobs.logs(job_id, tail=tail)
        if output is OutputFormat.json:
            emit_json(answer)
            return
        text = str(answer.get("logs") or "")
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
        return

    follow_logs(client, jobs, job_id, tail=tail, poll=poll, output=output)


@app.command(epilog="Example:\n\n  dumont job cancel job_1a2b3c4d")
def cancel(
    ctx: typer.Context,
    job_id: str = JobIdArg,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Cancel a job: stop its command and destroy its machine. Finished jobs can't be cancelled."""
    with about_job(job_id, "job cancel"):
        job = open_client(ctx).jobs.cancel(job_id)
    if output is OutputFormat.json:
        emit_json(job.raw)
    else:
        console.print(f"Cancelled job {job.id} ({job.name}).", markup=False)


@app.command(
    epilog=(
        "Examples:\n\n  dumont job wait job_1a2b3c4d\n\n"
        "  dumont job wait job_1a2b3c4d --timeout 600 --follow"
    )
)
def wait(
    ctx: typer.Context,
    job_id: str = JobIdArg,
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        help="Stop waiting after this long (30s, 15m, 2h; a bare number is seconds; exit 4). "
        "Default: no limit.",
        metavar="DURATION",
        parser=durations.seconds,
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream the log while waiting."),
    poll: float = typer.Option(1.0, "--poll", min=0.1, help="Seconds between checks."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Wait until a job finishes, showing its status live.

    Exit codes: 0 completed; 5 failed, cancelled or timed out (the job's own limit);
    4 when --timeout elapses first (the job keeps running).
    """
    client = open_client(ctx)
    with about_job(job_id, "job wait"):
        finish_wait(client, job_id, timeout=timeout, poll=poll, follow=follow, output=output)
