"""Shared pieces of the spec models: the base model, lifecycle, and the name rules."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

# `${kind.name.attr}` references (resolved at apply time) and `${secret.NAME}` secrets.
REF_RE = re.compile(r"\$\{\s*([A-Za-z_][\w-]*)\.([A-Za-z0-9_][\w-]*)(?:\.([A-Za-z_]\w*))?\s*\}")
# Resource and project names: they end up in remote names and addresses.
NAME_RE = r"^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$"
NAME_RULE = (
    "use 1-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit"
)
# Variable names: usable as `{{ var.NAME }}`.
VAR_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Secret names: usable as `${secret.NAME}` and as environment variable names.
SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpecModel(BaseModel):
    """Base of every model users write: unknown keys are errors.

    `coerce_numbers_to_str`: YAML reads `image: 12.1` or `gpu_type: 4090` as numbers; a string
    field takes them as the text the user wrote rather than failing.
    """

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        validate_default=True,
        coerce_numbers_to_str=True,
    )


class Lifecycle(SpecModel):
    """Guards on how dumont may change a resource."""

    prevent_destroy: bool = Field(
        False, description="Refuse any plan that deletes or replaces this resource."
    )
    ignore_changes: list[str] = Field(
        default_factory=list,
        description="Fields whose changes in the spec are ignored after creation.",
    )
