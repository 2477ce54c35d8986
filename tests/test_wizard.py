"""The wizard race's ordering, fallback and cleanup, against a fake API and a fake clock.

The fake stands in for the API only here, to pin down ordering and cleanup (exceptions and
Ctrl-C at chosen moments); the end-to-end races run against the real server in tests/cli.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dumont_plan.errors import DumontError, ServerError
from dumont_plan.wire_models import BlacklistEntry, Instance, Offer
from dumont_plan.wizard import (
    RaceEvent,
    WizardRequest,
    run_race,
    select_offers,
)

NEVER = None
FAIL = "fail"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += max(seconds, 0.01)


def offer(
    offer_id: int,
    price: float,
    *,
    speed: float = 2500,
    geo: str = "Texas, US",
    machine: str | None = None,
    **extra: Any,
) -> Offer:
    return Offer.model_validate(
        {
            "id": offer_id,
            "gpu_name": "RTX 4090",
            "num_gpus": 1,
            "dph_total": price,
            "inet_down": speed,
            "geolocation": geo,
            "machine_id": machine or f"m{offer_id}",
            "reliability": 0.99,
            "is_blacklisted": False,
            **extra,
        }
    )


class FakeInstances:
    """Instances that boot after a per-offer delay (seconds of the fake clock), fail, or never."""

    def __init__(self, clock: FakeClock, offers: list[Offer], boot: dict[int, Any]):
        self.clock = clock
        self._offers = offers
        self.boot = boot
        self.rows: dict[int, dict[str, Any]] = {}
        self.created_at: dict[int, float] = {}
        self.deleted: list[tuple[int, str | None]] = []
        self.calls: list[str] = []
        self.next_id = 1
        self.lock = threading.Lock()
        self.fail_list_on: int | None = None
        self.list_error: BaseException = RuntimeError("boom")
        self.create_errors: dict[int, BaseException] = {}
        self.delete_interrupts = 0
        self.offer_filters: dict[str, Any] = {}

    def offers(self, **filters: Any) -> list[Offer]:
        self.calls.append("offers")
        self.offer_filters = filters
        return list(self._offers)

    def create(self, offer_id: int, **fields: Any) -> Instance:
        with self.lock:
            self.calls.append(f"create {offer_id}")
            if offer_id in self.create_errors:
                raise self.create_errors[offer_id]
            instance_id = self.next_id
            self.next_id += 1
            row = {
                "id": instance_id,
                "offer_id": offer_id,
                "status": "running",
                "actual_status": "loading",
                "label": fields.get("label"),
            }
            self.rows[instance_id] = row
            self.created_at[instance_id] = self.clock()
            return Instance.model_validate(row)

    def list(self, status: str | None = None) -> list[Instance]:
        self.calls.append("list")
        if self.fail_list_on is not None and self.calls.count("list") >= self.fail_list_on:
            raise self.list_error
        for instance_id, row in self.rows.items():
            delay = self.boot.get(row["offer_id"])
            age = self.clock() - self.created_at[instance_id]
            if delay == FAIL and age >= 1:
                row["actual_status"] = "exited"
            elif isinstance(delay, int | float) and age >= delay:
                row["actual_status"] = "running"
        return [Instance.model_validate(r) for r in self.rows.values()]

    def delete(
        self, instance_id: int | str, reason: str | None = None, *, missing_ok: bool = False
    ) -> dict[str, Any] | None:
        self.calls.append(f"delete {instance_id}")
        if self.delete_interrupts:
            self.delete_interrupts -= 1
            raise KeyboardInterrupt
        self.deleted.append((int(instance_id), reason))
        self.rows.pop(int(instance_id), None)
        return {"success": True}

    @property
    def alive(self) -> list[int]:
        return sorted(self.rows)


class FakeBlacklist:
    def __init__(self, entries: list[dict[str, Any]] | None = None) -> None:
        self.entries = [BlacklistEntry.model_validate(e) for e in entries or []]

    def list(
        self,
        provider: str | None = None,
        blacklist_type: str | None = None,
        include_expired: bool | None = None,
    ) -> list[BlacklistEntry]:
        return self.entries


class FakeAPI:
    def __init__(self, instances: FakeInstances, blacklist: FakeBlacklist | None = None) -> None:
        self.instances = instances
        self.blacklist = blacklist or FakeBlacklist()


def race(
    api: FakeAPI, clock: FakeClock, events: list[RaceEvent] | None = None, **request: Any
) -> Any:
    defaults: dict[str, Any] = {"speed_tier": "fast", "poll_interval": 1.0, "batch_timeout": 10}
    return run_race(
        api,
        WizardRequest(**{**defaults, **request}),
        on_event=None if events is None else events.append,
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock,
    )


def setup(boot: dict[int, Any], offers: list[Offer] | None = None) -> tuple:
    clock = FakeClock()
    offers = offers or [offer(i, 0.1 * i) for i in boot]
    instances = FakeInstances(clock, offers, boot)
    return clock, instances, FakeAPI(instances)


def test_first_running_wins_and_every_loser_is_deleted_as_race_loser() -> None:
    clock, instances, api = setup({1: 5, 2: 2, 3: NEVER, 4: 3, 5: NEVER, 6: 1})
    events: list[RaceEvent] = []

    result = race(api, clock, events)

    # Offer 2 boots first within batch 1 (offers 1-5); offer 6 is in batch 2 and never created.
    assert result.offer.id == 2
    assert result.winner.actual_status == "running"
    assert instances.alive == [result.instance_id]
    assert sorted(result.losers) == sorted(i for i, _ in instances.deleted)
    assert {reason for _, reason in instances.deleted} == {"race_loser"}
    assert len(result.losers) == 4
    assert "create 6" not in instances.calls
    # One list call per poll, never a GET per instance.
    assert set(instances.calls) <= {"offers", "list"} | {
        c for c in instances.calls if c.startswith(("create", "delete"))
    }
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["search", "offers", "batch"]
    assert kinds[-1] == "done"
    assert kinds.count("winner") == 1 and kinds.count("cancelled") == 4
    assert result.timings["total"] >= result.timings["ready"] > 0


def test_offers_are_raced_cheapest_first_within_the_tier() -> None:
    offers = [
        offer(10, 0.9),
        offer(11, 0.3),
        offer(12, 0.5, speed=4500),  # ultra: above the fast band, dropped
        offer(13, 0.2, speed=800),  # medium: below the band (server should not send it)
        offer(14, 0.4),
    ]
    clock, instances, api = setup({10: 1, 11: 1, 14: 1}, offers)

    result = race(api, clock, batch_size=2)

    creates = [c for c in instances.calls if c.startswith("create")]
    assert creates == ["create 11", "create 14"]  # 0.3 then 0.4; a tie goes to the cheapest
    assert result.offer.id == 11
    assert instances.offer_filters["min_inet_down"] == 2000
    assert instances.offer_filters["limit"] == 100


def test_ultra_has_no_upper_speed_bound() -> None:
    offers = [offer(1, 0.5, speed=9000), offer(2, 0.4, speed=3000)]
    selection = select_offers(offers, WizardRequest(speed_tier="ultra").validated(), set())
    assert [o.id for o in selection.offers] == [1]


def test_region_table_us_includes_canada_and_excludes_europe() -> None:
    offers = [
        offer(1, 0.5, geo="Quebec, CA"),
        offer(2, 0.4, geo="Germany, DE"),
        offer(3, 0.6, geo="Oregon, US"),
    ]
    selection = select_offers(offers, WizardRequest(region="us").validated(), set())
    assert [o.id for o in selection.offers] == [1, 3]


def test_blacklisted_machines_are_never_raced() -> None:
    offers = [
        offer(1, 0.1, machine="bad-annotated", is_blacklisted=True),
        offer(2, 0.2, machine="bad-listed"),
        offer(3, 0.3, machine="flaky", total_attempts=5, success_rate=0.2),
        offer(4, 0.4, machine="good"),
    ]
    clock, instances, api = setup({1: 1, 2: 1, 3: 1, 4: 1}, offers)
    api.blacklist = FakeBlacklist(
        [
            {"provider": "vast", "machine_id": "bad-listed", "is_active": True},
            {"provider": "vast", "machine_id": "good", "expires_at": "1970-01-01T00:00:10"},
            {"provider": "local", "machine_id": "good", "is_active": False},  # expired
        ]
    )

    result = race(api, clock)

    assert [c for c in instances.calls if c.startswith("create")] == ["create 4"]
    assert result.offer.machine_id == "good"


def test_next_batch_when_nobody_is_ready_in_the_window() -> None:
    clock, instances, api = setup({1: NEVER, 2: NEVER, 3: 2, 4: NEVER})
    events: list[RaceEvent] = []

    result = race(api, clock, events, batch_size=2, batch_timeout=5)

    assert result.offer.id == 3
    assert result.batch == 2
    assert instances.alive == [result.instance_id]
    kinds = [e.kind for e in events]
    assert kinds.count("batch_timeout") == 1
    # Batch 1 was deleted before batch 2 was created.
    first_create_of_2 = instances.calls.index("create 3")
    assert instances.calls.index("delete 1") < first_create_of_2
    assert instances.calls.index("delete 2") < first_create_of_2
    # Still loading when the window closed: a `loading` failure, not a cancelled loser.
    assert (1, "boot_timeout") in instances.deleted
    assert (2, "boot_timeout") in instances.deleted


def test_nobody_ready_in_any_batch_deletes_everything_and_says_so() -> None:
    clock, instances, api = setup({i: NEVER for i in range(1, 8)})

    with pytest.raises(DumontError) as info:
        race(api, clock, batch_size=2, max_batches=3, batch_timeout=3)

    assert "no machine became ready: 6 offers raced in 3 batches" in str(info.value)
    assert instances.alive == []
    assert len(instances.deleted) == 6
    assert "create 7" not in instances.calls


def test_boot_failure_leaves_the_race_and_is_deleted_without_loser_reason() -> None:
    clock, instances, api = setup({1: FAIL, 2: 4})
    events: list[RaceEvent] = []

    result = race(api, clock, events)

    assert result.offer.id == 2
    assert result.failed == [1]
    assert (1, None) in instances.deleted
    assert any(e.kind == "boot_failed" and e.instance_id == 1 for e in events)


def test_refused_create_moves_on() -> None:
    clock, instances, api = setup({1: 1, 2: 2})
    instances.create_errors[1] = ServerError("POST /api/v1/instances failed (500): offer gone")

    result = race(api, clock)

    assert result.offer.id == 2
    assert result.to_dict()["create_errors"][0]["offer_id"] == 1


def test_exception_mid_race_deletes_everything_created() -> None:
    clock, instances, api = setup({1: NEVER, 2: NEVER, 3: NEVER})
    instances.fail_list_on = 2

    with pytest.raises(RuntimeError, match="boom"):
        race(api, clock)

    assert instances.alive == []
    assert sorted(i for i, _ in instances.deleted) == [1, 2, 3]


def test_ctrl_c_mid_race_deletes_everything_created() -> None:
    clock, instances, api = setup({1: NEVER, 2: NEVER, 3: NEVER, 4: NEVER})
    instances.fail_list_on = 3
    instances.list_error = KeyboardInterrupt()
    events: list[RaceEvent] = []

    with pytest.raises(KeyboardInterrupt):
        race(api, clock, events)

    assert instances.alive == []
    assert len(instances.deleted) == 4
    assert [e.kind for e in events].count("cleanup") == 1


def test_ctrl_c_during_a_create_still_deletes_the_other_creates() -> None:
    clock, instances, api = setup({1: NEVER, 2: NEVER, 3: NEVER, 4: NEVER})
    instances.create_errors[3] = KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        race(api, clock)

    assert instances.alive == []
    assert sorted(i for i, _ in instances.deleted) == [1, 2, 3]  # the three that were created


def test_ctrl_c_during_cleanup_does_not_stop_it() -> None:
    clock, instances, api = setup({1: NEVER, 2: NEVER})
    instances.fail_list_on = 1
    instances.delete_interrupts = 1

    with pytest.raises(RuntimeError):
        race(api, clock)

    assert instances.alive == []


def test_winner_is_deleted_too_when_the_race_fails_after_choosing_it() -> None:
    clock, instances, api = setup({1: 1, 2: NEVER})
    original = instances.delete
    calls = {"n": 0}

    def delete_once_broken(instance_id: int | str, reason: str | None = None, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("network bug")
        return original(instance_id, reason, **kw)

    instances.delete = delete_once_broken  # type: ignore[method-assign]

    with pytest.raises(RuntimeError, match="network bug"):
        race(api, clock)

    assert instances.alive == []


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        (
            {"speed_tier": "warp"},
            "speed tier 'warp' is unknown; use one of: slow, medium, fast, ultra",
        ),
        ({"max_price": -1.0}, "price -1 must be above 0 ($/h); give the highest $/h you accept"),
        ({"region": "MARS"}, "region 'MARS' is unknown; use one of: global, US, EU, ASIA"),
        ({"num_gpus": 9}, "num_gpus 9 is out of range; use 1-8"),
    ],
)
def test_bad_input_is_refused_before_any_request(
    request_fields: dict[str, Any], message: str
) -> None:
    clock, instances, api = setup({1: 1})

    with pytest.raises(DumontError) as info:
        race(api, clock, **request_fields)

    assert str(info.value).startswith(message)
    assert instances.calls == []


def test_no_offers_names_the_filters_and_the_fix() -> None:
    offers = [offer(1, 0.1, machine="x", is_blacklisted=True)]
    clock, instances, api = setup({1: 1}, offers)

    with pytest.raises(DumontError) as info:
        race(api, clock, gpu_name="RTX 4090", max_price=1.5, region="EU", speed_tier="ultra")

    assert str(info.value) == (
        "no GPU offers match gpu=RTX 4090, speed=ultra (>= 4000 Mbps), price <= $1.5/h, "
        "region=EU, disk >= 50 GB; raise the price cap (now $1.5/h); pick another speed tier; "
        "widen the region to global or choose another GPU or any GPU; "
        "`dumont instance offers` lists what the market has"
    )
    assert not any(c.startswith("create") for c in instances.calls)
