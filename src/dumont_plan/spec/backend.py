"""`backend:`: where the state (the ledger) lives. `local` (the default) or `http`.

    backend:
      type: http                      # Terraform's HTTP backend protocol
      address: https://gitlab.example.com/api/v4/projects/42/terraform/state/prod
      lock_address: https://gitlab.example.com/api/v4/projects/42/terraform/state/prod/lock
      unlock_address: https://gitlab.example.com/api/v4/projects/42/terraform/state/prod/lock
      lock_method: POST
      unlock_method: DELETE
      username: ana                   # the password/token: --backend-config or environment

`type: http` without `address` is the current Dumont API's own `/api/v1/state/<project>`,
with the user's token. Secrets never go in the spec (it is committed): `password` and `token`
come from `--backend-config KEY=VALUE` or `DUMONT_BACKEND_PASSWORD` / `DUMONT_BACKEND_TOKEN`.
The block is read as written (no `{{ }}` templates), like Terraform's backend block.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from dumont_plan.spec.common import SpecModel

METHOD_RE = r"^[A-Z][A-Z-]{0,19}$"
URL_RE = r"^https?://[^\s{}]+$"
SECRET_KEYS = ("password", "token")
SECRET_HINT = (
    "pass it with `--backend-config {key}=...` or the DUMONT_BACKEND_{upper} environment "
    "variable: the spec is committed"
)


class BackendSpec(SpecModel):
    """Where the state lives: this folder's `.dumont/state.json`, or a remote HTTP backend."""

    type: Literal["local", "http"] = Field(
        "local",
        description=(
            "`local`: `.dumont/state.json` beside the spec (or `path`); `http`: Terraform's "
            "HTTP backend protocol (the Dumont API's `/api/v1/state/<project>` by default, "
            "or `address`), shared by every checkout and locked remotely."
        ),
    )
    path: str | None = Field(
        None, description="`local` only: the state file, relative to the spec's folder."
    )
    address: str | None = Field(
        None,
        pattern=URL_RE,
        description=(
            "`http`: the state's URL (GET/POST). Default: the Dumont API's "
            "`/api/v1/state/<project>`."
        ),
    )
    lock_address: str | None = Field(
        None, pattern=URL_RE, description="`http`: the lock's URL (default: `address`)."
    )
    unlock_address: str | None = Field(
        None, pattern=URL_RE, description="`http`: the unlock URL (default: `lock_address`)."
    )
    lock_method: str = Field("LOCK", pattern=METHOD_RE, description="HTTP method that locks.")
    unlock_method: str = Field("UNLOCK", pattern=METHOD_RE, description="HTTP method that unlocks.")
    update_method: str = Field(
        "POST", pattern=METHOD_RE, description="HTTP method that stores the state."
    )
    username: str | None = Field(
        None, description="HTTP basic auth user (the password comes from the environment)."
    )
    retry_max: int = Field(2, ge=0, le=10, description="Retries of a failed request.")
    retry_wait_min: float = Field(
        1.0, ge=0, le=60, description="Seconds before the first retry (doubling after)."
    )
    retry_wait_max: float = Field(30.0, ge=0, le=600, description="Longest wait between retries.")

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in SECRET_KEYS:
                if key in data:
                    raise ValueError(
                        f"`{key}` does not belong in the spec; "
                        + SECRET_HINT.format(key=key, upper=key.upper())
                    )
        return data

    @model_validator(mode="after")
    def _kind_keys(self) -> BackendSpec:
        if self.type == "local":
            extra = [k for k in self.model_fields_set if k not in ("type", "path")]
            if extra:
                raise ValueError(
                    f"{', '.join(sorted(extra))} only apply to `type: http`; set "
                    "`type: http` or remove them"
                )
        elif self.path is not None:
            raise ValueError("`path` only applies to `type: local`")
        return self
