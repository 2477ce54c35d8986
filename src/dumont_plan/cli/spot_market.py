"""What the spot commands know of the market: GPU and region names, with did-you-mean.

The sprint writes GPUs without a space (`--gpu=RTX4090`); the market spells them `RTX 4090`.
A typed name is matched to the market's own spelling ignoring case, spaces and dashes; a name
the market does not know is one line naming the closest one (`offers.MarketNames`). The names
come from the offers (`client.spot.market_offers`); a server with no offers leaves names as
typed.
"""

from __future__ import annotations

from dumont_plan.client import DumontClient
from dumont_plan.errors import ApiError
from dumont_plan.offers import MARKET_FILTERS, MarketNames


def read_market(client: DumontClient) -> MarketNames:
    """The market's names (an API error leaves them empty: names pass as typed)."""
    try:
        return MarketNames.of(client.spot.market_offers(MARKET_FILTERS))
    except ApiError:
        return MarketNames()


def resolve_names(
    client: DumontClient, where: str, *, gpu: str | None = None, region: str | None = None
) -> tuple[str | None, str | None]:
    """`gpu` in the market's spelling and `region` checked, reading the market only when one
    of them is given."""
    if gpu is None and region is None:
        return None, None
    market = read_market(client)
    return (
        market.gpu(gpu, where) if gpu is not None else None,
        market.region(region, where) if region is not None else None,
    )
