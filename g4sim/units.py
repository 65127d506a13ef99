"""Units as users write and read them: context lengths ("256k"), byte sizes (GiB vs GB).

GiB (2**30) and GB (10**9) are never mixed: every printed size carries its unit.
"""

from __future__ import annotations

import re

KiB, MiB, GiB, TiB = 2**10, 2**20, 2**30, 2**40
KB, MB, GB, TB = 10**3, 10**6, 10**9, 10**12

_CTX_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


class UnitError(ValueError):
    """A malformed number from the user."""


def parse_context(text: str | int) -> int:
    """'256k' -> 262144, '128K' -> 131072, '32768' -> 32768, '1m' -> 1048576 (k = 1024 tokens)."""
    if isinstance(text, int):
        value = text
    else:
        m = _CTX_RE.match(str(text))
        if not m:
            raise UnitError(f"context {text!r} is not a token count; write e.g. 8192, 32k, 256k")
        number, suffix = float(m.group(1)), m.group(2).lower()
        scaled = number * {"": 1, "k": 1024, "m": 1024 * 1024}[suffix]
        if scaled != int(scaled):
            raise UnitError(f"context {text!r} is not a whole number of tokens")
        value = int(scaled)
    if value <= 0:
        raise UnitError(f"context {text!r} must be a positive number of tokens")
    return value


def parse_context_list(text: str) -> list[int]:
    """'1k,4k,16k' -> [1024, 4096, 16384]."""
    return [parse_context(part) for part in str(text).split(",") if part.strip()]


def format_context(tokens: int) -> str:
    """262144 -> '256k'; 8192 -> '8k'; 1000 -> '1000'."""
    if tokens >= 1024 and tokens % 1024 == 0:
        return f"{tokens // 1024}k"
    return str(tokens)


def format_bytes(n: float, binary: bool = True, digits: int = 2) -> str:
    """Bytes with an explicit unit: GiB/MiB/KiB when binary, GB/MB/KB otherwise."""
    steps = [(TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")] if binary else [
        (TB, "TB"), (GB, "GB"), (MB, "MB"), (KB, "KB")]
    sign = "-" if n < 0 else ""
    n = abs(n)
    for size, unit in steps:
        if n >= size:
            return f"{sign}{n / size:.{digits}f} {unit}"
    return f"{sign}{int(n)} B"


def format_count(n: float) -> str:
    """Parameter counts: 25_233_142_048 -> '25.23 B', 3_800_000 -> '3.80 M'."""
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(int(n))
