"""`/api/v1/machines/history`: every machine attempt and what it says about a host (§9.1).

On the local control plane the history is per user (the real platform shares it globally).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dumont_plan.client.base import Transport
from dumont_plan.wire_models import Attempt, HistorySummary, MachineStats

PREFIX = "/api/v1/machines/history"


def machine_path(provider: str, machine_id: str | int) -> str:
    """`{provider}/{machine_id}`, each part escaped for a path segment."""
    return f"{quote(str(provider), safe='')}/{quote(str(machine_id), safe='')}"


class HistoryAPI:
    """Read-only views of the machine history, as read models (`.raw`: the JSON)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def summary(self, provider: str | None = None, hours: int | None = None) -> HistorySummary:
        """`GET /summary` -> totals, success rate, failure stages of the last `hours` (24)."""
        path = f"{PREFIX}/summary"
        result = self._t.request("GET", path, params={"provider": provider, "hours": hours})
        return HistorySummary.from_wire(result, f"GET {path}")

    def attempts(
        self,
        provider: str | None = None,
        machine_id: str | None = None,
        success_only: bool | None = None,
        hours: int | None = None,
        limit: int | None = None,
    ) -> list[Attempt]:
        """`GET /attempts` -> the attempts of the last `hours` (72), newest first.

        `success_only=True` keeps successes, `False` keeps failures, None keeps both.
        """
        params: dict[str, Any] = {
            "provider": provider,
            "machine_id": machine_id,
            "success_only": None if success_only is None else str(success_only).lower(),
            "hours": hours,
            "limit": limit,
        }
        path = f"{PREFIX}/attempts"
        return Attempt.list_from_wire(self._t.request("GET", path, params=params), f"GET {path}")

    def stats(self, provider: str, machine_id: str | int) -> MachineStats:
        """`GET /stats/{provider}/{machine_id}` (404 `Machine stats not found`)."""
        path = f"{PREFIX}/stats/{machine_path(provider, machine_id)}"
        return MachineStats.from_wire(self._t.request("GET", path), f"GET {path}")

    def problematic(
        self,
        provider: str | None = None,
        min_attempts: int | None = None,
        max_success_rate: float | None = None,
        limit: int | None = None,
    ) -> list[MachineStats]:
        """`GET /problematic` -> machines with `min_attempts` (3) or more and a low success rate."""
        params = {
            "provider": provider,
            "min_attempts": min_attempts,
            "max_success_rate": max_success_rate,
            "limit": limit,
        }
        path = f"{PREFIX}/problematic"
        return MachineStats.list_from_wire(
            self._t.request("GET", path, params=params), f"GET {path}"
        )

    def reliable(
        self,
        provider: str | None = None,
        min_attempts: int | None = None,
        min_success_rate: float | None = None,
        limit: int | None = None,
    ) -> list[MachineStats]:
        """`GET /reliable` -> machines with at least `min_attempts` (5) and a high success rate."""
        params = {
            "provider": provider,
            "min_attempts": min_attempts,
            "min_success_rate": min_success_rate,
            "limit": limit,
        }
        path = f"{PREFIX}/reliable"
        return MachineStats.list_from_wire(
            self._t.request("GET", path, params=params), f"GET {path}"
        )
