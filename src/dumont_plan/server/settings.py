"""Settings of one local control plane process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    # Token lifetime (the real platform's is 45 days); DUMONT_SERVER_TOKEN_TTL (seconds).
    token_ttl_seconds: int = 7 * 24 * 3600
    # Login throttling: this many failed logins for one account, or from one client address,
    # within the window answer 429 + Retry-After until the oldest leaves it (0: no limit).
    login_max_failures: int = 10
    login_max_failures_per_client: int = 50
    login_window_seconds: float = 900.0
    # Password hashing (scrypt) runs on this many threads; past `hash_max_waiting` calls
    # waiting for one, a login or registration answers 503 + Retry-After at once.
    hash_workers: int = field(default_factory=lambda: max(1, min(4, (os.cpu_count() or 2) // 2)))
    hash_max_waiting: int = 64
    # Simulated GPU market.
    market_seed: int = 7
    market_size: int = 200
    # Test hooks: enables /api/v1/_local/* admin routes (fault injection, clock, interruptions).
    enable_test_hooks: bool = False
    # Test hooks only: the policy clock (`AppState.clock`) starts this many seconds ahead, so a
    # test can restart the control plane "later" (a scheduled job due while it was down).
    clock_offset: float = 0.0
    # Fault injection for robustness tests: fraction of /api requests answered with a fault.
    fault_rate: float = 0.0
    fault_seed: int = 1
    # How often the reconciler loop ticks, in seconds.
    reconcile_interval: float = 0.5
    # Per user: jobs running at once (more wait in `pending`, started in order as others
    # finish) and instances (more are refused with a 429).
    max_running_jobs: int = 8
    max_instances: int = 16
    # Bytes of a request body (413 beyond).
    max_body_bytes: int = 1024 * 1024
    # Bytes of a state document stored through `/state/{project}` (a ledger of thousands of
    # resources is several MB; 413 beyond).
    max_state_bytes: int = 64 * 1024 * 1024
    # A job's log keeps its head and its last part past this many bytes (provider/joblog.py).
    log_cap_bytes: int = 32 * 1024 * 1024
    # Whether anyone may register (a multi-user server). The embedded server is single-user:
    # `python -m dumont_plan.server` sets this from --multi-user; in-process apps keep True.
    multi_user: bool = True
    # Workload isolation: "auto" (bubblewrap when it works here) or "none".
    isolation: str = "auto"
    # Host names a request's Host header may carry besides the bound address and loopback
    # names; None: no check (in-process apps only; the served app always checks).
    trusted_hosts: list[str] | None = None
    # Host directories every workload may read (read-only, at the same path).
    shared_dirs: list[Path] = field(default_factory=list)
    # Per-workload limits (0: not limited; memory 0: the machine's RAM).
    workload_processes: int = 1024
    workload_open_files: int = 4096
    workload_memory_bytes: int = 0
    # Bytes in one GB of `disk_size` (a workspace's total and each file's size); tests make
    # it small so that the minimum of 10 GB means a few MB.
    disk_gb_bytes: int = 1024**3
    # Seconds between syncs of a spot deployment's workspace when its deploy names none.
    spot_sync_interval: float = 30.0
    # Fine-tunes: the Hugging Face home whose model cache (`hub/`) trainers read, read-only
    # and offline (DUMONT_SERVER_HF_HOME, else HF_HOME, else ~/.cache/huggingface); the largest
    # dataset upload in bytes; fine-tunes of one user training at once (more wait `pending`).
    hf_home: Path = field(default_factory=lambda: default_hf_home())
    dataset_max_bytes: int = 512 * 1024 * 1024
    max_running_finetunes: int = 2
    # "local" (this control plane's additive extensions) or "real-platform": behave as the real
    # Dumont server was observed to (no Idempotency-Key, `offset` ignored on GET /jobs with
    # `total` = the page's size, no capabilities in /health, a 500's exception text in
    # `details`), so that the client's tests run against both (DUMONT_SERVER_PROFILE).
    profile: str = "local"
    # The simulated GPU provider, as the real server sees it: "ok", "no-key" (no provider key
    # configured: offers 503, instances and jobs 400, with the real bodies) or "unreachable"
    # (instances and offers 503 "provider unreachable"); DUMONT_SERVER_PROVIDER.
    provider: str = "ok"
    # What runs jobs: "local" (sandboxes on this machine) or "skypilot" (SkyPilot managed
    # jobs on the clouds SkyPilot is set up for); DUMONT_SERVER_EXECUTOR, --executor.
    executor: str = "local"
    # Where SkyPilot managed jobs keep their outputs for the control plane to copy back:
    # s3://bucket/prefix, gs://bucket/prefix or file:///dir (`sky_outputs`;
    # DUMONT_SERVER_SKY_OUTPUTS). Empty: outputs stay on the cloud machine.
    sky_outputs: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def real_platform(self) -> bool:
        return self.profile == REAL_PLATFORM

    @property
    def db_path(self) -> Path:
        return self.data_dir / "dumont.sqlite3"

    @property
    def sandboxes_dir(self) -> Path:
        return self.data_dir / "sandboxes"

    @classmethod
    def from_env(cls, data_dir: Path, **overrides: object) -> ServerSettings:
        settings = cls(data_dir=data_dir)
        if os.environ.get("DUMONT_SERVER_TEST_HOOKS") == "1":
            settings.enable_test_hooks = True
        rate = os.environ.get("DUMONT_SERVER_FAULT_RATE")
        if rate:
            settings.fault_rate = float(rate)
        for name, attribute, kind in ENV_SETTINGS:
            raw = os.environ.get(name)
            if raw:
                setattr(settings, attribute, kind(raw))
        for name, attribute, allowed in CHOICE_SETTINGS:
            raw = os.environ.get(name)
            if raw:
                if raw not in allowed:
                    raise ValueError(f"{name}={raw!r}: use one of {', '.join(allowed)}")
                setattr(settings, attribute, raw)
        executor = os.environ.get("DUMONT_SERVER_EXECUTOR")
        if executor:
            settings.executor = executor
        settings.sky_outputs = os.environ.get("DUMONT_SERVER_SKY_OUTPUTS", settings.sky_outputs)
        hf_home = os.environ.get("DUMONT_SERVER_HF_HOME")
        if hf_home:
            settings.hf_home = Path(hf_home)
        shared = os.environ.get("DUMONT_SERVER_SHARED_DIRS")
        if shared:
            settings.shared_dirs = [Path(p) for p in shared.split(os.pathsep) if p]
        for key, value in overrides.items():
            if value is not None:
                setattr(settings, key, value)
        return settings


def default_hf_home() -> Path:
    """Where Hugging Face keeps its files for this process: HF_HOME, else ~/.cache/huggingface."""
    raw = os.environ.get("HF_HOME")
    return Path(raw) if raw else Path.home() / ".cache" / "huggingface"


REAL_PLATFORM = "real-platform"
PROFILES = ("local", REAL_PLATFORM)
PROVIDER_STATES = ("ok", "no-key", "unreachable")
# Environment variable -> setting it overrides, and the values it may take.
CHOICE_SETTINGS: list[tuple[str, str, tuple[str, ...]]] = [
    ("DUMONT_SERVER_PROFILE", "profile", PROFILES),
    ("DUMONT_SERVER_PROVIDER", "provider", PROVIDER_STATES),
]

# Environment variable -> setting it overrides, and how to read it.
ENV_SETTINGS: list[tuple[str, str, type[int] | type[float]]] = [
    ("DUMONT_SERVER_TOKEN_TTL", "token_ttl_seconds", int),
    ("DUMONT_SERVER_LOGIN_MAX_FAILURES", "login_max_failures", int),
    ("DUMONT_SERVER_LOGIN_MAX_FAILURES_PER_CLIENT", "login_max_failures_per_client", int),
    ("DUMONT_SERVER_LOGIN_WINDOW", "login_window_seconds", float),
    ("DUMONT_SERVER_HASH_WORKERS", "hash_workers", int),
    ("DUMONT_SERVER_WORKLOAD_PROCESSES", "workload_processes", int),
    ("DUMONT_SERVER_DISK_GB_BYTES", "disk_gb_bytes", int),
    ("DUMONT_SERVER_SPOT_SYNC_INTERVAL", "spot_sync_interval", float),
    ("DUMONT_SERVER_DATASET_MAX_BYTES", "dataset_max_bytes", int),
    ("DUMONT_SERVER_MAX_RUNNING_FINETUNES", "max_running_finetunes", int),
    ("DUMONT_SERVER_CLOCK_OFFSET", "clock_offset", float),
]
