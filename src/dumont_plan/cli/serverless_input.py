"""Reading `dumont serverless enable`'s command line into the enable body. Pure (no I/O).

Both forms of the sprint work and mean the same: `mode=spot idle_timeout=30 keep_warm=true`
and `--mode=spot --idle-timeout=30 --keep-warm`. Every value is checked here, before any
request, against the contract's ranges (§7.1), and a bad one is one line naming the fix.
The webhook secret is never taken from a `key=value` word (it would sit in the shell's
history): `--webhook-secret`, `DUMONT_WEBHOOK_SECRET` or a hidden prompt give it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from dumont_plan.cli.job_input import FALSE_WORDS, TRUE_WORDS
from dumont_plan.errors import DumontError
from dumont_plan.spec.messages import suggest
from dumont_plan.wire import GPU_THRESHOLD_RANGE, IDLE_TIMEOUT_RANGE, SERVERLESS_MODES

WHERE = "serverless enable"
SECRET_ENV = "DUMONT_WEBHOOK_SECRET"

# `key=value` word -> enable field.
KEYS = {
    "mode": "mode",
    "idle_timeout": "idle_timeout_seconds",
    "idle_timeout_seconds": "idle_timeout_seconds",
    "timeout": "idle_timeout_seconds",
    "gpu_threshold": "gpu_threshold",
    "threshold": "gpu_threshold",
    "keep_warm": "keep_warm",
    "webhook": "webhook_url",
    "webhook_url": "webhook_url",
    "max_price": "max_price",
    "price": "max_price",
    "cpu_standby": "cpu_standby",
}
# Enable field -> the flag people type (for messages).
FLAG_OF = {
    "mode": "--mode",
    "idle_timeout_seconds": "--idle-timeout",
    "gpu_threshold": "--gpu-threshold",
    "keep_warm": "--keep-warm",
    "webhook_url": "--webhook",
    "max_price": "--max-price",
}
SECRET_WORDS = frozenset({"webhook_secret", "secret"})


def parse_instance_id(value: str, where: str) -> int:
    """An instance id typed by a person (a whole number)."""
    text = value.strip()
    if not text.isdigit():
        raise DumontError(
            f"{where}: instance id {value!r} is not a number",
            "use an id from `dumont instance list`",
        )
    return int(text)


def parse_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode in SERVERLESS_MODES:
        return mode
    guess = suggest(mode, list(SERVERLESS_MODES))
    modes = ", ".join(SERVERLESS_MODES)
    hint = f"did you mean mode={guess}? (modes: {modes})" if guess else f"use one of: {modes}"
    raise DumontError(f"{WHERE}: mode {value!r} is unknown", hint)


def parse_idle_timeout(value: str) -> int:
    low, high = IDLE_TIMEOUT_RANGE
    text = value.strip().lower().removesuffix("s")
    try:
        seconds = int(text)
    except ValueError:
        raise DumontError(
            f"{WHERE}: idle timeout {value!r} is not a whole number of seconds",
            f"e.g. --idle-timeout=30 ({low}-{high})",
        ) from None
    if not low <= seconds <= high:
        raise DumontError(
            f"{WHERE}: idle timeout {seconds}s is out of range",
            f"use {low}-{high} seconds, e.g. --idle-timeout=30",
        )
    return seconds


def parse_threshold(value: str) -> float:
    low, high = GPU_THRESHOLD_RANGE
    text = value.strip().removesuffix("%")
    try:
        percent = float(text)
    except ValueError:
        percent = float("nan")
    if percent != percent:  # NaN: not a number at all
        raise DumontError(
            f"{WHERE}: GPU threshold {value!r} is not a number",
            f"give a percentage {low:g}-{high:g}, e.g. --gpu-threshold=5",
        )
    if not low <= percent <= high:
        raise DumontError(
            f"{WHERE}: GPU threshold {percent:g}% is out of range",
            f"use {low:g}-{high:g} (percent), e.g. --gpu-threshold=5",
        )
    return percent


def parse_flag_bool(value: str, flag: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise DumontError(f"{WHERE}: {flag}={value}: expected true or false", f"use {flag}=true")


def parse_webhook(value: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DumontError(
            f"{WHERE}: webhook {value!r} is not an http(s) URL",
            "e.g. --webhook=https://example.org/hooks/dumont",
        )
    return url


def parse_max_price(value: str) -> float:
    text = value.strip().removeprefix("$")
    try:
        price = float(text)
    except ValueError:
        price = float("nan")
    if not 0 < price <= 1000:  # also NaN
        raise DumontError(
            f"{WHERE}: max price {value!r} is not a price above 0 ($/h, at most 1000)",
            "e.g. --max-price=0.5",
        )
    return price


SECRET_LENGTH = (8, 256)


def check_secret(value: str) -> str:
    """A webhook secret of the length the server takes (its value is never shown)."""
    low, high = SECRET_LENGTH
    if not low <= len(value) <= high:
        raise DumontError(
            f"{WHERE}: the webhook secret has {len(value)} characters",
            f"use {low}-{high} characters (e.g. from `openssl rand -hex 32`)",
        )
    return value


PARSERS = {
    "mode": parse_mode,
    "idle_timeout_seconds": parse_idle_timeout,
    "gpu_threshold": parse_threshold,
    "webhook_url": parse_webhook,
    "max_price": parse_max_price,
}


def _value(field: str, text: str) -> Any:
    if field in ("keep_warm", "cpu_standby"):
        return parse_flag_bool(text, field)
    return PARSERS[field](text)


def _set(body: dict[str, Any], field: str, value: Any) -> None:
    if field in body and body[field] != value:
        raise DumontError(
            f"{WHERE}: {FLAG_OF[field]} is given twice ({body[field]!r} and {value!r})",
            "give it once",
        )
    body[field] = value


def enable_body(words: Sequence[str], flags: Mapping[str, str | bool | None]) -> dict[str, Any]:
    """The enable fields of the old-style words and the flags (`flags` by field name; None:
    not given). Unset fields are left out, so the server's defaults apply. `cpu_standby`
    (the §7.4 alias's word) means mode fast."""
    body: dict[str, Any] = {}
    given: list[tuple[str, Any]] = []
    for word in words:
        key, sep, text = word.partition("=")
        name = key.strip().lstrip("-").replace("-", "_").lower()
        if not sep:
            raise DumontError(
                f"{WHERE}: unexpected argument {word!r}",
                "give options as key=value or --flag=value, e.g. mode=economic idle_timeout=30",
            )
        if name in SECRET_WORDS:
            raise DumontError(
                f"{WHERE}: the webhook secret is not taken from a key=value word "
                "(it would stay in your shell's history)",
                f"export {SECRET_ENV}=... or pass --webhook-secret=- to type it unseen",
            )
        field = KEYS.get(name)
        if field is None:
            guess = suggest(name, sorted(KEYS))
            hint = f"did you mean {guess}=?" if guess else "use: " + ", ".join(sorted(KEYS))
            raise DumontError(f"{WHERE}: unknown option {key!r}", hint)
        given.append((field, _value(field, text)))
    for field, flag in flags.items():
        if flag is not None:
            given.append((field, flag if isinstance(flag, bool) else _value(field, flag)))
    standby = False
    for field, value in given:
        if field == "cpu_standby":  # the §7.4 alias's word for fast mode (a CPU standby)
            standby = standby or bool(value)
        else:
            _set(body, field, value)
    if standby:
        if body.get("mode", "fast") != "fast":
            raise DumontError(
                f"{WHERE}: cpu_standby means mode fast, not {body['mode']}",
                "drop one of them",
            )
        body["mode"] = "fast"
    return body


def describe_policy(body: Mapping[str, Any]) -> str:
    """`economic, pauses after 30s below 5% GPU` for the enable message."""
    mode = body.get("mode") or "?"
    if body.get("keep_warm"):
        return f"{mode}, kept warm (never paused automatically)"
    timeout = body.get("idle_timeout_seconds")
    threshold = body.get("gpu_threshold")
    after = f"{timeout}s" if timeout is not None else "the idle timeout"
    below = f"{threshold:g}%" if isinstance(threshold, int | float) else "the threshold"
    return f"{mode}, pauses after {after} below {below} GPU"
