"""The state ledger: atomic writes after every operation, the journal, the lock, corruption."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dumont_plan.errors import LockError, StateError
from dumont_plan.files import write_atomic
from dumont_plan.state import ledger as ledger_module
from dumont_plan.state.ledger import (
    DesiredRecord,
    Ledger,
    force_unlock,
    read_holder,
)

HOLD_LOCK = """
import sys, time
from pathlib import Path
from dumont_plan.state.ledger import Ledger
with Ledger.locked(Path(sys.argv[1]), "lab", command="dumont apply"):
    print("locked", flush=True)
    time.sleep(60)
"""


def state_file(tmp_path: Path) -> Path:
    return tmp_path / ".dumont" / "state.json"


def on_disk(path: Path) -> dict:
    return json.loads(path.read_text())


def test_a_missing_state_is_fresh_and_not_written(tmp_path: Path) -> None:
    ledger = Ledger.load(state_file(tmp_path), "lab")
    assert not ledger.exists
    assert ledger.state.project == "lab"
    assert ledger.state.resources == {}
    assert len(ledger.state.salt) == 32
    assert not state_file(tmp_path).exists()


def test_every_operation_is_on_disk_at_once(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    ledger = Ledger.load(path, "lab")
    op = ledger.begin_op(
        "job.train", "create", kind="job", remote_name="lab-train", idempotency_key="k1"
    )
    data = on_disk(path)
    assert data["pending"] == [
        {
            "op_id": op.op_id,
            "address": "job.train",
            "kind": "job",
            "action": "create",
            "idempotency_key": "k1",
            "remote_name": "lab-train",
            "remote_id": None,
            "started_at": op.started_at,
        }
    ]
    assert data["resources"] == {}
    record = DesiredRecord({"command": "x"}, prevent_destroy=True, depends_on=["a.b"])
    ledger.finish_op(op, remote_id="job_1", record=record)
    data = on_disk(path)
    assert data["pending"] == []
    entry = data["resources"]["job.train"]
    assert entry["remote_id"] == "job_1"
    assert entry["remote_name"] == "lab-train"
    assert entry["applied_spec"] == {"command": "x"}
    assert "fingerprint" not in entry
    assert entry["prevent_destroy"] is True
    assert entry["depends_on"] == ["a.b"]
    assert entry["run_count"] == 1
    assert data["serial"] == 2
    assert data["project"] == "lab"
    # A second run of the address retires the old job id (never adopted again).
    op2 = ledger.begin_op("job.train", "run", kind="job", remote_name="lab-train")
    ledger.finish_op(op2, remote_id="job_2", record=record)
    data = on_disk(path)
    assert data["resources"]["job.train"]["run_count"] == 2
    assert data["retired"] == ["job:job_1"]
    assert Ledger.load(path, "lab").state.claimed("job") == {"job_1", "job_2"}


def test_fail_op_drops_the_journal_entry_and_remove_retires_the_id(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    ledger = Ledger.load(path, "lab")
    op = ledger.begin_op("instance.box", "create", kind="instance", remote_name="lab-box")
    ledger.fail_op(op)
    assert on_disk(path)["pending"] == []
    ledger.record("instance.box", kind="instance", remote_id="101", remote_name="lab-box")
    ledger.remove("instance.box")
    data = on_disk(path)
    assert data["resources"] == {}
    assert data["retired"] == ["instance:101"]


def test_the_previous_version_is_kept_and_no_temp_file_is_left(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    ledger = Ledger.load(path, "lab")
    ledger.record("job.a", kind="job", remote_id="job_1")
    ledger.record("job.b", kind="job", remote_id="job_2")
    backup = path.with_name("state.json.backup")
    assert set(on_disk(backup)["resources"]) == {"job.a"}
    assert set(on_disk(path)["resources"]) == {"job.a", "job.b"}
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == [".gitignore", "state.json", "state.json.backup"]  # no temp file
    assert (path.stat().st_mode & 0o777) == 0o600


def test_a_crash_mid_write_leaves_the_old_state_whole(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    Ledger.load(path, "lab").record("job.a", kind="job", remote_id="job_1")
    # What a write killed before its rename leaves: a stray temp file beside the state.
    (path.parent / ".state.json.999.dead.tmp").write_text('{"format_version": 1, "proj')
    ledger = Ledger.load(path, "lab")
    assert set(ledger.state.resources) == {"job.a"}


def test_a_corrupt_state_is_never_overwritten(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"format_version": 1, "resources": {"job.a": ')
    with pytest.raises(StateError) as caught:
        Ledger.load(path, "lab")
    message = str(caught.value)
    assert message.startswith(f"state file {path} is not valid dumont state (line 1 column")
    copies = list(path.parent.glob("state.json.corrupt-*"))
    assert len(copies) == 1
    assert f"a copy is at {copies[0]}" in message
    assert "restore the previous version" in message
    assert path.read_text() == '{"format_version": 1, "resources": {"job.a": '
    # Every later command on the same damage names that copy: no new one each time.
    for _ in range(3):
        with pytest.raises(StateError, match=f"a copy is at {copies[0]}"):
            Ledger.load(path, "lab")
    assert list(path.parent.glob("state.json.corrupt-*")) == copies
    path.write_text("{not json either")  # new damage: a new copy
    with pytest.raises(StateError):
        Ledger.load(path, "lab")
    assert len(list(path.parent.glob("state.json.corrupt-*"))) == 2


def test_a_state_with_wrong_types_names_the_field(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format_version": 1, "resources": {"job.a": {"run_count": 1}}}))
    with pytest.raises(StateError, match=r"\(resources\.job\.a\.kind: Field required\)"):
        Ledger.load(path, "lab")


def test_a_state_written_with_fingerprints_loads_and_drops_them(tmp_path: Path) -> None:
    """Older dumonts wrote a `fingerprint` per entry (never read): such a file still loads."""
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    old_entry = {
        "kind": "job",
        "remote_id": "job_1",
        "remote_name": "lab-a",
        "fingerprint": "sha256:" + "0" * 64,
        "applied_spec": {"command": "x", "disk_size": 50},
        "depends_on": ["instance.box"],
        "run_count": 3,
    }
    old = {"format_version": 1, "project": "lab", "serial": 7, "salt": "s1"}
    path.write_text(json.dumps({**old, "resources": {"job.a": old_entry}}))
    ledger = Ledger.load(path, "lab")
    entry = ledger.state.resources["job.a"]
    assert (entry.remote_id, entry.applied_spec, entry.run_count) == (
        "job_1",
        {"command": "x", "disk_size": 50},
        3,
    )
    ledger.mark_status("job.a", "gone")
    ledger.save()
    saved = on_disk(path)
    assert saved["serial"] == 8 and saved["salt"] == "s1"
    assert saved["resources"]["job.a"]["applied_spec"] == {"command": "x", "disk_size": 50}
    assert saved["resources"]["job.a"]["depends_on"] == ["instance.box"]
    assert "fingerprint" not in saved["resources"]["job.a"]


def test_a_newer_state_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format_version": 99}))
    with pytest.raises(StateError, match="format_version 99, newer than this dumont"):
        Ledger.load(path, "lab")


def test_a_state_of_another_project_is_refused(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    Ledger.load(path, "other").record("job.a", kind="job", remote_id="job_1")
    with pytest.raises(StateError, match="belongs to project 'other'"):
        Ledger.load(path, "lab")


def test_move_renames_an_address_and_refuses_a_kind_change(tmp_path: Path) -> None:
    ledger = Ledger.load(state_file(tmp_path), "lab")
    ledger.record("job.a", kind="job", remote_id="job_1")
    ledger.move("job.a", "job.b")
    assert set(on_disk(state_file(tmp_path))["resources"]) == {"job.b"}
    with pytest.raises(StateError, match="the kinds differ"):
        ledger.move("job.b", "instance.b")
    with pytest.raises(StateError, match=r"job\.zzz is not in the state"):
        ledger.move("job.zzz", "job.c")


@contextlib.contextmanager
def _holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that holds the lock of `path` until the block ends (then killed, pipe closed)."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "locked"
            yield proc
        finally:
            proc.kill()


def test_a_second_holder_gets_the_holders_details(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    with _holder(path) as proc:
        with pytest.raises(LockError) as caught, Ledger.locked(path, "lab", command="x"):
            pass
        started = read_holder(path.with_name("state.lock"))["started_at"]
        assert str(caught.value) == (
            f"state is locked by pid {proc.pid} on host {socket.gethostname()} since "
            f"{started} (dumont apply); if that process is gone, run `dumont force-unlock`"
        )
        with pytest.raises(LockError, match="that process still holds it"):
            force_unlock(path)


def test_a_killed_holder_does_not_block_the_next_apply(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    with _holder(path) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Ledger.locked(path, "lab", command="dumont apply") as ledger:
        assert read_holder(path.with_name("state.lock"))["pid"] == os.getpid()
        ledger.record("job.a", kind="job", remote_id="job_1")
    assert read_holder(path.with_name("state.lock")) == {}


def test_force_unlock_clears_a_stale_holder_record(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    path.parent.mkdir(parents=True)
    lock = path.with_name("state.lock")
    lock.write_text(json.dumps({"pid": 4242, "host": "ci-7", "command": "dumont apply"}))
    result = force_unlock(path)
    assert result.removed and not result.forced
    assert result.holder["pid"] == 4242
    assert read_holder(lock) == {}
    assert not force_unlock(path).removed


def test_force_unlock_with_force_removes_a_held_lock(tmp_path: Path) -> None:
    path = state_file(tmp_path)
    with _holder(path) as proc:
        result = force_unlock(path, force=True)
        assert result.forced and result.holder["pid"] == proc.pid
        deadline = time.monotonic() + 30  # long before the holder's 60 s sleep ends
        with Ledger.locked(path, "lab", command="second"):
            assert time.monotonic() < deadline


# -- group commit: threads share writes, each returns once its change is durable -------------


class SlowWrites:
    """`write_atomic` for the ledger module: counts writes, each held up by `delay` seconds.

    `fail_on`: the write of that number (1-based) raises ENOSPC instead of writing;
    `gate`: the first write waits for it before writing.
    """

    def __init__(self, delay: float = 0.0, fail_on: int = 0) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.gate: threading.Event | None = None
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, path: Path, text: str) -> None:
        with self.lock:
            self.count += 1
            number = self.count
        if number == 1 and self.gate is not None:
            assert self.gate.wait(30)
        time.sleep(self.delay)
        if number == self.fail_on:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_atomic(path, text)


def test_many_threads_recording_at_once_are_all_durable_and_share_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = state_file(tmp_path)
    writes = SlowWrites(delay=0.05)
    monkeypatch.setattr(ledger_module, "write_atomic", writes)
    ledger = Ledger.load(path, "lab")
    threads, per_thread = 8, 5
    start = threading.Barrier(threads)
    missing: list[str] = []

    def work(t: int) -> None:
        start.wait(30)
        for i in range(per_thread):
            address = f"job.t{t}i{i}"
            op = ledger.begin_op(address, "create", kind="job", idempotency_key=address)
            # Returned: the journal entry is in the file already (the request may go now).
            if address not in {p["address"] for p in on_disk(path)["pending"]}:
                missing.append(f"pending {address}")
            ledger.finish_op(op, remote_id=f"id-{address}", record=DesiredRecord({}))
            entry = on_disk(path)["resources"].get(address)
            if entry is None or entry["remote_id"] != f"id-{address}":
                missing.append(f"resource {address}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    assert missing == []
    changes = threads * per_thread * 2
    data = on_disk(path)
    assert data["pending"] == []
    assert len(data["resources"]) == threads * per_thread
    assert data["serial"] == writes.count
    # One write per change would be 80 at 50 ms each; the threads shared them.
    assert writes.count <= changes // 2, writes.count
    assert Ledger.load(path, "lab").state.resources.keys() == ledger.state.resources.keys()


def test_a_failed_write_raises_in_every_thread_whose_change_it_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = state_file(tmp_path)
    writes = SlowWrites(fail_on=2)
    writes.gate = threading.Event()
    monkeypatch.setattr(ledger_module, "write_atomic", writes)
    ledger = Ledger.load(path, "lab")
    first = threading.Thread(
        target=ledger.record, args=("job.first",), kwargs={"kind": "job", "remote_id": "id-1"}
    )
    first.start()  # writes (write 1, held at the gate) ...
    deadline = time.monotonic() + 30
    while writes.count < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    results: dict[str, BaseException | None] = {}

    def record(address: str) -> None:
        try:
            ledger.record(address, kind="job", remote_id=f"id-{address}")
            results[address] = None
        except BaseException as exc:
            results[address] = exc

    later = [f"job.later{i}" for i in range(3)]
    waiting = [threading.Thread(target=record, args=(a,)) for a in later]
    for thread in waiting:
        thread.start()  # ... while these change the state and wait for the next write
    while len(ledger.state.resources) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    writes.gate.set()
    first.join(30)
    for thread in waiting:
        thread.join(30)
    # Write 2 held all three changes and failed: each of them got the error.
    assert writes.count == 2
    assert set(results) == set(later)
    for address in later:
        error = results[address]
        assert isinstance(error, OSError) and error.errno == errno.ENOSPC, (address, error)
    assert set(on_disk(path)["resources"]) == {"job.first"}
    # The changes are still in memory: the next write that works makes them durable.
    ledger.save()
    assert writes.count == 3
    assert set(on_disk(path)["resources"]) == {"job.first", *later}
