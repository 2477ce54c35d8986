"""Shared pieces of the spec models: the base model, lifecycle, and the name rules."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, data: Any) -> Any:
        """`num_nodes: true` is a mistake, not 1 (pydantic's lax mode reads a bool as 0/1): a
        bool given to a number field becomes a `WrittenBool`, which no number parses. One call
        per model, not per field: the plan validates thousands."""
        if not isinstance(data, dict):
            return data
        for value in data.values():
            if value is True or value is False:
                break
        else:
            return data
        numeric = _numeric_fields(cls)
        return {
            key: WrittenBool(str(value).lower())
            if (value is True or value is False) and key in numeric
            else value
            for key, value in data.items()
        }


class WrittenBool(str):
    """A YAML `true`/`false` where a number goes: fails int and float parsing, and the error
    shows it as written (`expected an integer, got true`, `spec.messages.show`)."""

    __slots__ = ()


def _numeric_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that take only a number (cached on the class)."""
    found: frozenset[str] | None = model.__dict__.get("_dumont_numeric")
    if found is None:
        names = set()
        for name, info in model.model_fields.items():
            args = typing.get_args(info.annotation) if typing.get_origin(info.annotation) else ()
            kinds = set(args or (info.annotation,)) - {type(None)}
            if kinds and kinds <= {int, float}:
                names.add(name)
        found = frozenset(names)
        type.__setattr__(model, "_dumont_numeric", found)
    return found


class Lifecycle(SpecModel):
    """Guards on how dumont may change a resource."""

    prevent_destroy: bool = Field(
        False, description="Refuse any plan that deletes or replaces this resource."
    )
    ignore_changes: list[str] = Field(
        default_factory=list,
        description="Fields whose changes in the spec are ignored after creation.",
    )
