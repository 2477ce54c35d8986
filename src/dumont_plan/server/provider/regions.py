"""Region vocabulary: the offers' region patterns (contract §3.5).

Offers are filtered by a region *string* that expands into alternatives matched against an
offer's `geolocation` (`"<place>, <CC>"`, e.g. `"Texas, US"`, `"Germany, DE"`):

- `global`, `any`, `all` or empty: no filter;
- a 2-letter country code (`DE`): that country (its code, or its name in the place part);
- a continent code `EU`, `NA`, `SA`, `AS`, `OC`, `AF` (these win over the country codes they
  spell: `SA` is South America), or a continent name (`europe`, `asia`, `north america`, ...):
  every member country;
- a US state code or name (`TX`, `texas`): that state in the US (country codes win: `CA` is
  Canada, `DE` Germany);
- anything else: a case-insensitive substring of the geolocation, as the real server does.

Unlike the real server (a raw substring test, where `DE` also hits `Sweden`), a country code is
compared with the country part of the geolocation. Several regions may be given separated by
commas (`US,CA`); an offer matching any of them passes (additive).
"""

from __future__ import annotations

from dataclasses import dataclass

# ISO 3166 code -> (name, continent code). Enough of the world for a simulated market and for
# users' inputs; unknown codes still work as substrings.
COUNTRIES: dict[str, tuple[str, str]] = {
    # North America
    "US": ("United States", "NA"),
    "CA": ("Canada", "NA"),
    "MX": ("Mexico", "NA"),
    "PA": ("Panama", "NA"),
    "CR": ("Costa Rica", "NA"),
    # South America
    "BR": ("Brazil", "SA"),
    "AR": ("Argentina", "SA"),
    "CL": ("Chile", "SA"),
    "CO": ("Colombia", "SA"),
    "PE": ("Peru", "SA"),
    "UY": ("Uruguay", "SA"),
    "EC": ("Ecuador", "SA"),
    "VE": ("Venezuela", "SA"),
    "PY": ("Paraguay", "SA"),
    "BO": ("Bolivia", "SA"),
    # Europe
    "DE": ("Germany", "EU"),
    "FR": ("France", "EU"),
    "NL": ("Netherlands", "EU"),
    "PL": ("Poland", "EU"),
    "SE": ("Sweden", "EU"),
    "GB": ("United Kingdom", "EU"),
    "IE": ("Ireland", "EU"),
    "ES": ("Spain", "EU"),
    "PT": ("Portugal", "EU"),
    "IT": ("Italy", "EU"),
    "BE": ("Belgium", "EU"),
    "LU": ("Luxembourg", "EU"),
    "CH": ("Switzerland", "EU"),
    "AT": ("Austria", "EU"),
    "CZ": ("Czechia", "EU"),
    "SK": ("Slovakia", "EU"),
    "HU": ("Hungary", "EU"),
    "RO": ("Romania", "EU"),
    "BG": ("Bulgaria", "EU"),
    "GR": ("Greece", "EU"),
    "DK": ("Denmark", "EU"),
    "NO": ("Norway", "EU"),
    "FI": ("Finland", "EU"),
    "IS": ("Iceland", "EU"),
    "EE": ("Estonia", "EU"),
    "LV": ("Latvia", "EU"),
    "LT": ("Lithuania", "EU"),
    "SI": ("Slovenia", "EU"),
    "HR": ("Croatia", "EU"),
    "RS": ("Serbia", "EU"),
    "UA": ("Ukraine", "EU"),
    "MD": ("Moldova", "EU"),
    "MT": ("Malta", "EU"),
    "CY": ("Cyprus", "EU"),
    # Asia
    "JP": ("Japan", "AS"),
    "SG": ("Singapore", "AS"),
    "KR": ("South Korea", "AS"),
    "IN": ("India", "AS"),
    "CN": ("China", "AS"),
    "HK": ("Hong Kong", "AS"),
    "TW": ("Taiwan", "AS"),
    "TH": ("Thailand", "AS"),
    "VN": ("Vietnam", "AS"),
    "MY": ("Malaysia", "AS"),
    "ID": ("Indonesia", "AS"),
    "PH": ("Philippines", "AS"),
    "IL": ("Israel", "AS"),
    "AE": ("United Arab Emirates", "AS"),
    "SA": ("Saudi Arabia", "AS"),
    "TR": ("Turkey", "AS"),
    "KZ": ("Kazakhstan", "AS"),
    "PK": ("Pakistan", "AS"),
    "BD": ("Bangladesh", "AS"),
    # Oceania
    "AU": ("Australia", "OC"),
    "NZ": ("New Zealand", "OC"),
    # Africa
    "ZA": ("South Africa", "AF"),
    "NG": ("Nigeria", "AF"),
    "KE": ("Kenya", "AF"),
    "EG": ("Egypt", "AF"),
    "MA": ("Morocco", "AF"),
    "GH": ("Ghana", "AF"),
    "TN": ("Tunisia", "AF"),
}

CONTINENTS: dict[str, str] = {
    "EU": "europe",
    "NA": "north america",
    "SA": "south america",
    "AS": "asia",
    "OC": "oceania",
    "AF": "africa",
}

US_STATES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa",
    "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi",
    "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire",
    "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York", "NC": "North Carolina",
    "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania",
    "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota", "TN": "Tennessee",
    "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia", "WA": "Washington",
    "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}  # fmt: skip

COUNTRY_ALIASES = {"UK": "GB"}

NO_FILTER = frozenset({"", "global", "any", "all"})


@dataclass(frozen=True)
class Alternative:
    """One way to match a geolocation: a country code and/or a substring of the place part."""

    country: str | None = None
    place: str | None = None
    anywhere: str | None = None  # substring of the whole geolocation (literal patterns)

    def matches(self, geolocation: str) -> bool:
        place, country = split_geolocation(geolocation)
        if self.anywhere is not None:
            return self.anywhere.lower() in geolocation.lower()
        if self.country is not None and country != self.country:
            return False
        return self.place is None or self.place.lower() in place.lower()


def split_geolocation(geolocation: str) -> tuple[str, str]:
    """`"Texas, US"` -> `("Texas", "US")`; a value without a comma is all place."""
    place, sep, country = geolocation.rpartition(",")
    if not sep:
        return geolocation.strip(), ""
    return place.strip(), country.strip().upper()


def _country(code: str) -> list[Alternative]:
    name = COUNTRIES[code][0]
    return [Alternative(country=code), Alternative(place=name)]


def _expand_one(text: str) -> list[Alternative] | None:
    word = text.strip()
    low = word.lower()
    if low in NO_FILTER:
        return None
    up = COUNTRY_ALIASES.get(word.upper(), word.upper())
    continent = up if up in CONTINENTS else None  # SA is South America, not Saudi Arabia
    if continent is None and len(word) == 2 and up in COUNTRIES:
        return _country(up)
    if continent is None:
        continent = next((c for c, name in CONTINENTS.items() if name == low), None)
    if continent is None and low == "asia":
        continent = "AS"
    if continent is not None:
        alternatives: list[Alternative] = []
        for code, (_, member_of) in COUNTRIES.items():
            if member_of == continent:
                alternatives.extend(_country(code))
        return alternatives
    if len(word) == 2 and up in US_STATES:
        return [Alternative(country="US", place=US_STATES[up])]
    state = next((name for name in US_STATES.values() if name.lower() == low), None)
    if state is not None:
        return [Alternative(country="US", place=state)]
    country = next((code for code, (name, _) in COUNTRIES.items() if name.lower() == low), None)
    if country is not None:
        return _country(country)
    return [Alternative(anywhere=word)]


def expand_region(region: str | None) -> list[Alternative] | None:
    """The alternatives a region string stands for; None means no filter at all."""
    if region is None:
        return None
    alternatives: list[Alternative] = []
    for part in region.split(","):
        expanded = _expand_one(part)
        if expanded is None:
            return None  # `global` anywhere in the list lifts the filter
        alternatives.extend(expanded)
    return alternatives


def region_matches(alternatives: list[Alternative] | None, geolocation: str) -> bool:
    if alternatives is None:
        return True
    return any(alt.matches(geolocation) for alt in alternatives)
