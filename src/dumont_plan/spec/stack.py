"""The Stack: one project's resources, merged from one or more spec files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from dumont_plan.spec.backend import BackendSpec
from dumont_plan.spec.common import NAME_RE, VAR_NAME_RE, SpecModel
from dumont_plan.spec.finetune import FinetuneSpec
from dumont_plan.spec.instance import InstanceSpec
from dumont_plan.spec.job import JobSpec
from dumont_plan.spec.serverless import ServerlessSpec
from dumont_plan.spec.serverless_endpoint import ServerlessEndpointSpec
from dumont_plan.spec.spot import SpotDeploymentSpec, SpotTemplateSpec

# Spec section -> (address prefix, model). The reserved sections arrive with their features.
KINDS: dict[str, tuple[str, type[SpecModel]]] = {
    "jobs": ("job", JobSpec),
    "instances": ("instance", InstanceSpec),
    "serverless": ("serverless", ServerlessSpec),
    "spot_templates": ("spot_template", SpotTemplateSpec),
    "spot_deployments": ("spot_deployment", SpotDeploymentSpec),
    "finetunes": ("finetune", FinetuneSpec),
    "serverless_endpoints": ("serverless_endpoint", ServerlessEndpointSpec),
}
RESERVED_KINDS: tuple[str, ...] = ()


ResourceName = Annotated[str, StringConstraints(pattern=NAME_RE)]
VariableName = Annotated[str, StringConstraints(pattern=VAR_NAME_RE)]
REMOTE_NAME_MAX = 100
_SORTED_JSON = json.JSONEncoder(sort_keys=True)  # json.dumps(..., sort_keys=True), built once


class VariableSpec(SpecModel):
    """A variable usable as `{{ var.NAME }}`."""

    default: Any = Field(
        None,
        description=(
            "Value when not set otherwise; `DUMONT_VAR_NAME`, then `--var-file`, then "
            "`--var NAME=VALUE` override it, in that order."
        ),
    )
    description: str | None = Field(None, description="What the variable is for.")


class Defaults(SpecModel):
    """Values applied to every resource of a kind unless it sets them itself."""

    job: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of `jobs.*` applied to every job that does not set them.",
    )
    instance: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of `instances.*` applied to every instance that does not set them.",
    )


class StackSpec(SpecModel):
    """The top level of dumont.yaml / dumontfile."""

    version: int = Field(1, ge=1, le=1, description="Spec format version (1).")
    project: ResourceName = Field(
        ...,
        description=(
            "Project name (lowercase letters, digits, `-`, `_`); prefixes the remote name of "
            "every resource. Required in one of the files."
        ),
    )
    variables: dict[VariableName, VariableSpec] = Field(
        default_factory=dict,
        description="Variables used as `{{ var.NAME }}` in any string value.",
    )
    backend: BackendSpec | None = Field(
        None,
        description=(
            "Where the state lives: `{type: local}` (default, `.dumont/state.json`) or "
            "`{type: http, ...}` (remote, locked, shared by every checkout)."
        ),
    )
    defaults: Defaults = Field(
        default_factory=Defaults,
        description="Fields applied to every resource of a kind (`job`, `instance`).",
    )
    jobs: dict[ResourceName, JobSpec] = Field(
        default_factory=dict, description="Jobs by name; the address of `train` is `job.train`."
    )
    instances: dict[ResourceName, InstanceSpec] = Field(
        default_factory=dict,
        description="Instances by name; the address of `devbox` is `instance.devbox`.",
    )
    serverless: dict[ResourceName, ServerlessSpec] = Field(
        default_factory=dict,
        description=(
            "Serverless policies by name, one per instance; the address of `devbox` is "
            "`serverless.devbox`."
        ),
    )
    spot_templates: dict[ResourceName, SpotTemplateSpec] = Field(
        default_factory=dict,
        description=(
            "Spot templates (workspace snapshots) by name; the address of `base` is "
            "`spot_template.base`."
        ),
    )
    spot_deployments: dict[ResourceName, SpotDeploymentSpec] = Field(
        default_factory=dict,
        description=(
            "Spot deployments by name; the address of `worker` is `spot_deployment.worker`."
        ),
    )
    finetunes: dict[ResourceName, FinetuneSpec] = Field(
        default_factory=dict,
        description="Fine-tunes by name; the address of `chat` is `finetune.chat`.",
    )
    serverless_endpoints: dict[ResourceName, ServerlessEndpointSpec] = Field(
        default_factory=dict,
        description=(
            "Serverless endpoints by name; the address of `api` is `serverless_endpoint.api`."
        ),
    )


@dataclass(frozen=True)
class Resource:
    """One declared resource: its address (`job.train`), kind section, name and spec.

    `refs` holds the addresses (normalised, sorted, no duplicates, never `secret.*`) this
    resource needs applied first: every `${kind.name.attr}` in its values plus `depends_on`.
    """

    kind: str  # address prefix: "job", "instance"
    name: str
    spec: BaseModel
    source: str = ""  # file:line where it was declared
    refs: tuple[str, ...] = ()  # addresses it references (`${kind.name.attr}`) or depends on

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.name}"

    def spec_dict(self) -> dict[str, Any]:
        """The fields the user set (directly or through `defaults`), as plain data."""
        return self.spec.model_dump(mode="json", exclude_unset=True)


@dataclass
class Stack:
    """The validated desired state."""

    project: str
    resources: dict[str, Resource] = field(default_factory=dict)  # by address
    files: list[str] = field(default_factory=list)  # as displayed in messages
    root: Path = field(default_factory=Path)  # folder of the first file: `.dumont/` lives here
    variables: dict[str, Any] = field(default_factory=dict)  # resolved values
    backend: BackendSpec | None = None  # the `backend:` block (None: local)
    warnings: list[str] = field(default_factory=list)  # printed by the CLI, never fatal

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.kind == kind]

    def graph(self) -> dict[str, list[str]]:
        """Address -> the addresses it depends on (the input of spec.graph)."""
        return {address: list(r.refs) for address, r in self.resources.items()}

    def dumps(self) -> dict[str, dict[str, Any]]:
        """address -> the resource's spec as JSON data (`model_dump(mode="json")`)."""
        return {address: r.spec.model_dump(mode="json") for address, r in self.resources.items()}

    def digest(self, dumps: Mapping[str, dict[str, Any]] | None = None) -> str:
        """sha256 of the rendered resources (secret references as written, never values).

        `dumps`: what `dumps()` returns, when the caller has it already."""
        dumps = self.dumps() if dumps is None else dumps
        body = {address: dumps[address] for address in sorted(self.resources)}
        text = _SORTED_JSON.encode({"project": self.project, "resources": body})
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def remote_name(project: str, kind: str, name: str) -> str:
    """The name a resource carries on the server: `<project>-<name>`, at most 100 characters.

    Stable for a given project and name (the engine adopts objects by it after a crash). `kind`
    is accepted for kinds that may need it later; jobs and instances live on separate endpoints,
    so it is not part of the name. Over 100 characters, the name is cut and a hash keeps it unique.
    """
    del kind
    full = f"{project}-{name}"
    if len(full) <= REMOTE_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: REMOTE_NAME_MAX - 9]}-{digest}"
