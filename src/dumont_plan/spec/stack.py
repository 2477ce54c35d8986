"""The Stack: one project's resources, merged from one or more spec files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from dumont_plan.spec.common import SpecModel
from dumont_plan.spec.instance import InstanceSpec
from dumont_plan.spec.job import JobSpec

# Spec section -> (address prefix, model). The reserved sections arrive with their features.
KINDS: dict[str, tuple[str, type[SpecModel]]] = {
    "jobs": ("job", JobSpec),
    "instances": ("instance", InstanceSpec),
}
RESERVED_KINDS = ("finetunes", "serverless", "spot_templates", "spot_deployments")


class VariableSpec(SpecModel):
    """A variable usable as `{{ var.NAME }}`."""

    default: Any = Field(None, description="Value when not set by DUMONT_VAR_*, --var-file, --var.")
    description: str | None = Field(None, description="What the variable is for.")


class Defaults(SpecModel):
    """Values applied to every resource of a kind unless it sets them itself."""

    job: dict[str, Any] = Field(default_factory=dict, description="Defaults for every job.")
    instance: dict[str, Any] = Field(
        default_factory=dict, description="Defaults for every instance."
    )


class StackSpec(SpecModel):
    """The top level of dumont.yaml / dumontfile."""

    version: int = Field(1, ge=1, le=1, description="Spec format version (1).")
    project: str = Field(..., min_length=1, description="Project name; prefixes remote names.")
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    instances: dict[str, InstanceSpec] = Field(default_factory=dict)


@dataclass(frozen=True)
class Resource:
    """One declared resource: its address (`job.train`), kind section, name and spec."""

    kind: str  # address prefix: "job", "instance"
    name: str
    spec: BaseModel
    source: str = ""  # file:line where it was declared
    refs: tuple[str, ...] = ()  # addresses it references (`${kind.name.attr}`) or depends on

    @property
    def address(self) -> str:
        return f"{self.kind}.{self.name}"


@dataclass
class Stack:
    """The validated desired state."""

    project: str
    resources: dict[str, Resource] = field(default_factory=dict)  # by address
    files: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.kind == kind]
