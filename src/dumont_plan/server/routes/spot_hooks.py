"""`/api/v1/_local/market/*`: the spot market's test hook (only with test hooks enabled).

`POST /_local/market/price` sets the spot price of one offer's machine (a price spike a test
schedules): a spot instance there whose bid it outbids is interrupted at the next reconciler
pass. `price: null` clears it; `seconds` bounds it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from dumont_plan.server.context import StateDep
from dumont_plan.server.limits import MAX_INT
from dumont_plan.server.provider.instances import market_of
from dumont_plan.server.provider.spot_market import set_override

router = APIRouter(prefix="/_local/market", tags=["local test hooks"], include_in_schema=False)


class PriceOverride(BaseModel):
    offer_id: int = Field(ge=0, le=MAX_INT)
    price: float | None = Field(ge=0, le=1000, allow_inf_nan=False)
    seconds: float | None = Field(None, gt=0, allow_inf_nan=False)


@router.post("/price")
def set_price(body: PriceOverride, state: StateDep) -> dict[str, Any]:
    if market_of(state).by_offer(body.offer_id) is None:
        raise HTTPException(404, f"Offer {body.offer_id} not found")
    set_override(state, body.offer_id, body.price, body.seconds)
    return {"offer_id": body.offer_id, "price": body.price, "seconds": body.seconds}
