"""The spec's JSON Schema and its Markdown reference, both generated from the models.

    stack_json_schema()     what `dumont schema` prints and schemas/dumont.schema.json holds
    spec_reference()        the README's spec reference (between the spec-reference markers)

Both are pure; `scripts/gen-spec` writes them, and tests fail when the committed copies are stale.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from dumont_plan.spec.backend import BackendSpec
from dumont_plan.spec.common import Lifecycle
from dumont_plan.spec.finetune import FinetuneConfigSpec, FinetuneSpec
from dumont_plan.spec.instance import InstanceSpec
from dumont_plan.spec.job import JobSpec
from dumont_plan.spec.schedule import JobScheduleSpec
from dumont_plan.spec.serverless import ServerlessSpec, WebhookSpec
from dumont_plan.spec.serverless_endpoint import ServerlessEndpointSpec
from dumont_plan.spec.spot import SpotDeploymentSpec, SpotTemplateSpec
from dumont_plan.spec.stack import Defaults, StackSpec, VariableSpec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
TEMPLATE_STRING = {
    "type": "string",
    "pattern": r"\{\{",
    "description": "A Jinja2 template such as {{ var.n }}, rendered while loading.",
}
MARK_START = "<!-- spec-reference:start -->"
MARK_END = "<!-- spec-reference:end -->"


def _allow_templates(prop: dict[str, Any]) -> dict[str, Any]:
    """A number, boolean or choice may also be written as a `{{ ... }}` template."""
    if prop.get("type") in ("integer", "number", "boolean") or "enum" in prop:
        keep: dict[str, Any] = {
            k: prop.pop(k) for k in ("description", "default", "title") if k in prop
        }
        return {**keep, "anyOf": [prop, TEMPLATE_STRING]}
    return prop


def stack_json_schema() -> dict[str, Any]:
    """The JSON Schema of dumont.yaml (draft 2020-12), with every field's description."""
    schema = StackSpec.model_json_schema()
    defs = schema.get("$defs", {})
    for model in defs.values():
        for name, prop in list(model.get("properties", {}).items()):
            model["properties"][name] = _allow_templates(prop)
    for name, prop in list(schema.get("properties", {}).items()):
        schema["properties"][name] = _allow_templates(prop)
    defaults = defs.get("Defaults", {}).get("properties", {})
    for key, target in (("job", "JobSpec"), ("instance", "InstanceSpec")):
        if key in defaults:
            defaults[key] = {
                "description": defaults[key].get("description", ""),
                "$ref": f"#/$defs/{target}",
            }
    schema.pop("title", None)
    # `project` is required in one file of a stack, not in each: an editor checks one file at
    # a time, and the other files of a multi-file stack (examples/multi) must not be flagged.
    # The loader checks it across the files.
    required = [r for r in schema.pop("required", []) if r != "project"]
    if required:
        schema["required"] = required
    return {"$schema": SCHEMA_DIALECT, "title": "dumont.yaml / dumontfile", **schema}


def schema_text() -> str:
    """The schema as committed in schemas/dumont.schema.json."""
    return json.dumps(stack_json_schema(), indent=2, ensure_ascii=False) + "\n"


# -- Markdown reference --------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner)
    if origin is list:
        return f"list of {_type_name(args[0])}s" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    names = {int: "integer", float: "number", bool: "boolean", str: "string"}
    return names.get(annotation, "any")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "-"
    return f"`{json.dumps(value)}`"


def _table(model: type[BaseModel]) -> list[str]:
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(
            f"| `{name}` | {_type_name(info.annotation)} | {_default(info)} | {description} |"
        )
    return rows


SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("Top level", StackSpec),
    ("`variables.<name>`", VariableSpec),
    ("`defaults`", Defaults),
    ("`jobs.<name>` (address `job.<name>`)", JobSpec),
    ("`instances.<name>` (address `instance.<name>`)", InstanceSpec),
    ("`serverless.<name>` (address `serverless.<name>`)", ServerlessSpec),
    ("`webhook` (in a serverless policy)", WebhookSpec),
    (
        "`serverless_endpoints.<name>` (address `serverless_endpoint.<name>`)",
        ServerlessEndpointSpec,
    ),
    ("`spot_templates.<name>` (address `spot_template.<name>`)", SpotTemplateSpec),
    ("`spot_deployments.<name>` (address `spot_deployment.<name>`)", SpotDeploymentSpec),
    ("`finetunes.<name>` (address `finetune.<name>`)", FinetuneSpec),
    ("`config` (in a fine-tune)", FinetuneConfigSpec),
    ("`schedule` (in a job)", JobScheduleSpec),
    ("`lifecycle` (in any resource)", Lifecycle),
    ("`backend`", BackendSpec),
]


INTRO = """\
Generated from the spec models by `scripts/gen-spec`; `dumont schema` prints the JSON Schema
(`schemas/dumont.schema.json`, referenced by the examples' `yaml-language-server` modeline).

- **Files**: `-f PATH` (repeatable; a folder means its `*.yaml`, `*.yml` and `dumontfile`), else
  `dumont.yaml`, `dumont.yml` or `dumontfile` here. Several files make one stack: one `project`,
  no address declared twice. `dumont validate` checks them offline; `dumont fmt` tidies them
  (`dumont fmt --check` changes nothing and exits 1 listing the files that need it).
- **Variables**: `{{ var.NAME }}` and `{{ env.NAME }}` are Jinja2 (undefined names are errors)
  in any string value. Later wins: `variables.NAME.default` < `DUMONT_VAR_NAME` < `--var-file F`
  < `--var NAME=VALUE`. A value that is a single `{{ ... }}` keeps its type:
  `num_gpus: "{{ var.n }}"` is an integer when `n` is.
- **Defaults**: `defaults.job` / `defaults.instance` apply to every job / instance that does not
  set the field itself.
- **References**: `${job.NAME.ATTR}` / `${instance.NAME.ATTR}` (or `${jobs...}`, `${instances...}`)
  in any string are filled at apply time and order the apply, as `depends_on: [job.NAME]` does.
  Job attributes: {job_attrs}; instance attributes: {instance_attrs}; spot template
  attributes: {spot_template_attrs}; spot deployment attributes: {spot_deployment_attrs};
  fine-tune attributes: {finetune_attrs}.
- **Datasets**: a fine-tune's `dataset` that names a local file is read relative to the spec
  file that declares it; its sha256 is part of the spec (`dataset_sha256`), so an edited file
  plans as "dataset changed" and re-runs as `run_policy` says. It is uploaded at apply.
- **Secrets**: `${secret.NAME}` is read only when a request is built: from `DUMONT_SECRET_NAME`
  or `NAME` in the environment, else `.dumont/secrets.env` beside the spec or
  `~/.config/dumont-plan/secrets.env` (`NAME=value` lines, mode 0600). It is never printed or
  stored; `dumont validate --check-secrets` checks that each one is set. A job also gets each
  secret it uses as an environment variable of the same name (`"$NAME"` in its command), and
  the local control plane shows its value as `***` in the job's log.
"""


def _attrs(model: Any) -> str:
    return ", ".join(f"`{a}`" for a in sorted(model.REF_ATTRS))


def spec_reference() -> str:
    """Markdown: how specs are read, then tables of every field from the models' descriptions."""
    lines = [
        INTRO.replace("{job_attrs}", ", ".join(f"`{a}`" for a in sorted(JobSpec.REF_ATTRS)))
        .replace("{instance_attrs}", ", ".join(f"`{a}`" for a in sorted(InstanceSpec.REF_ATTRS)))
        .replace("{spot_template_attrs}", _attrs(SpotTemplateSpec))
        .replace("{spot_deployment_attrs}", _attrs(SpotDeploymentSpec))
        .replace("{finetune_attrs}", _attrs(FinetuneSpec))
        .rstrip("\n")
    ]
    for title, model in SECTIONS:
        doc = (model.__doc__ or "").strip().splitlines()[0]
        lines += ["", f"### {title}", "", doc, "", *_table(model)]
    return "\n".join(lines) + "\n"


def replace_between_markers(text: str, body: str) -> str:
    """`text` with the part between the spec-reference markers replaced by `body`."""
    start = text.index(MARK_START) + len(MARK_START)
    end = text.index(MARK_END)
    return text[:start] + "\n" + body + text[end:]
