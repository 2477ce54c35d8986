"""`spot_template.*`: a snapshot of an instance's workspace, the seed of spot deployments.

Made once, never changed: the API has no update, so any field change makes a new template
(and so new deployments from it). Its `instance` is usually `${instance.NAME.id}`: a replaced
instance is a new id, hence a new template.

    instance, region, workspace_path    -> replace (a new snapshot)
    template deleted outside dumont     -> create
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from dumont_plan.kinds.base import BaseHandler, FieldClass
from dumont_plan.spec.spot import SpotTemplateSpec
from dumont_plan.wire_models import Offer, WireModel
from dumont_plan.wire_models.spot import SpotTemplate

_R, _C, _O = FieldClass.replace, FieldClass.control, FieldClass.output

SPOT_TEMPLATE_FIELDS: dict[str, FieldClass] = {
    "instance": _R,
    "region": _R,
    "workspace_path": _R,
    "depends_on": _C,
    "lifecycle": _C,
    "id": _O,
    "instance_id": _O,
    "gpu_name": _O,
    "size_bytes": _O,
    "snapshot_path": _O,
    "created_at": _O,
}


class SpotTemplateHandler(BaseHandler[SpotTemplate]):
    kind: ClassVar[str] = "spot_template"
    section: ClassVar[str] = "spot_templates"
    spec_model: ClassVar[type[BaseModel]] = SpotTemplateSpec
    live_model: ClassVar[type[WireModel]] = SpotTemplate
    fields: ClassVar[dict[str, FieldClass]] = SPOT_TEMPLATE_FIELDS
    unset_is_any: ClassVar[frozenset[str]] = frozenset({"region"})
    notes: ClassVar[dict[str, str]] = {
        "instance": "`${instance.NAME.id}`: a replaced instance makes a new template",
        "region": "unset: the instance's own region, never diffed",
        "id": "the template id (`spot_tpl_<instance>_<time>`) deployments restore",
    }

    def live_id(self, live: SpotTemplate) -> str:
        return live.template_id

    def live_name(self, live: SpotTemplate) -> str | None:
        return None  # templates carry no name: an interrupted create is not adopted

    def live_created(self, live: SpotTemplate) -> str:
        return live.created_at or ""

    def status(self, live: SpotTemplate) -> str:
        return "ready"

    def live_values(self, live: SpotTemplate) -> dict[str, Any]:
        echoed = {
            "instance": live.instance_id,
            "region": live.region,
            "workspace_path": live.workspace_path,
        }
        return {k: v for k, v in echoed.items() if v is not None}

    def observed_view(self, live: SpotTemplate | None) -> dict[str, Any]:
        if live is None:
            return {"present": False}
        return {"present": True, "id": live.template_id, **self.live_values(live)}

    def normalize(self, field: str, value: Any) -> Any:
        if field == "instance" and isinstance(value, int | str) and not isinstance(value, bool):
            return str(value).strip()
        if field == "region" and isinstance(value, str):
            return value.strip().casefold()
        return value

    def describe(self, values: Mapping[str, Any]) -> str:
        region = values.get("region") or "the instance's region"
        return f"snapshot of {values.get('workspace_path') or '/workspace'}, {region}"

    def hourly_price(self, values: Mapping[str, Any], offers: Sequence[Offer]) -> float | None:
        """A template is a stored snapshot: nothing billed by the hour."""
        return 0.0

    def request_body(self, project: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}
