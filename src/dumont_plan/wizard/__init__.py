"""The deploy wizard: a multi-start race over `/api/v1/instances`, run on the client (§4).

    result = run_race(client, WizardRequest(gpu_name="RTX 4090", speed_tier="fast"),
                      on_event=print)

`dumont_plan.offers`: what to race for (`WizardRequest`) and which offers qualify
(`select_offers`), outside this package because the planner prices instances with it and must
not load the client; race.py: the race itself (`run_race`, how it works in its docstring);
model.py: the `RaceEvent`s it reports and its `RaceResult`.
"""

from dumont_plan.offers import (
    OFFER_LIMIT,
    PROBLEMATIC_MIN_ATTEMPTS,
    PROBLEMATIC_SUCCESS_RATE,
    REGION_COUNTRIES,
    REGION_QUERY,
    REGIONS,
    SPEED_TIERS,
    Selection,
    WizardRequest,
    active_blacklist,
    country_of,
    epoch_of,
    is_problematic,
    no_offers_error,
    select_offers,
)
from dumont_plan.wizard.model import (
    Candidate,
    CandidateState,
    EventKind,
    EventSink,
    RaceEvent,
    RaceResult,
)
from dumont_plan.wizard.race import (
    LOSER_REASON,
    TIMEOUT_REASON,
    BlacklistLike,
    InstancesLike,
    RaceAPI,
    run_race,
)

__all__ = [
    "LOSER_REASON",
    "OFFER_LIMIT",
    "PROBLEMATIC_MIN_ATTEMPTS",
    "PROBLEMATIC_SUCCESS_RATE",
    "REGIONS",
    "REGION_COUNTRIES",
    "REGION_QUERY",
    "SPEED_TIERS",
    "TIMEOUT_REASON",
    "BlacklistLike",
    "Candidate",
    "CandidateState",
    "EventKind",
    "EventSink",
    "InstancesLike",
    "RaceAPI",
    "RaceEvent",
    "RaceResult",
    "Selection",
    "WizardRequest",
    "active_blacklist",
    "country_of",
    "epoch_of",
    "is_problematic",
    "no_offers_error",
    "run_race",
    "select_offers",
]
