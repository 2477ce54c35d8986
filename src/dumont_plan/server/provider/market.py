"""The simulated GPU market: a deterministic, seeded catalogue of machines with moving prices.

Everything that needs a machine or a price draws on it: offers, instance creation, the wizard
race (boot time, failure probability), job pricing, spot bids and interruptions.

Prices move smoothly and deterministically with time: `price(t) = base * (1 + 0.1 * sin(...))`,
so two calls at the same `now` agree and a test can pin `now`. A spot minimum bid is always
well below the on-demand price of the same machine (at most 0.66x).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from functools import lru_cache

# name -> (VRAM GB, on-demand $/h per GPU, relative weight in the catalogue)
GPU_MODELS: dict[str, tuple[float, float, int]] = {
    "RTX 3060": (12, 0.08, 4),
    "RTX 3080": (10, 0.12, 5),
    "RTX 3090": (24, 0.20, 9),
    "RTX 4070": (12, 0.14, 4),
    "RTX 4080": (16, 0.25, 5),
    "RTX 4090": (24, 0.35, 12),
    "RTX 5090": (32, 0.65, 4),
    "RTX A4000": (16, 0.17, 3),
    "RTX A5000": (24, 0.24, 3),
    "RTX A6000": (48, 0.45, 4),
    "L40S": (48, 0.85, 4),
    "A100": (40, 0.64, 5),
    "A100 80GB": (80, 0.90, 4),
    "H100": (80, 1.20, 4),
}

# (geolocation as the provider writes it, wizard region)
LOCATIONS: list[tuple[str, str]] = [
    ("California, US", "US"),
    ("Texas, US", "US"),
    ("Virginia, US", "US"),
    ("Oregon, US", "US"),
    ("Quebec, CA", "US"),
    ("Germany, DE", "EU"),
    ("France, FR", "EU"),
    ("Netherlands, NL", "EU"),
    ("Poland, PL", "EU"),
    ("Sweden, SE", "EU"),
    ("Japan, JP", "ASIA"),
    ("Singapore, SG", "ASIA"),
    ("South Korea, KR", "ASIA"),
    ("India, IN", "ASIA"),
    ("Brazil, BR", "SA"),
    ("Australia, AU", "OC"),
]

PRICE_PERIOD_SECONDS = 3600.0
PRICE_SWING = 0.10


@dataclass(frozen=True)
class Machine:
    """One rentable host of the simulated market."""

    offer_id: int
    machine_id: str
    gpu_name: str
    num_gpus: int
    gpu_ram: float
    cpu_cores: int
    cpu_ram: float
    disk_space: float
    inet_down: float
    inet_up: float
    geolocation: str
    region: str
    reliability: float
    verified: bool
    static_ip: bool
    cuda_version: str
    base_dph: float  # on-demand $/h for the whole machine, before time movement
    spot_factor: float  # min bid = on-demand x spot_factor
    boot_seconds: float  # time from create to `running`
    failure_probability: float  # chance that a boot fails
    phase: float  # where in the price cycle this machine starts

    def dph(self, now: float | None = None) -> float:
        """On-demand $/h at time `now`."""
        t = time.time() if now is None else now
        swing = 1 + PRICE_SWING * math.sin(2 * math.pi * t / PRICE_PERIOD_SECONDS + self.phase)
        return round(self.base_dph * swing, 4)

    def min_bid(self, now: float | None = None) -> float:
        """Spot (interruptible) minimum bid $/h at time `now`."""
        return round(self.dph(now) * self.spot_factor, 4)

    def price(self, spot: bool, now: float | None = None) -> float:
        return self.min_bid(now) if spot else self.dph(now)

    def boot_fails(self, attempt_seed: int) -> bool:
        """Whether boot attempt number `attempt_seed` on this machine fails (deterministic)."""
        roll = random.Random(f"{self.machine_id}:{attempt_seed}").random()
        return roll < self.failure_probability


class Market:
    """A seeded catalogue; `Market(seed, size)` is the same catalogue on every machine."""

    def __init__(self, seed: int = 7, size: int = 200) -> None:
        self.seed = seed
        rng = random.Random(seed)
        names = list(GPU_MODELS)
        weights = [GPU_MODELS[n][2] for n in names]
        machines = []
        for index in range(size):
            gpu = rng.choices(names, weights)[0]
            num = rng.choices([1, 2, 4, 8], [70, 15, 10, 5])[0]
            geo, region = rng.choice(LOCATIONS)
            # Network speeds spread across the wizard tiers (slow/medium/fast/ultra).
            inet_down = round(
                rng.choice([150, 300, 800, 1500, 2500, 3500, 5000, 8000]) * rng.uniform(0.9, 1.1), 1
            )
            flaky = rng.random() < 0.12
            machines.append(_machine(rng, index, gpu, num, geo, region, inet_down, flaky))
        # The stock every quick start and example asks for (one RTX 4090, fast network) is
        # deeper than a random draw makes it, so running several of them at once leaves
        # offers; appended, so the random catalogue above is the same as ever.
        stock = random.Random(seed * 7919 + 1)
        for extra in range(EXAMPLE_STOCK):
            geo, region = STOCK_LOCATIONS[extra % len(STOCK_LOCATIONS)]
            inet_down = round(stock.uniform(2200, 3800), 1)
            machines.append(
                _machine(stock, size + extra, "RTX 4090", 1, geo, region, inet_down, False)
            )
        # Offer ids must be unique; regenerate collisions deterministically.
        seen: set[int] = set()
        unique = []
        for m in machines:
            offer_id = m.offer_id
            while offer_id in seen:
                offer_id += 1
            seen.add(offer_id)
            unique.append(m if offer_id == m.offer_id else _with_offer(m, offer_id))
        self.machines: list[Machine] = unique
        self._by_offer = {m.offer_id: m for m in unique}

    def by_offer(self, offer_id: int) -> Machine | None:
        return self._by_offer.get(offer_id)

    def by_machine_id(self, machine_id: str) -> list[Machine]:
        return [m for m in self.machines if m.machine_id == machine_id]

    def cheapest(
        self, gpu_name: str | None, *, spot: bool, num_gpus: int = 1, now: float | None = None
    ) -> Machine | None:
        """The cheapest machine with `gpu_name` (any GPU when None) and `num_gpus` GPUs."""
        candidates = [
            m
            for m in self.machines
            if (gpu_name is None or m.gpu_name.lower() == gpu_name.lower())
            and m.num_gpus == num_gpus
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda m: (m.price(spot, now), m.offer_id))


EXAMPLE_STOCK = 12  # extra reliable 1x RTX 4090 machines on a fast network
STOCK_LOCATIONS = [loc for loc in LOCATIONS if loc[1] in ("US", "EU", "ASIA")]


def _machine(
    rng: random.Random,
    index: int,
    gpu: str,
    num: int,
    geo: str,
    region: str,
    inet_down: float,
    flaky: bool,
) -> Machine:
    """The rest of a machine, drawn from `rng` in a fixed order (the catalogue is seeded)."""
    vram, per_gpu, _ = GPU_MODELS[gpu]
    return Machine(
        offer_id=100000 + index * 7 + rng.randrange(7),
        machine_id=str(10000 + rng.randrange(80000)),
        gpu_name=gpu,
        num_gpus=num,
        gpu_ram=float(vram),
        cpu_cores=int(rng.choice([8, 16, 24, 32, 64]) * max(1, num // 2)),
        cpu_ram=float(rng.choice([32, 64, 128, 256]) * max(1, num // 2)),
        disk_space=float(rng.choice([100, 200, 500, 1000, 2000])),
        inet_down=inet_down,
        inet_up=round(inet_down * rng.uniform(0.3, 1.0), 1),
        geolocation=geo,
        region=region,
        reliability=round(rng.uniform(0.6, 0.95) if flaky else rng.uniform(0.95, 0.999), 4),
        verified=rng.random() < 0.8,
        static_ip=rng.random() < 0.6,
        cuda_version=rng.choice(["12.1", "12.2", "12.4", "12.8"]),
        base_dph=round(per_gpu * num * rng.uniform(0.8, 1.3), 4),
        spot_factor=round(rng.uniform(0.35, 0.6), 3),
        boot_seconds=round(rng.uniform(0.3, 2.5), 2),
        failure_probability=round(rng.uniform(0.4, 0.9) if flaky else 0.0, 3),
        phase=rng.uniform(0, 2 * math.pi),
    )


def _with_offer(machine: Machine, offer_id: int) -> Machine:
    fields = dict(machine.__dict__)
    fields["offer_id"] = offer_id
    return Machine(**fields)


@lru_cache(maxsize=8)
def get_market(seed: int = 7, size: int = 200) -> Market:
    """The shared catalogue for a seed and size (built once per process)."""
    return Market(seed, size)


def known_gpu(name: str) -> bool:
    """Whether `name` is a GPU model of the market (names as users type them)."""
    return name.lower() in {n.lower() for n in GPU_MODELS}


def canonical_gpu(name: str) -> str:
    """The market's spelling of a GPU name typed in any case (unknown names pass through)."""
    for known in GPU_MODELS:
        if known.lower() == name.lower():
            return known
    return name


def job_hourly_price(
    gpu_type: str,
    use_spot: bool,
    now: float | None = None,
    *,
    num_gpus: int = 1,
    seed: int = 7,
    size: int = 200,
) -> float:
    """$/h a job pays: the cheapest matching machine, spot min bid or on-demand.

    With no machine of that exact GPU count, the per-GPU list price of the model is scaled.
    """
    market = get_market(seed, size)
    machine = market.cheapest(gpu_type, spot=use_spot, num_gpus=num_gpus, now=now)
    if machine is not None:
        return machine.price(use_spot, now)
    model = GPU_MODELS.get(canonical_gpu(gpu_type))
    per_gpu = model[1] if model else 0.30
    factor = 0.45 if use_spot else 1.0
    return round(per_gpu * num_gpus * factor, 4)
