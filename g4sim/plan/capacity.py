"""Serving capacity: how many concurrent sequences fit, the aggregate speed, and where the knee is.

For a workload (tokens per sequence, output length, concurrency, optional request mix) on one
device: the largest concurrency that fits with the margin, decode throughput along the batch
axis, and the knee — the batch where adding sequences stops being nearly free: decode turns
compute-bound, or the KV cache read per step outgrows the weights read (each new sequence then
costs its own bandwidth), or memory runs out, whichever comes first.  Every point is one
``evaluate`` of the same request at another batch.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass

from g4sim.evaluation import Request, evaluate
from g4sim.plan.search import max_batch


@dataclass(frozen=True)
class CapacityPoint:
    batch: int
    decode_tokens_per_s: float
    decode_tokens_per_s_per_sequence: float
    decode_bound: str


@dataclass(frozen=True)
class Capacity:
    max_concurrency: int
    knee_batch: int
    knee_reason: str  # "compute-bound", "KV-bound" (the cache, not the weights, dominates each step) or "memory"
    asked_concurrency: int
    fits_asked: bool
    points: tuple[CapacityPoint, ...]
    requests_per_s_at_asked: float  # completed requests per second at the asked concurrency (0 if it does not fit)
    speed_class: str = ""  # the engine/backend class whose terms predicted the speeds
    decode_band: str = ""  # that class's held-out decode error, as plan prints it

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "points"},
                "points": [p.__dict__ for p in self.points], "provenance": "computed memory, predicted speed"}


def _speed(req: Request, batch: int, ctx: int | None = None):
    return evaluate(req.with_workload(batch=batch, **({"ctx": ctx} if ctx else {}))).speed


def capacity(req: Request, concurrency: int, output_tokens: int, prompt_tokens: int | None = None) -> Capacity:
    """``req.workload.ctx`` is the longest a sequence gets (prompt + soft tokens + output)."""
    limit = max_batch(req)
    batches = sorted({b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, limit, concurrency) if 1 <= b <= max(limit, 1)})
    speeds = {b: _speed(req, b) for b in (batches if limit else ())}
    points = [CapacityPoint(b, s.decode_tokens_per_s, s.decode_tokens_per_s_per_sequence, s.decode_bound)
              for b, s in speeds.items()]
    knee, reason = limit, "memory"
    for p in points:
        if p.decode_bound == "compute":
            knee, reason = p.batch, "compute-bound"
            break
        step = speeds[p.batch].decode_step_bytes
        weights_only = _speed(req, p.batch, ctx=1).decode_step_bytes
        if step - weights_only >= weights_only:  # past here each added sequence costs its full KV read
            knee, reason = p.batch, "KV-bound"
            break
    fits = limit >= concurrency
    rps = 0.0
    if fits:
        t = _speed(req, concurrency, ctx=prompt_tokens or req.workload.ctx)
        per_request = t.prefill_seconds / concurrency + output_tokens / t.decode_tokens_per_s_per_sequence
        rps = concurrency / per_request
    one = speeds.get(1) or _speed(req, 1)  # the class and band do not depend on the batch
    return Capacity(limit, knee, reason, concurrency, fits, tuple(points), rps, one.speed_class, one.band_text("decode"))


def longest_sequence(scenario) -> int:
    """Tokens the longest sequence of a scenario holds (its request mix's longest class, if any)."""
    if scenario.request_mix:
        return max(m.prompt_tokens + m.output_tokens for m in scenario.request_mix) + scenario.multimodal_tokens
    return scenario.sequence_tokens


def scenario_capacity(req: Request, scenario) -> Capacity:
    """Capacity for a scenario: memory is reserved for its longest sequence."""
    tokens = min(longest_sequence(scenario), req.spec.max_context)
    return capacity(req.with_workload(ctx=tokens), scenario.concurrency, scenario.output_tokens,
                    prompt_tokens=max(1, tokens - scenario.output_tokens))


__all__ = ["Capacity", "CapacityPoint", "capacity", "longest_sequence", "scenario_capacity"]
