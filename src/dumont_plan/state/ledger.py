"""The state ledger: address -> remote id, last-applied values, pending operations, and a lock.

`.dumont/state.json` beside the (first) spec file, unless `--state PATH`:

    {format_version, project, serial, lineage, salt,
     resources: {address: {kind, remote_id, remote_name, applied_spec,
                           prevent_destroy, depends_on, status,
                           created_at, updated_at, last_run_at, run_count}},
     pending: [{op_id, address, kind, action, idempotency_key, remote_name, remote_id,
                started_at}],
     retired: ["job:job_1a2b3c4d", ...]}

The API does not echo a job's config back, so `applied_spec` is where planning finds the values
last applied; secrets are in it only as salted hashes (the salt is per ledger).

Every change is durable before the method that made it returns: the whole file is written
atomically (a temp file, fsync, rename, fsync of the folder); the previous version is kept as
`state.json.backup`. Changes from several threads share writes (group commit): a thread whose
change is not yet on disk either writes the state as it is now (its change and every other made
so far) or waits for the write under way, then for the next one if that started before its
change; it returns once a write holding its change is done, and a failed write raises in every
thread that waited for it. A file that cannot be read is
never overwritten: the error names a copy and the way out.

Apply (the only writer besides refresh/import/state commands) works like this:

    with Ledger.locked(path, project, command="dumont apply") as ledger:
        op = ledger.begin_op(address, "create", kind="job", remote_name=..., idempotency_key=...)
        live = ops.create(...)                          # crash here: the next plan adopts by name
        ledger.finish_op(op, remote_id=..., record=desired_record(...))   # or fail_op(op)
        ledger.remove(address)                          # after a delete / forget
        ledger.record(address, kind=..., remote_id=..., remote_name=..., record=...)  # adopt

The lock is `.dumont/state.lock` (state/lock.py): an `flock` held for the command's lifetime plus
a JSON holder record (pid, host, user, command, started_at) for the message a second process
gets. A crashed holder's flock is released by the kernel; `force-unlock` clears what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dumont_plan.errors import StateError
from dumont_plan.files import write_atomic
from dumont_plan.state.document import corrupt_error, write_gitignore
from dumont_plan.state.lock import LOCK_FILE, StateLock, UnlockResult, force_unlock, read_holder

STATE_FORMAT_VERSION = 1
STATE_DIR = ".dumont"
STATE_FILE = "state.json"
RETIRED_KEEP = 2000  # ids of objects dumont let go (old job runs), never adopted again


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LedgerEntry(_Model):
    kind: str
    remote_id: str | None = None
    remote_name: str | None = None
    # A `fingerprint` key of older files (a hash of applied_spec that nothing read) is ignored
    # on load and dropped on the next save; older dumonts read a file without it as before.
    applied_spec: dict[str, Any] = Field(default_factory=dict)
    prevent_destroy: bool = False
    depends_on: list[str] = Field(default_factory=list)
    status: str | None = None  # last status seen (refresh), e.g. "gone"
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    last_run_at: str | None = None
    run_count: int = 0


class PendingOp(_Model):
    op_id: str
    address: str
    kind: str
    action: str
    idempotency_key: str | None = None
    remote_name: str | None = None
    remote_id: str | None = None  # the object the op acts on (None for a create)
    started_at: str = Field(default_factory=now_iso)


class LedgerState(_Model):
    format_version: int = STATE_FORMAT_VERSION
    project: str = ""
    serial: int = 0
    # Which state this is (as in Terraform): a remote backend refuses a write of another one.
    lineage: str = Field(default_factory=lambda: uuid.uuid4().hex)
    salt: str = Field(default_factory=lambda: secrets.token_hex(16))
    resources: dict[str, LedgerEntry] = Field(default_factory=dict)
    pending: list[PendingOp] = Field(default_factory=list)
    retired: list[str] = Field(default_factory=list)

    def claimed(self, kind: str) -> set[str]:
        """Remote ids of `kind` that belong to an address or were let go (not adoptable)."""
        ids = {e.remote_id for e in self.resources.values() if e.kind == kind and e.remote_id}
        prefix = f"{kind}:"
        ids.update(r[len(prefix) :] for r in self.retired if r.startswith(prefix))
        return {i for i in ids if i}

    def pending_for(self, address: str) -> list[PendingOp]:
        return [op for op in self.pending if op.address == address]


@dataclass(frozen=True)
class DesiredRecord:
    """What apply records for an address after a successful operation (no secret values)."""

    applied_spec: dict[str, Any]
    prevent_destroy: bool = False
    depends_on: list[str] = field(default_factory=list)


def decode_state(text: str, what: str) -> LedgerState:
    """A state document's text as a LedgerState. ValueError (pydantic's ValidationError is
    one) when it is not one; StateError when a newer dumont wrote it (`what` names it)."""
    try:  # the common case in one pass (pydantic parses the JSON itself)
        state = LedgerState.model_validate_json(text)
    except ValueError:
        pass  # not valid as it is: the checks below say why
    else:
        if state.format_version <= STATE_FORMAT_VERSION:
            return state
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the top level is not an object")
    version = data.get("format_version")
    if isinstance(version, int) and version > STATE_FORMAT_VERSION:
        raise StateError(
            f"{what} has format_version {version}, newer than this dumont "
            f"understands ({STATE_FORMAT_VERSION})",
            "upgrade dumont-plan (pip install -U dumont-plan)",
        )
    return LedgerState.model_validate(data)


def of_project(state: LedgerState, project: str | None, what: str, other: str) -> None:
    """Refuse the state of another project (`other`: how to use another state); a state
    without a project takes `project`."""
    if project and state.project and state.project != project:
        raise StateError(
            f"{what} belongs to project {state.project!r}, but the spec's project is {project!r}",
            f"{other}, or fix `project:` in the spec",
        )
    if project and not state.project:
        state.project = project


def default_state_path(spec_root: Path) -> Path:
    return spec_root / STATE_DIR / STATE_FILE


class Ledger:
    """One state file in memory; every mutating method saves at once (thread-safe)."""

    def __init__(self, path: Path, state: LedgerState, *, exists: bool = False) -> None:
        self.path = path
        self.state = state
        self.exists = exists
        self._mutex = threading.RLock()  # guards `state` and `_changes`
        self._changes = 0  # changes made to `state` that must reach the file, numbered
        self._flush = threading.Condition()  # guards the three fields below
        self._durable = 0  # changes up to this number are in a completed write
        self._writing = False  # a thread is writing the file
        self._failed: tuple[int, BaseException] | None = None  # (changes it held, error)
        self._lock: StateLock | None = None

    # -- loading and saving ----------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, project: str | None = None) -> Ledger:
        """The ledger at `path`; a fresh, unsaved one when the file does not exist.

        With `project`, a ledger of another project is refused (StateError).
        """
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, LedgerState(project=project or ""))
        except OSError as exc:
            raise StateError(f"cannot read state file {path}: {exc.strerror}") from exc
        try:
            state = decode_state(text, f"state file {path}")
        except ValueError as exc:
            raise corrupt_error(path, exc) from exc
        of_project(
            state, project, f"state file {path}", "pass --state PATH to use another state file"
        )
        return cls(path, state, exists=True)

    def save(self) -> None:
        """Make the state as it is now durable (with every change made so far)."""
        with self._mutex:
            change = self._changed()
        self._commit(change)

    def _changed(self) -> int:
        """Number a change just made to `state` (call with `_mutex` held)."""
        self._changes += 1
        return self._changes

    def _commit(self, change: int) -> None:
        """Return once a write holding change number `change` is durable (group commit).

        Call without `_mutex` held, so other threads can change the state meanwhile: their
        changes go into the next write, which one of them makes.
        """
        with self._flush:
            while True:
                if self._durable >= change:
                    return
                if self._failed is not None and self._failed[0] >= change:
                    raise self._failed[1]
                if not self._writing:
                    break
                self._flush.wait()
            self._writing = True
        # This thread writes: the state as it is now, its own change and any made since.
        held = change
        try:
            with self._mutex:
                held = self._changes
                self.state.serial += 1
                # pydantic-core's serializer: 1 ms for 500 entries where model_dump +
                # json.dumps took 11 (apply saves twice per change: 7 s of CPU at 500 jobs).
                text = self.state.model_dump_json(indent=2)
            self._store(text + "\n")
            self.exists = True
        except BaseException as exc:
            self._written(held, exc)
            raise
        self._written(held, None)

    def _written(self, held: int, error: BaseException | None) -> None:
        """A write holding changes up to `held` is done (or failed): wake the waiters."""
        with self._flush:
            self._writing = False
            if error is None:
                self._durable = max(self._durable, held)
            else:
                self._failed = (held, error)
            self._flush.notify_all()

    def _store(self, text: str) -> None:
        """Make `text` (the whole state) durable where it lives: here, the file (a backend's
        ledger writes it through to the remote store instead)."""
        if self.path.exists():
            self._keep_backup()
        elif self.path.parent.name == STATE_DIR:
            write_gitignore(self.path.parent)
        write_atomic(self.path, text)

    @property
    def where(self) -> str:
        """Where the state lives, for messages (a file path, or a remote address)."""
        return str(self.path)

    def _keep_backup(self) -> None:
        backup = self.path.with_name(self.path.name + ".backup")
        tmp = backup.with_name(f".{backup.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
            try:
                os.link(self.path, tmp)
            except OSError:
                shutil.copy2(self.path, tmp)
            os.replace(tmp, backup)

    # -- locking ---------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def locked(
        cls, path: Path, project: str | None = None, *, command: str = "dumont"
    ) -> Iterator[Ledger]:
        """Lock the state, then load it (so no other writer's change is lost)."""
        lock = StateLock(path.with_name(LOCK_FILE))
        lock.acquire(command)
        try:
            ledger = cls.load(path, project)
            ledger._lock = lock
            yield ledger
        finally:
            lock.release()

    # -- operations (apply) ----------------------------------------------------------------

    def begin_op(
        self,
        address: str,
        action: str,
        *,
        kind: str,
        remote_name: str | None = None,
        idempotency_key: str | None = None,
        remote_id: str | None = None,
    ) -> PendingOp:
        """Journal an operation before its request is sent (and save)."""
        with self._mutex:
            op = PendingOp(
                op_id=uuid.uuid4().hex[:12],
                address=address,
                kind=kind,
                action=str(getattr(action, "value", action)),
                idempotency_key=idempotency_key,
                remote_name=remote_name,
                remote_id=remote_id,
            )
            self.state.pending = [p for p in self.state.pending if p.address != address]
            self.state.pending.append(op)
            change = self._changed()
        self._commit(change)
        return op

    def finish_op(
        self,
        op: PendingOp,
        *,
        remote_id: str | None = None,
        record: DesiredRecord | None = None,
    ) -> LedgerEntry:
        """Record the operation's result for its address, drop it from the journal, save.

        `create`/`run`/`replace` count as a run (run_count, last_run_at); a new remote id
        retires the old one (an old job run is never adopted again).
        """
        with self._mutex:
            entry = self._put(
                op.address,
                kind=op.kind,
                remote_id=remote_id if remote_id is not None else op.remote_id,
                remote_name=op.remote_name,
                record=record,
                status=None,
                run=op.action in ("create", "run", "replace"),
            )
            self.state.pending = [p for p in self.state.pending if p.op_id != op.op_id]
            change = self._changed()
        self._commit(change)
        return entry

    def fail_op(self, op: PendingOp) -> None:
        """The operation failed for sure (the server refused it): forget the journal entry."""
        with self._mutex:
            self.state.pending = [p for p in self.state.pending if p.op_id != op.op_id]
            change = self._changed()
        self._commit(change)

    def record(
        self,
        address: str,
        *,
        kind: str,
        remote_id: str | None,
        remote_name: str | None = None,
        record: DesiredRecord | None = None,
        status: str | None = None,
        run: bool = False,
    ) -> LedgerEntry:
        """Record an address without a journal (adopt, import); clears its pending ops."""
        with self._mutex:
            entry = self._put(
                address,
                kind=kind,
                remote_id=remote_id,
                remote_name=remote_name,
                record=record,
                status=status,
                run=run,
            )
            self.state.pending = [p for p in self.state.pending if p.address != address]
            change = self._changed()
        self._commit(change)
        return entry

    def _put(
        self,
        address: str,
        *,
        kind: str,
        remote_id: str | None,
        remote_name: str | None,
        record: DesiredRecord | None,
        status: str | None,
        run: bool,
    ) -> LedgerEntry:
        now = now_iso()
        entry = self.state.resources.get(address)
        if entry is None:
            entry = LedgerEntry(kind=kind, created_at=now)
            self.state.resources[address] = entry
        if remote_id is not None and entry.remote_id and entry.remote_id != remote_id:
            self._retire(entry.kind, entry.remote_id)
            entry.created_at = now
        if remote_id is not None:
            entry.remote_id = str(remote_id)
        if remote_name is not None:
            entry.remote_name = remote_name
        if record is not None:
            entry.applied_spec = dict(record.applied_spec)
            entry.prevent_destroy = record.prevent_destroy
            entry.depends_on = list(record.depends_on)
        entry.status = status
        entry.updated_at = now
        if run:
            entry.run_count += 1
            entry.last_run_at = now
        return entry

    def _retire(self, kind: str, remote_id: str) -> None:
        key = f"{kind}:{remote_id}"
        if key not in self.state.retired:
            self.state.retired.append(key)
            del self.state.retired[:-RETIRED_KEEP]

    def remove(self, address: str) -> LedgerEntry | None:
        """Drop an address (after a delete, a forget or `state rm`); its id is never adopted."""
        with self._mutex:
            entry = self.state.resources.pop(address, None)
            if entry is not None and entry.remote_id:
                self._retire(entry.kind, entry.remote_id)
            self.state.pending = [p for p in self.state.pending if p.address != address]
            change = self._changed()
        self._commit(change)
        return entry

    def move(self, old: str, new: str) -> None:
        """`state mv`: the object recorded at `old` is now managed as `new`."""
        with self._mutex:
            if old not in self.state.resources:
                raise StateError(
                    f"{old} is not in the state", "`dumont state list` shows what is there"
                )
            if new in self.state.resources:
                raise StateError(
                    f"{new} is already in the state", f"remove it first: dumont state rm {new}"
                )
            if old.split(".", 1)[0] != new.split(".", 1)[0]:
                raise StateError(
                    f"cannot move {old} to {new}: the kinds differ",
                    "move within one kind, e.g. job.a -> job.b",
                )
            self.state.resources[new] = self.state.resources.pop(old)
            for op in self.state.pending:
                if op.address == old:
                    op.address = new
            change = self._changed()
        self._commit(change)

    def mark_status(self, address: str, status: str | None) -> None:
        """Remember the last status seen (refresh), without touching anything else."""
        with self._mutex:
            entry = self.state.resources.get(address)
            if entry is not None:
                entry.status = status
                entry.updated_at = now_iso()


__all__ = [
    "LOCK_FILE",
    "DesiredRecord",
    "Ledger",
    "LedgerEntry",
    "LedgerState",
    "PendingOp",
    "StateLock",
    "UnlockResult",
    "default_state_path",
    "force_unlock",
    "read_holder",
]
