"""The read models: lenient where the server is loose, strict on ids, the raw object kept."""

from __future__ import annotations

import pytest

from dumont_plan.errors import UnexpectedResponseError
from dumont_plan.wire_models import BlacklistEntry, Instance, Job, Offer


def test_a_job_reads_leniently_and_keeps_what_the_server_sent() -> None:
    sent = {"id": 42, "status": None, "total_cost": 1, "brand_new_field": [1, 2]}
    job = Job.from_wire(sent, "GET /api/v1/jobs/42")
    assert (job.id, job.status, job.total_cost, job.name) == ("42", "unknown", 1.0, None)
    assert job.raw is sent  # every field, unknown ones too, as sent (what --output json prints)
    assert not hasattr(job, "brand_new_field")
    assert Job.from_wire({"id": "job_1", "status": ""}, "x").status == "unknown"


@pytest.mark.parametrize(
    ("status", "finished", "failed"),
    [
        ("running", False, False),
        ("completed", True, False),
        ("failed", True, True),
        ("cancelled", True, True),
        ("timeout", True, True),
    ],
)
def test_job_lifecycle(status: str, finished: bool, failed: bool) -> None:
    job = Job(id="job_1", status=status)
    assert (job.is_finished, job.is_failed) == (finished, failed)


def test_read_models_are_immutable() -> None:
    job = Job(id="job_1")
    with pytest.raises(ValueError, match="frozen"):
        job.status = "running"  # type: ignore[misc]


def test_a_page_is_validated_in_one_go_skipping_what_is_not_an_object() -> None:
    sent = [{"id": "a", "status": "running"}, "junk", {"id": "b"}]
    jobs = Job.list_from_wire(sent, "GET /api/v1/jobs/")
    assert [(j.id, j.status) for j in jobs] == [("a", "running"), ("b", "unknown")]
    assert [j.raw for j in jobs] == [sent[0], sent[2]]
    assert Job.list_from_wire(None, "x") == []


def test_an_unreadable_object_is_one_clear_error() -> None:
    with pytest.raises(UnexpectedResponseError) as info:
        Job.from_wire({"status": "running"}, "GET /api/v1/jobs/job_1")
    assert str(info.value) == (
        "GET /api/v1/jobs/job_1: the API answered with an unreadable job object "
        "(id: Field required); check that DUMONT_API_URL points at a Dumont API v1 server"
    )
    with pytest.raises(UnexpectedResponseError, match=r"instance object \(0\.id: Input should"):
        Instance.list_from_wire([{"id": "not-a-number"}], "GET /api/v1/instances")
    with pytest.raises(UnexpectedResponseError, match="got list, not an object"):
        Job.from_wire([], "x")
    with pytest.raises(UnexpectedResponseError, match="got str, not a list"):
        Offer.list_from_wire("offers", "x")


def test_instance_statuses_as_people_and_the_provider_say_them() -> None:
    paused = Instance(id=1, status="stopped", actual_status="exited")
    assert (paused.is_paused, paused.display_status, paused.actual) == (True, "paused", "exited")
    booting = Instance(id=2, status="running", actual_status="LOADING")
    assert (booting.display_status, booting.is_running, booting.is_failed) == (
        "loading",
        False,
        False,
    )
    assert Instance(id=3, status="running").is_running  # no actual status: the intended one
    assert Instance(id=4).is_failed  # nothing known: `unknown` never boots by itself


def test_instance_ssh_command_from_fields_or_the_port_map() -> None:
    assert Instance(id=1, ssh_host="h", ssh_port="2222").ssh_command == "ssh -p 2222 root@h"
    mapped = Instance(
        id=2, public_ipaddr="1.2.3.4", ports={"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": 2201}]}
    )
    assert mapped.ssh_command == "ssh -p 2201 root@1.2.3.4"
    assert mapped.host_port("22/tcp") == ("0.0.0.0", "2201")
    assert mapped.host_port("11434/tcp") == (None, None)
    assert Instance(id=3, ssh_host="h").ssh_command == "ssh root@h"
    assert Instance(id=4, ssh_port=22).ssh_command is None


def test_numbers_read_as_text_where_the_contract_says_text() -> None:
    entry = BlacklistEntry.from_wire({"machine_id": 12345, "expires_at": None}, "x")
    assert entry.machine_id == "12345"
    offer = Offer.from_wire({"id": "7", "machine_id": 99, "dph_total": "0.25"}, "x")
    assert (offer.id, offer.machine_id, offer.dph_total) == (7, "99", 0.25)
