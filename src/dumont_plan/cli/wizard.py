"""`dumont wizard deploy`: race several GPU offers and keep the first machine that boots.

Both forms of the sprint work: `dumont wizard deploy "RTX 4090" speed=fast price=2.0
region=global` (the old CLI's words; the first bare word is the GPU) and `dumont wizard deploy
"RTX 4090" --speed=ultra --price=1.5 --region=EU`. The race itself is `dumont_plan.wizard`;
this module parses, draws its progress on stderr and prints the winner on stdout.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dumont_plan.cli import durations
from dumont_plan.cli.instance import access_of
from dumont_plan.cli.output import (
    OutputFormat,
    OutputOpt,
    clean_cell,
    console,
    emit_json,
    err_console,
    print_fields,
    split_key_values,
)
from dumont_plan.cli.session import open_client
from dumont_plan.errors import DumontError
from dumont_plan.wizard import RaceEvent, RaceResult, WizardRequest, run_race

app = typer.Typer(
    help=(
        "Deploy a GPU machine by racing several offers (the Deploy Wizard).\n\n"
        "It creates a batch of the cheapest matching offers at once, keeps the first that "
        "boots, deletes the others, and tries the next batch when none is ready in time."
    ),
    no_args_is_help=True,
)

WORD_KEYS = ["gpu", "speed", "price", "region"]


def _pick(name: str, flag: Any, word: Any) -> Any:
    """One setting given as a flag and/or a word; both with different values is an error."""
    if flag is not None and word is not None and str(flag) != str(word):
        raise DumontError(
            f"wizard deploy: {name} given twice ({name}={word} and --{name}={flag})",
            "give it once",
        )
    return flag if flag is not None else word


def build_request(
    words: list[str],
    *,
    gpu: str | None,
    speed: str | None,
    price: float | None,
    region: str | None,
    **fields: Any,
) -> WizardRequest:
    """The race request from the command line (defaults: any GPU, fast, $2.0/h, global)."""
    positionals, pairs = split_key_values(words, WORD_KEYS, "wizard deploy")
    if len(positionals) > 1:
        raise DumontError(
            f"wizard deploy: unexpected argument {positionals[1]!r}",
            'quote a GPU name with spaces: dumont wizard deploy "RTX 4090"',
        )
    word_gpu = pairs.get("gpu", positionals[0] if positionals else None)
    if positionals and "gpu" in pairs and str(pairs["gpu"]) != positionals[0]:
        raise DumontError(
            f"wizard deploy: GPU given twice ({positionals[0]!r} and gpu={pairs['gpu']})",
            "give it once",
        )
    word_price = pairs.get("price")
    if word_price is not None and (
        isinstance(word_price, bool) or not isinstance(word_price, int | float)
    ):
        raise DumontError(
            f"wizard deploy: price {word_price!r} is not a number", "give $/h, e.g. price=2.0"
        )
    chosen_gpu = _pick("gpu", gpu, word_gpu)
    chosen_speed = _pick("speed", speed, pairs.get("speed"))
    chosen_price = _pick("price", price, word_price)
    chosen_region = _pick("region", region, pairs.get("region"))
    request = WizardRequest(
        gpu_name=None if chosen_gpu is None else str(chosen_gpu),
        speed_tier=str(chosen_speed or "fast"),
        max_price=float(chosen_price) if chosen_price is not None else 2.0,
        region=str(chosen_region or "global"),
        **{k: v for k, v in fields.items() if v is not None},
    )
    try:
        return request.validated()
    except DumontError as exc:
        raise DumontError(f"wizard deploy: {exc.message}", exc.hint) from exc


class RaceProgress:
    """Draws the race on stderr: a live table on a terminal, plain lines otherwise."""

    def __init__(self, out: Console, *, live: bool | None = None) -> None:
        self.out = out
        self.live_mode = out.is_terminal if live is None else live
        self.rows: dict[int, dict[str, Any]] = {}  # offer id -> row
        self.header = "Searching offers…"
        self.footer = ""
        self.undeleted: list[int] = []  # instances the race could not delete
        self._live: Live | None = None

    def __enter__(self) -> RaceProgress:
        if self.live_mode:
            self._live = Live(self.render(), console=self.out, refresh_per_second=8)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.stop()
            self._live = None

    def render(self) -> Group:
        table = Table(show_edge=False, header_style="bold", box=None)
        for column in ("BATCH", "OFFER", "GPU", "$/H", "LOCATION", "INSTANCE", "STATE"):
            table.add_column(column)
        for row in self.rows.values():
            cells = (row["batch"], row["offer"], row["gpu"], row["price"], row["location"])
            table.add_row(
                *(clean_cell(cell) for cell in cells),
                "" if row["instance"] is None else clean_cell(row["instance"]),
                clean_cell(row["state"]),
            )
        parts: list[Any] = [Text(self.header)]
        if self.rows:
            parts.append(table)
        if self.footer:
            parts.append(Text(self.footer))
        return Group(*parts)

    def line(self, text: str) -> None:
        if self._live is None:
            self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def __call__(self, event: RaceEvent) -> None:
        offer = event.offer
        row = self.rows.get(offer.id) if offer is not None else None
        at = f"[{event.elapsed:5.1f}s]"
        kind = event.kind
        if kind == "search":
            self.header = f"Searching offers: {event.message}"
            self.line(f"{at} searching offers: {event.message}")
        elif kind == "offers":
            self.header = f"Found {event.message}"
            self.line(f"{at} found {event.message}")
        elif kind == "batch":
            self.header = f"Batch {event.batch}: racing offers {event.message}"
            self.line(f"{at} batch {event.batch}: racing offers {event.message}")
        elif kind == "create" and offer is not None:
            self.rows[offer.id] = {
                "batch": event.batch,
                "offer": offer.id,
                "gpu": offer.gpu_name or "-",
                "price": f"${offer.dph_total or 0:.3f}",
                "location": offer.geolocation or "-",
                "instance": None,
                "state": "creating",
            }
        elif kind == "created" and row is not None:
            row.update(instance=event.instance_id, state="booting")
            self.line(
                f"{at} booting   instance {event.instance_id}: {row['gpu']} {row['price']}/h "
                f"{row['location']} (offer {row['offer']})"
            )
        elif kind == "create_failed" and row is not None:
            row["state"] = "refused"
            self.line(f"{at} refused   offer {row['offer']}: {event.message}")
        elif kind == "status" and row is not None:
            row["state"] = "booting" if event.status == "loading" else str(event.status)
        elif kind == "boot_failed" and row is not None:
            row["state"] = "failed"
            self.line(f"{at} failed    instance {event.instance_id}: {event.message}")
        elif kind == "winner" and row is not None:
            row["state"] = "WINNER"
            self.line(f"{at} winner    instance {event.instance_id}: {row['gpu']} {row['price']}/h")
        elif kind == "cancelled" and row is not None:
            row["state"] = "cancelled"
            self.line(f"{at} cancelled instance {event.instance_id} ({event.message})")
        elif kind == "batch_timeout":
            self.line(f"{at} batch {event.batch}: {event.message}; deleting it")
        elif kind == "cleanup":
            self.footer = "Stopping: deleting every machine the race created…"
            self.line(f"{at} stopping ({event.message}): deleting every machine created")
        elif kind == "cleanup_failed":
            if event.instance_id is not None:
                self.undeleted.append(event.instance_id)
            warning = (
                f"Warning: {event.message}; delete it with "
                f"`dumont instance delete {event.instance_id}`"
                if event.instance_id is not None
                else f"Warning: {event.message}"
            )
            self.footer = warning
            if self._live is None:
                self.line(warning)
            else:
                self._live.console.print(warning, markup=False)
        if self._live is not None:
            self._live.update(self.render())


def print_winner(result: RaceResult) -> None:
    winner = result.winner
    offer = result.offer
    price = winner.dph_total if "dph_total" in winner.raw else offer.dph_total
    fields = {
        "id": winner.id,
        "gpu": winner.gpu_name or offer.gpu_name,
        "price": f"${price:.3f}/h" if price is not None else None,
        "location": winner.geolocation or offer.geolocation,
        "network": f"{offer.inet_down or 0:,.0f} Mbps down",
        "access": access_of(winner),
        "status": "running",
        "ready_in": f"{result.timings.get('ready', 0):.1f} s "
        f"(batch {result.batch}, {len(result.losers)} cancelled)",
    }
    print_fields(fields)


@app.command(
    epilog=(
        "Speed tiers (download): slow 100-500 Mbps, medium 500-2000, fast 2000-4000, "
        "ultra 4000+. Regions: global, US (with Canada), EU, ASIA.\n\n"
        "Examples:\n\n"
        "  dumont wizard deploy\n\n"
        '  dumont wizard deploy "RTX 4090" speed=fast price=2.0 region=global\n\n'
        '  dumont wizard deploy "RTX 4090" --speed=ultra --price=1.5 --region=EU\n\n'
        "  dumont wizard deploy A100 --batch-timeout=120 --output json"
    )
)
def deploy(
    ctx: typer.Context,
    words: list[str] | None = typer.Argument(
        None,
        metavar="[GPU] [speed=TIER] [price=$/H] [region=REGION]",
        help="GPU name (any when omitted), then optional old-style key=value words.",
        show_default=False,
    ),
    gpu: str | None = typer.Option(None, "--gpu", help='GPU model, e.g. "RTX 4090" (default any).'),
    speed: str | None = typer.Option(
        None, "--speed", help="Network tier: slow, medium, fast (default) or ultra."
    ),
    price: float | None = typer.Option(
        None, "--price", "--max-price", help="Highest $/h accepted (default 2.0)."
    ),
    region: str | None = typer.Option(None, "--region", help="global (default), US, EU or ASIA."),
    num_gpus: int | None = typer.Option(None, "--num-gpus", help="GPUs per machine (1-8)."),
    disk: float | None = typer.Option(None, "--disk", help="Disk in GB (default 50)."),
    image: str | None = typer.Option(None, "--image", help="Container image."),
    label: str | None = typer.Option(None, "--label", help='Label (default "dumont:wizard").'),
    spot: bool = typer.Option(False, "--spot", help="Race interruptible (spot) offers."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Offers raced at once (default 5)."
    ),
    max_batches: int | None = typer.Option(
        None, "--max-batches", help="Batches tried before giving up (default 3)."
    ),
    batch_timeout: float | None = typer.Option(
        None,
        "--batch-timeout",
        help="How long a batch gets to boot one machine (30s, 2m; a bare number is seconds; "
        "default 60s).",
        metavar="DURATION",
        parser=durations.seconds,
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Race the cheapest matching offers and keep the first machine that boots."""
    request = build_request(
        words or [],
        gpu=gpu,
        speed=speed,
        price=price,
        region=region,
        num_gpus=num_gpus,
        disk_space=disk,
        image=image,
        label=label,
        use_spot=spot or None,
        batch_size=batch_size,
        max_batches=max_batches,
        batch_timeout=batch_timeout,
    )
    client = open_client(ctx)
    progress = RaceProgress(err_console)
    try:
        with progress:
            result = run_race(client, request, on_event=progress)
    except KeyboardInterrupt:
        left = progress.undeleted
        err_console.print(
            "Interrupted: every machine the race created was deleted."
            if not left
            else f"Interrupted: delete instances {', '.join(map(str, left))} by hand "
            "(`dumont instance delete ID`).",
            markup=False,
        )
        raise
    for instance_id in result.undeleted:
        err_console.print(
            f"Warning: instance {instance_id} of the race could not be deleted; delete it "
            f"with `dumont instance delete {instance_id}`",
            markup=False,
        )
    if output is OutputFormat.json:
        emit_json(result.to_dict())
        return
    console.print(f"Deployed instance {result.instance_id}.", markup=False)
    print_winner(result)
