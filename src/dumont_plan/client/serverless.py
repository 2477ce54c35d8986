"""Resource group `serverless` of the Dumont API v1 (filled in by its feature)."""

from __future__ import annotations

from dumont_plan.client.base import Transport


class ServerlessAPI:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
