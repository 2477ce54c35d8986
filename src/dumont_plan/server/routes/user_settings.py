"""`/api/v1/settings`: the account's settings and its provider key (contract §2.3).

The real platform keeps the provider key (`vast_api_key`) per user and returns it in clear on
GET. This control plane has no real provider: it keeps only that a key was set
(`vast_api_key_set` in the user's settings, shown by `/auth/me`), never the key, and answers GET
with `vast_api_key: null`. A simulated provider without a server key (`--provider no-key`)
then serves that user's instances and jobs, as the real server does with a user's key.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from dumont_plan.server.context import StateDep, UserDep
from dumont_plan.server.limits import TEXT_MAX
from dumont_plan.server.store import dumps

KEY_SET = "vast_api_key_set"

router = APIRouter(prefix="/settings", tags=["settings"])


class UpdateSettingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    vast_api_key: str | None = Field(
        None, min_length=1, max_length=TEXT_MAX, description="The provider key (not stored here)."
    )
    settings: dict[str, Any] | None = Field(None, description="Settings to merge in.")


@router.get("")
def get_settings(user: UserDep) -> dict[str, Any]:
    """The account's settings; `vast_api_key` is never returned (null)."""
    return {"vast_api_key": None, "settings": user.settings}


@router.put("")
def put_settings(body: UpdateSettingsRequest, user: UserDep, state: StateDep) -> dict[str, Any]:
    """Merge `settings` into the account's and record that a provider key was set."""
    merged = {**user.settings, **(body.settings or {})}
    merged.pop(KEY_SET, None)
    if body.vast_api_key is not None or user.settings.get(KEY_SET):
        merged[KEY_SET] = True
    with state.store.tx() as conn:
        conn.execute("UPDATE users SET settings = ? WHERE id = ?", (dumps(merged), user.id))
    return {"success": True, "message": "Settings updated successfully"}
