"""The region vocabulary of offer searches (§3.5)."""

from __future__ import annotations

import pytest

from dumont_plan.server.provider.regions import expand_region, region_matches, split_geolocation


def matches(region: str | None, geolocation: str) -> bool:
    return region_matches(expand_region(region), geolocation)


@pytest.mark.parametrize("region", [None, "", "global", "ANY", "all", "EU,global"])
def test_no_filter_words(region: str | None) -> None:
    assert expand_region(region) is None
    assert matches(region, "Anywhere, ZZ")


@pytest.mark.parametrize(
    ("region", "geolocation", "expected"),
    [
        ("DE", "Germany, DE", True),
        ("de", "Berlin, DE", True),
        ("DE", "Sweden, SE", False),  # a raw substring test would match "Sweden"
        ("germany", "Germany, DE", True),
        ("UK", "London, GB", True),
        ("EU", "Poland, PL", True),
        ("EU", "Japan, JP", False),
        ("europe", "France, FR", True),
        ("ASIA", "Singapore, SG", True),
        ("asia", "India, IN", True),
        ("AS", "South Korea, KR", True),
        ("SA", "Brazil, BR", True),  # South America, not Saudi Arabia
        ("saudi arabia", "Riyadh, SA", True),
        ("OC", "Australia, AU", True),
        ("NA", "Quebec, CA", True),
        ("US", "Quebec, CA", False),  # the country
        ("US", "Texas, US", True),
        ("CA", "Quebec, CA", True),  # Canada wins over California
        ("CA", "California, US", False),
        ("california", "California, US", True),
        ("TX", "Texas, US", True),
        ("TX", "Texas, MX", False),
        ("US,CA", "Quebec, CA", True),
        ("US, EU", "Germany, DE", True),
        ("Texas", "Texas, US", True),
        ("Narnia", "Texas, US", False),
        ("exa", "Texas, US", True),  # anything else: a substring, as the real server
    ],
)
def test_expansion(region: str, geolocation: str, expected: bool) -> None:
    assert matches(region, geolocation) is expected


def test_split_geolocation() -> None:
    assert split_geolocation("Texas, US") == ("Texas", "US")
    assert split_geolocation("Somewhere") == ("Somewhere", "")
    assert split_geolocation("A, B, us") == ("A, B", "US")
