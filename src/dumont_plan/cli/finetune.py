"""`dumont finetune models|upload|create|list|status|logs|cancel|refresh|download|deploy|delete|
wait|presets`: LoRA fine-tunes of a base model on your dataset (contract §6).

The sprint's forms work as written (`dumont finetune create NAME --model=… --dataset=…
--format=alpaca --gpu=A100 --epochs=3 --lr=2e-4`); listing and showing commands take
`--output json`. `create --dry-run` prints the training run as a SkyPilot task.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from dumont_plan.cli import durations
from dumont_plan.cli.finetune_data import about_dataset, print_task, unpack_outputs, upload_file
from dumont_plan.cli.finetune_input import (
    CONFIG_FLAGS,
    FORMATS,
    DatasetChoice,
    IdArg,
    PollOpt,
    WaitTimeoutOpt,
    build_body,
    check_choice,
    check_ranges,
    check_status,
    classify_dataset,
    describe_rejection,
    merge_preset,
)
from dumont_plan.cli.finetune_watch import (
    LIST_COLUMNS,
    Eta,
    about_finetune,
    finish_wait,
    goes_on_after_ctrl_c,
    is_finished,
    print_finetune,
    row,
    wait_text,
)
from dumont_plan.cli.job_watch import log_writer, stream_logs
from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    console,
    emit_json,
    err_console,
    print_table,
)
from dumont_plan.cli.session import open_client
from dumont_plan.client import DumontClient
from dumont_plan.errors import DumontError, UnprocessableError
from dumont_plan.skypilot_task import render_finetune_task
from dumont_plan.wire import FINETUNE_STATUSES

app = typer.Typer(
    help=(
        "LoRA fine-tunes: train an adapter for a base model on your dataset (Fine-tune).\n\n"
        "Typical use: `dumont finetune create demo --model=unsloth/llama-3-8b-bnb-4bit "
        "--dataset=train.jsonl --wait`, then `dumont finetune download <id>`."
    ),
    no_args_is_help=True,
)


class CreateOutput(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


# -- catalogue ----------------------------------------------------------------------------


@app.command(epilog="Examples:\n\n  dumont finetune models\n\n  dumont finetune models -o json")
def models(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List the base models a fine-tune can start from (id, size, VRAM, suggested GPU)."""
    found = open_client(ctx).finetune.models()
    if output is OutputFormat.json:
        emit_json({"models": [model.raw for model in found]})
        return
    columns = ("id", "name", "parameters", "min_vram", "recommended_gpu", "category")
    print_table((model.raw for model in found), columns)


@app.command(epilog="Examples:\n\n  dumont finetune presets\n\n  dumont finetune presets -o json")
def presets(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List the named hyper-parameter presets for `create --preset` (explicit flags win)."""
    found = open_client(ctx).finetune.presets()
    if output is OutputFormat.json:
        emit_json({"presets": [preset.raw for preset in found]})
        return
    rows = (
        {
            "name": p.name,
            "description": p.description,
            "config": ", ".join(f"{k}={v}" for k, v in p.config.items()),
        }
        for p in found
    )
    print_table(rows, ("name", "description", "config"))


# -- datasets -----------------------------------------------------------------------------


@app.command(
    epilog=(
        "Examples:\n\n  dumont finetune upload train.jsonl\n\n"
        "  dumont finetune upload chats.json --format=sharegpt"
    )
)
def upload(
    ctx: typer.Context,
    file: str = typer.Argument(
        ..., metavar="FILE", help="A .jsonl (a record a line) or .json file."
    ),
    dataset_format: str | None = typer.Option(
        None,
        "--format",
        help="alpaca, sharegpt or raw: every record is checked against it (default: detected).",
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Upload a dataset; its records are checked and its server path is printed for --dataset.

    The server answers the path to give `create --dataset`, the record count, the format and
    the file's sha256. A bad record is refused naming its line and field.
    """
    where = "finetune upload"
    if dataset_format is not None:
        check_choice(dataset_format, FORMATS, "--format", where)
    choice = classify_dataset(file, where)
    if choice.local is None:
        raise DumontError(f"{where}: {file}: no such file", "name a .json or .jsonl file here")
    client = open_client(ctx)
    if output is OutputFormat.json:
        with about_dataset(choice.local, where):
            answer = client.finetune.upload(choice.local, dataset_format=dataset_format)
        emit_json(answer.raw)
        return
    console.print(upload_file(client, choice.local, dataset_format), markup=False, highlight=False)


# -- create -------------------------------------------------------------------------------


@app.command(
    epilog=(
        "Examples:\n\n"
        '  dumont finetune create demo --model="unsloth/llama-3-8b-bnb-4bit" '
        '--dataset=train.jsonl --format=alpaca --gpu="A100" --epochs=3 --lr=2e-4\n\n'
        "  dumont finetune create chat --model=unsloth/Qwen2-7B-bnb-4bit "
        "--dataset=yahma/alpaca-cleaned --preset=chat --wait\n\n"
        "  dumont finetune create demo --model=unsloth/llama-3-8b-bnb-4bit "
        "--dataset=train.jsonl --dry-run --output yaml"
    )
)
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The fine-tune's name (1–100 chars)."),
    model: str = typer.Option(..., "--model", help="Base model id (see `dumont finetune models`)."),
    dataset: str = typer.Option(
        ...,
        "--dataset",
        help="A local .json/.jsonl file (uploaded first), a path an upload answered, an "
        "http(s) URL, or a Hugging Face dataset id (owner/name).",
    ),
    dataset_source: str | None = typer.Option(
        None,
        "--dataset-source",
        help="Say what --dataset is instead of letting dumont decide: local (a file here, "
        "uploaded first), upload or existing (a path an upload answered), url, huggingface.",
    ),
    dataset_format: str | None = typer.Option(
        None, "--format", help="alpaca (default), sharegpt or raw (a `text` field)."
    ),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU type (default A100)."),
    num_gpus: int | None = typer.Option(None, "--num-gpus", help="GPUs, 1–8 (default 1)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs, 1–10 (default 1)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate, 1e-6–1e-2 (default 2e-4)."),
    lora_rank: int | None = typer.Option(None, "--lora-rank", help="LoRA r, 4–128 (default 16)."),
    lora_alpha: int | None = typer.Option(
        None, "--lora-alpha", help="LoRA alpha, 4–128 (default 16)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Per-device batch size (default 2)."
    ),
    max_seq_length: int | None = typer.Option(
        None, "--max-seq-length", help="Longest sequence in tokens, 256–65536 (default 2048)."
    ),
    grad_accum: int | None = typer.Option(
        None, "--grad-accum", help="Gradient accumulation steps, 1–128 (default 4)."
    ),
    warmup_steps: int | None = typer.Option(
        None, "--warmup-steps", help="Warm-up steps, 0–10000 (default 5)."
    ),
    weight_decay: float | None = typer.Option(
        None, "--weight-decay", help="Weight decay, 0–1 (default 0.01)."
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Start from a named preset (`dumont finetune presets`)."
    ),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="Repeat-safe create: the same key answers the first."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for it to end, showing step, loss and ETA (exit 5 failed)."
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Stream its log until it ends (implies --wait)."
    ),
    wait_timeout: float | None = WaitTimeoutOpt,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Create nothing: print the training run as a SkyPilot task (YAML by default).",
    ),
    output: Annotated[
        CreateOutput,
        typer.Option("--output", "-o", help="table, json, or yaml (with --dry-run)."),
    ] = CreateOutput.table,
) -> None:
    """Create a fine-tune: upload the dataset if it is a local file, then start training.

    Hyper-parameters are sent nested under `config` (contract §6.3); with --preset, the
    preset's values apply first and the flags given here win. Exit codes with --wait/--follow:
    0 completed, 5 failed or cancelled, 4 when --wait-timeout elapses. Ctrl-C while waiting
    leaves the fine-tune running.
    """
    where = "finetune create"
    if dataset_format is not None:
        check_choice(dataset_format, FORMATS, "--format", where)
    if output is CreateOutput.yaml and not dry_run:
        raise DumontError(f"{where}: --output yaml needs --dry-run", "use table or json")
    given = (epochs, lr, lora_rank, lora_alpha, batch_size, max_seq_length, grad_accum)
    config: dict[str, Any] = dict(
        zip(CONFIG_FLAGS, (*given, warmup_steps, weight_decay), strict=True)
    )
    check_ranges(config, num_gpus, where)
    choice = classify_dataset(dataset, where, dataset_source)
    client: DumontClient | None = None
    merged = config
    if preset is not None:  # checked here (did-you-mean); the server applies it to the run
        client = open_client(ctx)
        merged = merge_preset(client.finetune.presets(), preset, config, where)
    top = {"dataset_format": dataset_format, "gpu_type": gpu, "num_gpus": num_gpus}
    if dry_run:
        task = render_finetune_task(
            build_body(name, model, choice, top, merged),
            local_dataset=choice.path if choice.source == "upload" else None,
        )
        print_task(task, as_json=output is CreateOutput.json)
        return
    client = client or open_client(ctx)
    if choice.local is not None:
        path = upload_file(
            client, choice.local, dataset_format, where=where, announce=err_console.is_terminal
        )
        choice = DatasetChoice("upload", path)
    body = build_body(name, model, choice, {**top, "preset": preset}, config)
    try:
        job = client.finetune.create(idempotency_key=idempotency_key, **body)
    except UnprocessableError as exc:
        raise describe_rejection(exc, where) from exc
    table = output is CreateOutput.table
    if not (wait or follow):
        if table:
            console.print(f"Created fine-tune {job.id} ({job.name}): {job.status}", markup=False)
            console.print(f"Follow it: dumont finetune wait {job.id}", markup=False, style="dim")
        else:
            emit_json(job.raw)
        return
    if table:
        err_console.print(f"Created fine-tune {job.id} ({job.name}): {job.status}", markup=False)
    finish_wait(
        client,
        job.id,
        timeout=wait_timeout,
        poll=2.0,
        follow=follow,
        output=OutputFormat.table if table else OutputFormat.json,
    )


# -- reading ------------------------------------------------------------------------------


@app.command(
    name="list",
    epilog=(
        "Examples:\n\n  dumont finetune list\n\n  dumont finetune list --status=running\n\n"
        "  dumont finetune list -o json"
    ),
)
def list_(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None, "--status", help="Only fine-tunes in this status: " + ", ".join(FINETUNE_STATUSES)
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List your fine-tunes, newest first, with their progress and loss."""
    status = check_status(status, "finetune list")
    every = open_client(ctx).finetune.list_all(status=status)  # a page of 100 per request
    jobs = [job for job in every if status is None or job.status == status]
    if output is OutputFormat.json:
        emit_json({"jobs": [job.raw for job in jobs], "count": len(jobs)})
        return
    print_table((row(job) for job in jobs), LIST_COLUMNS)


@app.command(
    epilog=(
        "Examples:\n\n  dumont finetune status 8e92b55b\n\n"
        "  dumont finetune status 8e92b55b -o json"
    )
)
def status(ctx: typer.Context, job_id: str = IdArg, output: OutputOpt = OutputFormat.table) -> None:
    """Show a fine-tune: status, step/total, loss, its config and where its output is."""
    with about_finetune(job_id, "finetune status"):
        job = open_client(ctx).finetune.get(job_id)
    if output is OutputFormat.json:
        emit_json(job.raw)
    else:
        print_finetune(job)


@app.command(
    epilog=(
        "Examples:\n\n  dumont finetune logs 8e92b55b --tail=100\n\n"
        "  dumont finetune logs 8e92b55b --follow"
    )
)
def logs(
    ctx: typer.Context,
    job_id: str = IdArg,
    tail: int | None = typer.Option(None, "--tail", "-n", min=0, help="Only the last N lines."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing new lines until the fine-tune ends."
    ),
    poll: float = PollOpt,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print a fine-tune's log (training steps and losses as they come). --follow streams it."""
    client = open_client(ctx)
    if not follow:
        with about_finetune(job_id, "finetune logs"):
            answer = client.finetune.logs(job_id, tail=tail)
        if output is OutputFormat.json:
            emit_json(answer)
            return
        text = str(answer.get("logs") or "")
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
        return
    with about_finetune(job_id, "finetune logs"), goes_on_after_ctrl_c(job_id):
        result = stream_logs(
            client.finetune,
            job_id,
            log_writer(job_id, output),
            tail=tail,
            done=is_finished,
            failed=lambda job: False,
            timeout=None,
            poll=poll,
        )
    if output is OutputFormat.table:
        err_console.print(wait_text(result.state, Eta()), markup=False, highlight=False)


@app.command(
    epilog=(
        "Examples:\n\n  dumont finetune wait 8e92b55b\n\n"
        "  dumont finetune wait 8e92b55b --timeout 3600 --follow"
    )
)
def wait(
    ctx: typer.Context,
    job_id: str = IdArg,
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        help="Stop waiting after this long (30s, 15m, 2h; a bare number is seconds; exit 4). "
        "Default: no limit.",
        metavar="DURATION",
        parser=durations.seconds,
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream the log while waiting."),
    poll: float = PollOpt,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Wait until a fine-tune ends, showing step/total, loss and ETA.

    Exit codes: 0 completed; 5 failed or cancelled; 4 when --timeout elapses first. Ctrl-C
    stops the waiting only: the fine-tune goes on.
    """
    client = open_client(ctx)
    with about_finetune(job_id, "finetune wait"):
        finish_wait(client, job_id, timeout=timeout, poll=poll, follow=follow, output=output)


# -- acting -------------------------------------------------------------------------------


@app.command(epilog="Example:\n\n  dumont finetune cancel 8e92b55b")
def cancel(ctx: typer.Context, job_id: str = IdArg, output: OutputOpt = OutputFormat.table) -> None:
    """Cancel a fine-tune that has not ended: its training process stops."""
    with about_finetune(job_id, "finetune cancel"):
        answer = open_client(ctx).finetune.cancel(job_id)
    if output is OutputFormat.json:
        emit_json(answer)
    else:
        console.print(str(answer.get("message") or f"Cancelled {job_id}."), markup=False)


@app.command(epilog="Example:\n\n  dumont finetune refresh 8e92b55b")
def refresh(
    ctx: typer.Context, job_id: str = IdArg, output: OutputOpt = OutputFormat.table
) -> None:
    """Ask the executor for the fine-tune's status now, then show it."""
    with about_finetune(job_id, "finetune refresh"):
        job = open_client(ctx).finetune.refresh(job_id)
    if output is OutputFormat.json:
        emit_json(job.raw)
    else:
        print_finetune(job)


@app.command(epilog="Example:\n\n  dumont finetune delete 8e92b55b")
def delete(ctx: typer.Context, job_id: str = IdArg, output: OutputOpt = OutputFormat.table) -> None:
    """Delete a fine-tune that is not running, with its outputs."""
    with about_finetune(job_id, "finetune delete"):
        answer = open_client(ctx).finetune.delete(job_id)
    if output is OutputFormat.json:
        emit_json(answer)
    else:
        console.print(str(answer.get("message") or f"Deleted {job_id}."), markup=False)


@app.command(
    epilog=(
        "Examples:\n\n  dumont finetune download 8e92b55b\n\n"
        "  dumont finetune download 8e92b55b -o ./adapter"
    )
)
def download(
    ctx: typer.Context,
    job_id: str = IdArg,
    directory: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Where to put the files (default ./FINETUNE_ID)."
    ),
) -> None:
    """Download a fine-tune's outputs: the LoRA adapter, tokenizer and training_stats.json."""
    target = directory or Path(job_id)
    with about_finetune(job_id, "finetune download"):
        data = open_client(ctx).finetune.download_archive(job_id)
    names = unpack_outputs(data, target, job_id)
    console.print(f"Downloaded {len(names)} files to {target}", markup=False, highlight=False)


@app.command(
    epilog=(
        "Examples:\n\n  dumont finetune deploy 8e92b55b\n\n"
        '  dumont finetune deploy 8e92b55b --gpu="RTX4090" --max-price=1.5'
    )
)
def deploy(
    ctx: typer.Context,
    job_id: str = IdArg,
    gpu: str | None = typer.Option(None, "--gpu", help="GPU type to serve on (default RTX4090)."),
    max_price: float | None = typer.Option(None, "--max-price", help="$/h at most (default 2)."),
    port: int | None = typer.Option(None, "--port", help="Port to serve on, 1024–65535."),
    instance_name: str | None = typer.Option(None, "--name", help="The instance's name."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Serve a completed fine-tune: an instance with the base model and the trained adapter
    behind an OpenAI-compatible API (/v1/models, /v1/completions, /v1/chat/completions)."""
    with about_finetune(job_id, "finetune deploy"):
        answer = open_client(ctx).finetune.deploy(
            job_id, gpu_type=gpu, max_price=max_price, port=port, instance_name=instance_name
        )
    if output is OutputFormat.json:
        emit_json(answer)
        return
    console.print(
        f"Deployed {job_id} on instance {answer.get('instance_id')} "
        f"({answer.get('instance_name')}): {answer.get('endpoint_url')}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if answer.get("message"):
        console.print(str(answer["message"]), markup=False, style="dim")
