"""What users write: pydantic models per kind, and the Stack that holds them.

`JobSpec` is what a user writes; `Job` (a dict from the API) is what the server reports.
"""

from dumont_plan.spec.common import Lifecycle, SpecModel
from dumont_plan.spec.instance import InstanceSpec
from dumont_plan.spec.job import JobSpec
from dumont_plan.spec.stack import (
    KINDS,
    RESERVED_KINDS,
    Defaults,
    Resource,
    Stack,
    StackSpec,
    VariableSpec,
    remote_name,
)

__all__ = [
    "KINDS",
    "RESERVED_KINDS",
    "Defaults",
    "InstanceSpec",
    "JobSpec",
    "Lifecycle",
    "Resource",
    "SpecModel",
    "Stack",
    "StackSpec",
    "VariableSpec",
    "remote_name",
]
