"""Read models of the spot objects (contract §8): templates, deployments, the market.

Beside the other read models (`dumont_plan.wire_models`), as they are: a leaf the client, the
kinds' pure parts and the planner read.
"""

from __future__ import annotations

from pydantic import Field

from dumont_plan.wire_models import Status, WireModel

SPOT_FAILED_STATES = frozenset({"failed"})


class SpotTemplate(WireModel):
    """A spot template: a snapshot of an instance's workspace to restore on spot machines.

    `POST /spot/template/{id}` answers only part of it (no `instance_id`, `created_at`)."""

    template_id: str
    instance_id: int | str | None = None
    region: str | None = None
    gpu_name: str | None = None
    created_at: str | None = None
    workspace_path: str | None = None
    size_bytes: int | None = None
    snapshot_path: str | None = None


class SpotInstance(WireModel):
    """A spot deployment's status (`SpotStatus`, §8.1): one instance bid on the spot market.

    `state`: active, interrupted, failover, failed or stopped (§8.2). After a failover the
    instance id changes; `deployment_id` (an addition of the local control plane) does not.
    `POST /spot/deploy` answers the deploy result, read with the same model."""

    instance_id: int
    deployment_id: str | None = None
    state: Status = "unknown"
    template_id: str | None = None
    region: str | None = None
    gpu_name: str | None = None
    gpu_preference: str | None = None
    bid_price: float | None = None
    max_price: float | None = None
    auto_failover: bool | None = None
    failover_count: int = 0
    last_failover_at: str | None = None
    ssh_host: str | None = None
    ssh_port: int | str | None = None
    snapshot_restored: bool | None = None
    created_at: str | None = None
    instance_status: str | None = None  # local control plane: its machine's actual status

    @property
    def is_ready(self) -> bool:
        """Active on a machine that runs (a server that does not say is taken at its word)."""
        return self.state == "active" and self.instance_status in (None, "running")

    @property
    def identity(self) -> str:
        """What names the deployment across failovers: its id, else (an older server) the
        instance id."""
        return self.deployment_id or str(self.instance_id)

    @property
    def is_failed(self) -> bool:
        """Failover gave up: no machine runs it."""
        return self.state in SPOT_FAILED_STATES


class SpotFailover(WireModel):
    """`POST /spot/failover/{id}`: the local control plane also says the new instance id."""

    status: str | None = None
    instance_id: int | str | None = None
    new_instance_id: int | str | None = None
    old_instance_id: int | str | None = None


class SpotOffer(WireModel):
    """One of `GET /spot/pricing`'s `top_offers`."""

    gpu_name: str | None = None
    min_bid: float | None = None
    region: str | None = None
    inet_down: float | None = None
    machine_id: str | None = None


class SpotPricing(WireModel):
    """`GET /spot/pricing` (§8.4): the live spot market of a region (and GPU)."""

    region: str | None = None
    gpu_name: str | None = None
    offers_count: int = 0
    total_offers: int | None = None
    cheapest_price: float | None = None
    average_price: float | None = None
    estimated_ondemand: float | None = None
    savings_vs_ondemand: float | None = None
    top_offers: list[SpotOffer] = Field(default_factory=list)
    message: str | None = None
    note: str | None = None
