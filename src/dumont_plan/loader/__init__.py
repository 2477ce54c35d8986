"""Spec files -> Stack: discovery, YAML with marks, Jinja2 variables, validation, references.

The one home of PyYAML and Jinja2 (DESIGN §1). Every problem is a SpecError located at the
`file:line:col` of what the user wrote; `load_stack` reports all of them at once (SpecErrors).
"""

from dumont_plan.loader.build import load_backend, load_stack
from dumont_plan.loader.inputs import DEFAULT_FILES, discover, display_path, parse_var_args
from dumont_plan.loader.yamlmarks import Doc, parse_yaml

__all__ = [
    "DEFAULT_FILES",
    "Doc",
    "discover",
    "display_path",
    "load_backend",
    "load_stack",
    "parse_var_args",
    "parse_yaml",
]
