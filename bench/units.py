"""Memory sizes as people write and read them ('16GiB', '500MB' <-> bytes): one place for all."""

from __future__ import annotations

import math
import re

from bench.errors import ConfigError

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*")


def parse_bytes(text: str | int | float, key: str = "memory_budget") -> int:
    """'16GiB', '500 MB', '2e9', 1024 -> bytes (binary KiB/MiB/GiB and decimal KB/MB/GB units).

    Raises ``ConfigError(key, ...)`` so the message names the setting it came from."""
    if isinstance(text, bool):
        raise ConfigError(key, f"expected a size such as '16GiB', got {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _SIZE.fullmatch(text.replace("_", ""))
        if not match:
            raise ConfigError(key, f"expected a size such as '16GiB' or '500MB', got {text!r}")
        value, unit = float(match.group(1)), match.group(2).lower()
        if unit not in _UNITS:
            raise ConfigError(
                key,
                f"unknown unit {match.group(2)!r} in {text!r}; use B, KB, MB, GB, KiB, MiB, GiB",
            )
    if not math.isfinite(value) or int(value * _UNITS[unit]) <= 0:
        raise ConfigError(key, f"must be a positive size, got {text!r}")
    return int(value * _UNITS[unit])


def format_bytes(n: int | float | None) -> str:
    """1536 -> '1.50 KiB' (binary units, as memory is allocated); None/NaN -> '-'."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} TiB"
