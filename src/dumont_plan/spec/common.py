"""Shared pieces of the spec models."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

# `${kind.name.attr}` references (resolved at apply time) and `${secret.NAME}` secrets.
REF_RE = re.compile(r"\$\{\s*([A-Za-z_][\w-]*)\.([A-Za-z0-9_][\w-]*)(?:\.([A-Za-z_]\w*))?\s*\}")
NAME_RE = r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$"


class SpecModel(BaseModel):
    """Base of every model users write: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)


class Lifecycle(SpecModel):
    """Guards on how dumont may change a resource."""

    prevent_destroy: bool = Field(
        False, description="Refuse any plan that deletes or replaces this resource."
    )
    ignore_changes: list[str] = Field(
        default_factory=list,
        description="Fields whose changes in the spec are ignored after creation.",
    )
