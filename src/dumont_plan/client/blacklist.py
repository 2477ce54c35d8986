"""`/api/v1/machines/history/blacklist`: machines the wizard and jobs must not use (§9.1-9.2).

Entries are `manual` (added here), `auto` (the server's rules after repeated failures) or
`temporary`; an entry with `expires_at` in the past is no longer active.
"""

from __future__ import annotations

from typing import Any

from dumont_plan.client.base import Transport
from dumont_plan.client.history import PREFIX, machine_path
from dumont_plan.wire_models import BlacklistCheck, BlacklistEntry

COLLECTION = f"{PREFIX}/blacklist"


class BlacklistAPI:
    """Manual blacklist CRUD and the check used before renting a machine."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(
        self,
        provider: str | None = None,
        blacklist_type: str | None = None,
        include_expired: bool | None = None,
    ) -> list[BlacklistEntry]:
        """`GET /blacklist` -> the entries (active ones unless `include_expired`)."""
        params: dict[str, Any] = {
            "provider": provider,
            "blacklist_type": blacklist_type,
            "include_expired": None if include_expired is None else str(include_expired).lower(),
        }
        result = self._t.request("GET", COLLECTION, params=params)
        return BlacklistEntry.list_from_wire(result, f"GET {COLLECTION}")

    def add(
        self,
        provider: str,
        machine_id: str | int,
        reason: str,
        duration_hours: int | None = None,
        gpu_name: str | None = None,
    ) -> BlacklistEntry:
        """`POST /blacklist` -> the entry (an upsert on provider + machine_id, so safe to retry).

        `duration_hours=None` blacklists for good.
        """
        body = {
            "provider": provider,
            "machine_id": str(machine_id),
            "reason": reason,
            "duration_hours": duration_hours,
            "gpu_name": gpu_name,
        }
        result = self._t.request(
            "POST",
            COLLECTION,
            json={k: v for k, v in body.items() if v is not None},
            idempotent=True,
        )
        return BlacklistEntry.from_wire(result, f"POST {COLLECTION}")

    def remove(self, provider: str, machine_id: str | int) -> dict[str, Any]:
        """`DELETE /blacklist/{provider}/{machine_id}` (404 `Machine not in blacklist`)."""
        result: dict[str, Any] = self._t.request(
            "DELETE", f"{COLLECTION}/{machine_path(provider, machine_id)}"
        )
        return result

    def check(self, provider: str, machine_id: str | int) -> BlacklistCheck:
        """`GET /blacklist/check/{provider}/{machine_id}` -> `is_blacklisted` and the entry."""
        path = f"{COLLECTION}/check/{machine_path(provider, machine_id)}"
        where = f"GET {path}"
        answer = self._t.request("GET", path)
        check = BlacklistCheck.from_wire(answer, where)
        info = answer.get("info")
        if isinstance(info, dict):  # the entry with its own raw object
            check = BlacklistCheck(
                is_blacklisted=check.is_blacklisted, info=BlacklistEntry.from_wire(info, where)
            )
            check._raw = answer
        return check
