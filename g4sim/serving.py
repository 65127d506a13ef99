"""Serving capacity: how many concurrent sequences fit, the aggregate speed, and where the knee is.

For a workload (tokens per sequence, output length, concurrency, optional request mix) on one
device: the largest concurrency that fits in memory, decode throughput along the batch axis, and
the knee — the batch where adding sequences stops being nearly free: decode turns compute-bound,
or the KV cache read per step outgrows the weights read (each new sequence then costs its own
bandwidth), or memory runs out, whichever comes first.  Computed from the analytic memory model and
predicted from the throughput model.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from g4sim.plan import PlanRequest, max_batch
from g4sim.throughput import predict


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

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "points"},
                "points": [p.__dict__ for p in self.points], "provenance": "computed memory, predicted speed"}


def _point(req: PlanRequest, batch: int) -> CapacityPoint:
    t = predict(req.spec, req.device, ctx=req.ctx, batch=batch, quant=req.quant, kv_dtype=req.kv_dtype, engine=req.engine)
    return CapacityPoint(batch, t.decode_tokens_per_s, t.decode_tokens_per_s_per_sequence, t.decode_bound)


def capacity(req: PlanRequest, concurrency: int, output_tokens: int, prompt_tokens: int | None = None) -> Capacity:
    """``req.ctx`` is the longest a sequence gets (prompt + soft tokens + output)."""
    limit = max_batch(req) if req.fits(batch=1) else 0
    batches = sorted({b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, limit, concurrency) if 1 <= b <= max(limit, 1)})
    points = tuple(_point(req, b) for b in batches) if limit else ()
    knee, reason = limit, "memory"
    for p in points:
        if p.decode_bound == "compute":
            knee, reason = p.batch, "compute-bound"
            break
        step = predict(req.spec, req.device, ctx=req.ctx, batch=p.batch, quant=req.quant, kv_dtype=req.kv_dtype,
                       engine=req.engine).decode_step_bytes
        weights_only = predict(req.spec, req.device, ctx=1, batch=p.batch, quant=req.quant, kv_dtype=req.kv_dtype,
                               engine=req.engine).decode_step_bytes
        if step - weights_only >= weights_only:  # past here each added sequence costs its full KV read
            knee, reason = p.batch, "KV-bound"
            break
    fits = limit >= concurrency
    rps = 0.0
    if fits:
        t = predict(req.spec, req.device, ctx=prompt_tokens or req.ctx, batch=concurrency, quant=req.quant,
                    kv_dtype=req.kv_dtype, engine=req.engine)
        per_request = t.prefill_seconds / concurrency + output_tokens / t.decode_tokens_per_s_per_sequence
        rps = concurrency / per_request
    return Capacity(limit, knee, reason, concurrency, fits, points, rps)


def longest_sequence(scenario) -> int:
    """Tokens the longest sequence of a scenario holds (its request mix's longest class, if any)."""
    if scenario.request_mix:
        return max(m.prompt_tokens + m.output_tokens for m in scenario.request_mix) + scenario.multimodal_tokens
    return scenario.sequence_tokens


def scenario_capacity(req: PlanRequest, scenario) -> Capacity:
    """Capacity for a scenario: memory is reserved for its longest sequence."""
    tokens = min(longest_sequence(scenario), req.spec.max_context)
    return capacity(replace(req, ctx=tokens), scenario.concurrency, scenario.output_tokens,
                    prompt_tokens=tokens - scenario.output_tokens)
