"""Pacemaker durations (op interval, timeout): "30", "30s", "30000ms", "1m", "PT30S" are equal.

Follows crm_get_msec / crm_parse_interval_spec: a bare number is seconds; units ms|msec, us|usec,
s|sec, m|min, h|hr; a value starting with P is an ISO 8601 duration.
"""

from __future__ import annotations

import re

_UNIT_MS: dict[str, float] = {"": 1000, "s": 1000, "sec": 1000, "ms": 1, "msec": 1, "us": 0.001,
                              "usec": 0.001, "m": 60_000, "min": 60_000, "h": 3_600_000,
                              "hr": 3_600_000}
_PLAIN = re.compile(r"\s*(\d+)\s*([a-z]*)\s*", re.IGNORECASE)
_ISO = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                  r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.IGNORECASE)
# Pacemaker's crm_time arithmetic: a year of 365 days, a month of 30 (only matters for odd intervals).
_ISO_MS = (365 * 86_400_000, 30 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000)


def duration_ms(value: str | None) -> int | None:
    """Milliseconds, or None when Pacemaker would not parse it either (then compare as text)."""
    if value is None:
        return None
    text = value.strip()
    if text[:1] in ("P", "p"):
        iso = _ISO.fullmatch(text)
        if iso is None or not any(iso.groups()):
            return None
        return sum(int(g) * m for g, m in zip(iso.groups(), _ISO_MS, strict=True) if g)
    plain = _PLAIN.fullmatch(text)
    if plain is None:
        return None
    factor = _UNIT_MS.get(plain.group(2).lower())
    if factor is None:
        return None
    return int(int(plain.group(1)) * factor)


def same_duration(a: str | None, b: str | None) -> bool:
    if a == b:
        return True
    ma, mb = duration_ms(a), duration_ms(b)
    return ma is not None and ma == mb
