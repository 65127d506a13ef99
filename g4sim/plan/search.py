"""Fit searches over ``fit`` (the memory half of the one evaluation): largest context, largest batch.

Memory is monotone in context and batch (property-tested in tests/test_memory_properties.py), so
the largest context and batch that fit *with the margin kept* are found by binary search.
No torch import.
"""

from __future__ import annotations

from collections.abc import Callable

from g4sim.evaluation import Request, fit

BEYOND_MAX_CAP = 16 * 1024 * 1024  # tokens searched when --allow-beyond-max


def largest_fitting(fits_at: Callable[[int], bool], lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with fits_at(n), for a monotone predicate; lo - 1 when none fits."""
    if not fits_at(lo):
        return lo - 1
    if fits_at(hi):
        return hi
    while hi - lo > 1:  # invariant: fits_at(lo), not fits_at(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits_at(mid) else (lo, mid)
    return lo


def safe_at(req: Request, **changes) -> bool:
    """The request, with workload ``changes``, fits with its margin kept."""
    return fit(req.with_workload(**changes) if changes else req).safe


def max_context(req: Request, cap: int | None = None) -> int:
    """Largest context per sequence that fits with the margin (0 when not one token does)."""
    hi, engine_limit = cap or req.spec.max_context, req.engine.context_limit(req.spec)
    return largest_fitting(lambda n: safe_at(req, ctx=n), 1, min(hi, engine_limit) if engine_limit else hi)


def max_batch(req: Request, limit: int = 1 << 16) -> int:
    """Largest number of sequences at the request's context that fit with the margin (0 when one does not)."""
    if not safe_at(req, batch=1):
        return 0
    limit = min(limit, req.engine.batch_limit)
    hi = 1
    while hi < limit and safe_at(req, batch=hi * 2):
        hi *= 2
    return largest_fitting(lambda n: safe_at(req, batch=n), 1, min(hi * 2, limit))
