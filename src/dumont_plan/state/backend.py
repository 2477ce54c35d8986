"""Where the ledger lives: a local file (`LocalBackend`) or a remote store (`RemoteBackend`).

    backend = LocalBackend(path)                       # .dumont/state.json, flock + holder
    backend = RemoteBackend(store)                     # a StateStore: client/state_http.py
    with backend.locked(project, command="dumont apply") as ledger: ...
    ledger = backend.load(project)                     # read only (plan, state list, show)
    backend.force_unlock("3f2a...")                     # a remote lock by its ID

A remote ledger is written through: every save (the same group commit as the file: one write
holds every change made so far) sends the whole document to the store, tagged with the lock
ID, and returns once the store accepted it, so "durable" means "stored remotely" exactly where
it meant "fsynced" locally. No local journal is kept (the README's design notes say why): a
crash between two writes loses nothing that was acknowledged, and the pending-operation
journal inside the document (written before each create) lets the next apply adopt by name
what an interrupted create made. The store refuses a document of another lineage or with a
stale serial (the local control plane does; a generic server relies on the lock).

The remote lock is Terraform's lock info (`ID`, `Operation`, `Info`, `Who`, `Version`,
`Created`, `Path`); `Info` carries the holder's pid, host and boot id. A lock left by a dumont
process that is gone from this very machine (same host and boot, pid not running: it was
killed) is taken over, as the kernel releases a dead process's flock; any other needs
`dumont force-unlock ID`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from dumont_plan import __version__
from dumont_plan.errors import BackendError, LockError, StateConflictError, StateError
from dumont_plan.state.document import invalid_detail
from dumont_plan.state.ledger import Ledger, LedgerState, decode_state, of_project
from dumont_plan.state.lock import LOCK_FILE, UnlockResult, force_unlock, held_by


class StateStore(Protocol):
    """A remote place for one state document and its lock (Terraform's HTTP protocol)."""

    @property
    def address(self) -> str: ...  # shown in messages: no credentials

    def get(self) -> str | None: ...

    def put(self, text: str, lock_id: str | None) -> None: ...

    def lock(self, info: dict[str, Any]) -> dict[str, Any] | None: ...

    def unlock(self, info: dict[str, Any]) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


def describe_holder(info: dict[str, Any]) -> str:
    """`ana@laptop since 2026-01-01T10:00:00Z (dumont apply)`."""
    text = f"{info.get('Who') or 'someone'} since {info.get('Created') or '?'}"
    operation = info.get("Operation")
    return f"{text} ({operation})" if operation else text


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def lock_info(command: str, project: str) -> dict[str, Any]:
    """This process's lock info, in Terraform's shape."""
    host = socket.gethostname()
    here = {"pid": os.getpid(), "host": host, "boot_id": _boot_id()}
    return {
        "ID": str(uuid.uuid4()),
        "Operation": command,
        "Info": json.dumps(here),
        "Who": f"{_user()}@{host}",
        "Version": __version__,
        "Created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "Path": project,
    }


def abandoned(holder: dict[str, Any]) -> bool:
    """Whether a lock was left by a dumont process of this machine that is gone."""
    try:
        origin = json.loads(str(holder.get("Info") or ""))
    except ValueError:
        return False
    if not isinstance(origin, dict) or not isinstance(origin.get("pid"), int):
        return False
    if origin.get("host") != socket.gethostname() or not origin.get("boot_id"):
        return False
    if origin.get("boot_id") != _boot_id():
        return False
    try:
        os.kill(origin["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class RemoteLedger(Ledger):
    """A ledger whose every save is written through to a StateStore."""

    def __init__(
        self,
        store: StateStore,
        state: LedgerState,
        *,
        exists: bool = False,
        lock_id: str | None = None,
    ) -> None:
        super().__init__(Path(store.address), state, exists=exists)
        self.store = store
        self.lock_id = lock_id

    @property
    def where(self) -> str:
        return self.store.address

    def _store(self, text: str) -> None:
        if self.lock_id is None:
            raise StateError(
                f"the state at {self.where} was read without its lock and cannot be written"
            )
        self.store.put(text, self.lock_id)


class LocalBackend:
    """The state file beside the spec (or `--state PATH`): today's ledger, unchanged."""

    kind = "local"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def where(self) -> str:
        return str(self.path)

    def load(self, project: str | None) -> Ledger:
        return Ledger.load(self.path, project)

    def busy(self) -> str | None:
        """Who is changing the state right now (an apply's lock), if anyone."""
        return held_by(self.path.with_name(LOCK_FILE))

    def locked(
        self, project: str | None, *, command: str
    ) -> contextlib.AbstractContextManager[Ledger]:
        return Ledger.locked(self.path, project, command=command)

    def force_unlock(self, lock_id: str | None, *, force: bool = False) -> UnlockResult:
        del lock_id  # one lock file: nothing to choose
        return force_unlock(self.path, force=force)

    def close(self) -> None:
        return None


class RemoteBackend:
    """The state in a remote store, locked there for the lifetime of a writing command."""

    kind = "http"

    def __init__(self, store: StateStore, *, notice: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.notice = notice or (lambda text: None)

    @property
    def where(self) -> str:
        return self.store.address

    def busy(self) -> str | None:
        """Not known without taking the remote lock (an apply names its holder)."""
        return None

    def load(self, project: str | None, *, lock_id: str | None = None) -> RemoteLedger:
        text = self.store.get()
        if text is None:
            return RemoteLedger(self.store, LedgerState(project=project or ""), lock_id=lock_id)
        what = f"the remote state at {self.where}"
        try:
            state = decode_state(text, what)
        except ValueError as exc:
            raise StateError(
                f"{what} is not valid dumont state ({invalid_detail(exc)})",
                "`dumont state push` a good local copy over it, or delete it on the server",
            ) from exc
        of_project(state, project, what, "point `backend: address:` at this project's state")
        return RemoteLedger(self.store, state, exists=True, lock_id=lock_id)

    @contextlib.contextmanager
    def locked(self, project: str | None, *, command: str) -> Iterator[RemoteLedger]:
        """Lock the remote state, then read it (so no other writer's change is lost)."""
        info = lock_info(command, project or "")
        self._acquire(info)
        try:
            yield self.load(project, lock_id=info["ID"])
        except BaseException:
            with contextlib.suppress(StateError, LockError):
                self._release(info)
            raise
        self._release(info)

    def _acquire(self, info: dict[str, Any]) -> None:
        holder = self.store.lock(info)
        if holder is not None and abandoned(holder):
            self.notice(
                f"Took over the state lock left by {describe_holder(holder)}: that process "
                "is no longer running on this machine."
            )
            self.store.unlock(holder)
            holder = self.store.lock(info)
        if holder is not None:
            lock_id = holder.get("ID", "?")
            raise LockError(
                f"state is locked by {describe_holder(holder)}; lock ID {lock_id}",
                f"wait for it to finish; if that run is gone: dumont force-unlock {lock_id}",
            )

    def _release(self, info: dict[str, Any]) -> None:
        try:
            holder = self.store.unlock(info)
        except BackendError as exc:
            raise BackendError(
                f"{exc.message}; the state is still locked (lock ID {info['ID']})",
                f"once the backend answers: dumont force-unlock {info['ID']}",
            ) from exc
        if holder is not None:
            self.notice(
                f"The state lock of this run was removed while it ran; it is now held by "
                f"{describe_holder(holder)}."
            )

    def force_unlock(self, lock_id: str | None, *, force: bool = False) -> UnlockResult:
        """Release the remote lock `lock_id` (the ID a locked-state message shows)."""
        del force  # a remote lock's holder cannot be checked for life: the ID is the consent
        if not lock_id:
            raise LockError(
                f"force-unlock of the remote state at {self.where} needs the lock ID",
                "the `state is locked by ...` message shows it: dumont force-unlock ID",
            )
        holder = self.store.unlock({"ID": lock_id})
        if holder is not None:
            raise LockError(
                f"the state at {self.where} is locked by {describe_holder(holder)} under lock "
                f"ID {holder.get('ID', '?')}, not {lock_id}",
                f"check the ID; to remove that lock: dumont force-unlock {holder.get('ID', '?')}",
            )
        return UnlockResult(True, {"ID": lock_id}, forced=True)

    def close(self) -> None:
        self.store.close()


StateBackend = LocalBackend | RemoteBackend


# -- migrating between local and remote -------------------------------------------------------


def push_state(local: Ledger, remote: RemoteBackend, project: str | None) -> tuple[int, int]:
    """Copy the local state to the remote store: (remote serial before, after; 0: none).

    Refused (StateConflictError) when the remote holds another state (lineage) or a newer
    one (higher serial): nothing is merged.
    """
    with remote.locked(project, command="dumont state push") as ledger:
        return _replace(ledger, local, "`dumont state pull`")


def pull_state(remote: RemoteBackend, local_path: Path, project: str | None) -> tuple[int, int]:
    """Copy the remote state into the local file: (local serial before, after; 0: none)."""
    source = remote.load(project)
    if not source.exists:
        raise StateError(
            f"there is no state at {remote.where} to pull",
            "apply with `backend: http` first, or `dumont state push` a local state",
        )
    with Ledger.locked(local_path, project, command="dumont state pull") as local:
        return _replace(local, source, "`dumont state push`")


def _replace(target: Ledger, source: Ledger, instead: str) -> tuple[int, int]:
    """Make `target` hold `source`'s state: (target's serial before, after). Refused when
    the target is another state (lineage) or newer (serial)."""
    before = target.state.serial if target.exists else 0
    if target.exists and source.state.lineage != target.state.lineage:
        raise StateConflictError(
            f"the state at {source.where} is another state than the one at {target.where} "
            f"(lineage {source.state.lineage} vs {target.state.lineage}); refusing to replace it",
            f"move one of them away first if you mean to replace it ({target.where})",
        )
    if target.exists and target.state.serial > source.state.serial:
        raise StateConflictError(
            f"the state at {target.where} is newer (serial {target.state.serial}) than the one "
            f"at {source.where} (serial {source.state.serial})",
            f"{instead} it instead, or move one of them away",
        )
    target.state = source.state.model_copy(deep=True)
    target.state.serial = max(source.state.serial, before)
    target.save()
    return before, target.state.serial
