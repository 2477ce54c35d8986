"""Which state backend a command uses: `--state`, else the spec's `backend:` block, with
`DUMONT_BACKEND_<KEY>` and `dumont --backend-config KEY=VALUE` on top (in that order).

    backend = open_backend(ctx, stack=stack, state=state, files=files)
    with closing(backend): ledger = backend.load(stack.project)

`--state PATH` is always the local file. `type: http` without `address` is the current API's
`/api/v1/state/<project>` (its `state.http-backend` capability is checked first: a server
without it would answer 404, which the protocol reads as "no state"), reached with the
user's own token. The password and token come only from the environment or
`--backend-config`; they are never printed (addresses are shown without credentials).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError

from dumont_plan.cli.output import err_console
from dumont_plan.errors import BackendError, DumontError

if TYPE_CHECKING:
    from dumont_plan.client.state_http import HttpStateSettings
    from dumont_plan.spec.backend import BackendSpec
    from dumont_plan.spec.stack import Stack
    from dumont_plan.state.backend import RemoteBackend, StateBackend

ENV_PREFIX = "DUMONT_BACKEND_"
SECRET_KEYS = ("password", "token")
CAPABILITY = "state.http-backend"


def config_args(ctx: typer.Context) -> list[str]:
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    return list(obj.get("backend_config") or [])


def _keys() -> set[str]:
    from dumont_plan.spec.backend import BackendSpec

    return set(BackendSpec.model_fields) | set(SECRET_KEYS)


def overrides(ctx: typer.Context, env: dict[str, str] | None = None) -> dict[str, str]:
    """`DUMONT_BACKEND_<KEY>` then `--backend-config KEY=VALUE` (the later wins)."""
    env = dict(os.environ) if env is None else env
    keys = _keys()
    found = {
        key: env[ENV_PREFIX + key.upper()] for key in keys if env.get(ENV_PREFIX + key.upper())
    }
    for item in config_args(ctx):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in keys:
            raise DumontError(
                f"--backend-config {key if key in keys else item.split('=')[0]!r}: expected "
                "KEY=VALUE with KEY one of " + ", ".join(sorted(keys)),
                "e.g. --backend-config address=https://... --backend-config username=ana",
            )
        found[key] = value
    return found


def resolve_spec(
    spec: BackendSpec | None, extra: dict[str, str]
) -> tuple[BackendSpec, dict[str, str]]:
    """The backend block with the overrides applied, and the secrets apart."""
    from dumont_plan.spec.backend import BackendSpec

    secrets = {k: extra[k] for k in SECRET_KEYS if k in extra}
    data: dict[str, Any] = spec.model_dump(exclude_unset=True) if spec is not None else {}
    data.update({k: v for k, v in extra.items() if k not in SECRET_KEYS})
    if "type" not in data and any(k not in ("path",) for k in data):
        data["type"] = "http"  # an address given on the command line means a remote backend
    try:
        return BackendSpec.model_validate(data), secrets
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise DumontError(
            f"backend {where + ': ' if where else ''}{first.get('msg')}",
            "fix the `backend:` block, DUMONT_BACKEND_* or --backend-config",
        ) from None  # the input may hold a credential


@dataclass(frozen=True)
class Resolved:
    """The backend settings of a command, before anything is opened."""

    spec: BackendSpec
    secrets: dict[str, str]
    project: str | None
    root: Path  # the spec's folder

    @property
    def local_path(self) -> Path:
        """The local state file (`path:` of a local backend, else .dumont/state.json)."""
        from dumont_plan.state.ledger import default_state_path

        if self.spec.type == "local" and self.spec.path is not None:
            return self.root / self.spec.path
        return default_state_path(self.root)


def resolve(ctx: typer.Context, stack: Stack | None, files: list[Path] | None) -> Resolved:
    """The spec's backend block (or none), the overrides, the project and the spec's folder."""
    from dumont_plan.loader import load_backend

    project: str | None
    if stack is not None:
        spec, project, root = stack.backend, stack.project, stack.root
    else:
        try:
            spec, project, root = load_backend(files or None, Path.cwd())
        except DumontError:
            if files:
                raise
            spec, project, root = None, None, Path.cwd()  # no spec here: the local default
    resolved, secrets = resolve_spec(spec, overrides(ctx))
    return Resolved(resolved, secrets, project, root)


def open_backend(
    ctx: typer.Context, *, stack: Stack | None, state: Path | None, files: list[Path] | None
) -> StateBackend:
    """The backend a command uses (see the module doc)."""
    from dumont_plan.state.backend import LocalBackend

    if state is not None:
        return LocalBackend(state)
    resolved = resolve(ctx, stack, files)
    if resolved.spec.type == "local":
        return LocalBackend(resolved.local_path)
    return _http_backend(ctx, resolved.spec, resolved.secrets, resolved.project)


def open_remote(ctx: typer.Context, resolved: Resolved) -> RemoteBackend:
    """The remote backend of `state push|pull`: the spec's `backend: http`, else the
    current Dumont API's own state."""
    spec, secrets = resolved.spec, resolved.secrets
    if spec.type == "local":
        spec, secrets = resolve_spec(None, {**overrides(ctx), "type": "http"})
    return _http_backend(ctx, spec, secrets, resolved.project)


def _http_backend(
    ctx: typer.Context, spec: BackendSpec, secrets: dict[str, str], project: str | None
) -> RemoteBackend:
    from dumont_plan.client.state_http import HttpStateSettings, HttpStateStore
    from dumont_plan.state.backend import RemoteBackend

    settings = HttpStateSettings(
        address=spec.address or "",
        lock_address=spec.lock_address,
        unlock_address=spec.unlock_address,
        lock_method=spec.lock_method,
        unlock_method=spec.unlock_method,
        update_method=spec.update_method,
        username=spec.username,
        password=secrets.get("password"),
        token=secrets.get("token"),
        retry_max=spec.retry_max,
        retry_wait_min=spec.retry_wait_min,
        retry_wait_max=max(spec.retry_wait_min, spec.retry_wait_max),
    )
    if spec.address:
        return RemoteBackend(HttpStateStore(settings), notice=_notice)
    return _own_api_backend(ctx, settings, project)


def _own_api_backend(
    ctx: typer.Context, settings: HttpStateSettings, project: str | None
) -> RemoteBackend:
    """The current Dumont API's `/api/v1/state/<project>`, with the user's token."""
    import dataclasses

    from dumont_plan.cli.session import open_client
    from dumont_plan.client.state_http import HttpStateStore
    from dumont_plan.state.backend import RemoteBackend

    if not project:
        raise DumontError(
            "`backend: {type: http}` without an address needs the spec's `project:`",
            "run the command beside the spec (or -f FILE), or set `backend: address:`",
        )
    client = open_client(ctx)
    try:
        base = str(client.transport.http.base_url).rstrip("/")
        capabilities = client.health().get("capabilities") or []
        if CAPABILITY not in capabilities:  # type: ignore[operator]
            raise BackendError(
                f"the Dumont API at {base} does not serve remote state (no `{CAPABILITY}` "
                "capability)",
                "set `backend: address:` to a Terraform HTTP backend (e.g. GitLab's "
                "/api/v4/projects/ID/terraform/state/NAME), or use the local control plane",
            )
    except BaseException:
        client.close()
        raise
    address = f"{base}/api/v1/state/{project}"
    settings = dataclasses.replace(settings, address=address, token=settings.token or client.token)
    store = HttpStateStore(
        settings,
        http=client.transport.http,
        own_http=True,
        reauthenticate=client.transport.reauthenticate,
    )
    return RemoteBackend(store, notice=_notice)


def _notice(text: str) -> None:
    err_console.print(text, markup=False, soft_wrap=True)
