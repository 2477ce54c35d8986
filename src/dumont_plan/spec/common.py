"""Shared pieces of the spec models: the base model, lifecycle, and the name rules."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

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

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """`num_nodes: true` is a mistake, not 1 (pydantic's lax mode reads a bool as 0/1)."""
        if isinstance(value, bool) and info.field_name is not None:
            kind = _numeric_fields(cls).get(info.field_name)
            if kind is not None:
                raise PydanticCustomError(kind, "a boolean is not a number")
        return value


def _numeric_fields(model: type[BaseModel]) -> dict[str, str]:
    """The fields of `model` that take only a number: name -> the error type a bool gets
    (`int_type` or `float_type`, worded by `spec.messages`); cached on the class."""
    found: dict[str, str] | None = model.__dict__.get("_dumont_numeric")
    if found is None:
        found = {}
        for name, info in model.model_fields.items():
            args = typing.get_args(info.annotation) if typing.get_origin(info.annotation) else ()
            kinds = set(args or (info.annotation,)) - {type(None)}
            if kinds and kinds <= {int, float}:
                found[name] = "int_type" if kinds == {int} else "float_type"
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
