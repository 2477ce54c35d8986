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
    # Tokens live 45 days on the real platform; tests shorten this to test expiry.
    token_ttl_seconds: int = 45 * 24 * 3600
    # Simulated GPU market.
    market_seed: int = 7
    market_size: int = 200
    # Test hooks: enables /api/v1/_local/* admin routes (fault injection, clock, interruptions).
    enable_test_hooks: bool = False
    # Fault injection for robustness tests: fraction of /api requests answered with a fault.
    fault_rate: float = 0.0
    fault_seed: int = 1
    # How often the reconciler loop ticks, in seconds.
    reconcile_interval: float = 0.5
    # A job's log keeps its head and its last part past this many bytes (provider/joblog.py).
    log_cap_bytes: int = 32 * 1024 * 1024
    extra: dict[str, str] = field(default_factory=dict)

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
        ttl = os.environ.get("DUMONT_SERVER_TOKEN_TTL")
        if ttl:
            settings.token_ttl_seconds = int(ttl)
        for key, value in overrides.items():
            if value is not None:
                setattr(settings, key, value)
        return settings
