"""Fit search: does a deployment fit a device, and what is the largest context / batch / best format that does.

Pure functions over the analytic model (``estimate_memory``) and a hardware profile.  Memory is
monotone in context and batch (property-tested in tests/test_memory_properties.py), so the largest
context and batch are found by binary search.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from g4sim.analytic import QUANT_FORMATS, MemoryBreakdown, ParamBreakdown, count_params, estimate_memory
from g4sim.engines import Engine, get_engine
from g4sim.hardware import HardwareProfile
from g4sim.spec import ModelSpec

DEFAULT_PREFILL_CHUNK = 4096
BEYOND_MAX_CAP = 16 * 1024 * 1024  # tokens searched when --allow-beyond-max


@dataclass(frozen=True)
class PlanRequest:
    spec: ModelSpec
    device: HardwareProfile
    ctx: int
    batch: int = 1
    quant: str = "bf16"
    kv_dtype: str = "bf16"
    engine: Engine = field(default_factory=lambda: get_engine("transformers"))
    vision: bool = False
    audio: bool = False
    prefill_chunk: int | None = DEFAULT_PREFILL_CHUNK
    allow_beyond_max: bool = False
    gpus: int = 1  # tensor parallel over this many GPUs of `device`: memory() is then per GPU

    def memory(self, **changes: Any) -> MemoryBreakdown:
        r = replace(self, **changes) if changes else self
        if r.gpus > 1:
            from g4sim.parallel import per_gpu_memory

            return per_gpu_memory(r, r.gpus)
        return estimate_memory(
            r.spec, ctx=r.ctx, batch=r.batch, quant=r.quant, kv_dtype=r.kv_dtype, engine=r.engine,
            vision=r.vision, audio=r.audio, prefill_chunk=r.prefill_chunk, device_kind=r.device.kind,
        )

    @property
    def usable_bytes(self) -> int:
        return self.engine.usable_bytes(self.device.usable_memory_bytes)

    def fits(self, **changes: Any) -> bool:
        return self.memory(**changes).total("accelerator") <= self.usable_bytes

    @property
    def context_cap(self) -> int:
        return BEYOND_MAX_CAP if self.allow_beyond_max else self.spec.max_context


@dataclass(frozen=True)
class Plan:
    request: PlanRequest
    params: ParamBreakdown
    memory: MemoryBreakdown
    max_context: int  # 0 when not even one token fits
    max_batch: int  # at the asked context; 0 when one sequence does not fit
    suggested_quant: str | None  # smallest-loss format that fits, when the asked one does not
    sections: tuple[tuple[str, Any], ...] = ()  # later stages (throughput, launch command) add here

    @property
    def total_bytes(self) -> int:
        return self.memory.total("accelerator")

    @property
    def headroom_bytes(self) -> int:
        return self.request.usable_bytes - self.total_bytes

    @property
    def fits(self) -> bool:
        return self.headroom_bytes >= 0


def largest_fitting(fits_at, lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with fits_at(n), for a monotone predicate; lo - 1 when none fits."""
    if not fits_at(lo):
        return lo - 1
    if fits_at(hi):
        return hi
    while hi - lo > 1:  # invariant: fits_at(lo), not fits_at(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits_at(mid) else (lo, mid)
    return lo


def max_context(req: PlanRequest) -> int:
    return largest_fitting(lambda n: req.fits(ctx=n), 1, req.context_cap)


def max_batch(req: PlanRequest, limit: int = 1 << 16) -> int:
    hi = 1
    while hi < limit and req.fits(batch=hi * 2):
        hi *= 2
    return largest_fitting(lambda n: req.fits(batch=n), 1, min(hi * 2, limit))


def smallest_loss_quant(req: PlanRequest) -> str | None:
    """The first format, in order of increasing quality loss, at which the request fits."""
    for name in QUANT_FORMATS:
        if req.fits(quant=name):
            return name
    return None


def make_plan(req: PlanRequest) -> Plan:
    from g4sim.launch import launch_command
    from g4sim.throughput import predict

    memory = req.memory()
    fits = memory.total("accelerator") <= req.usable_bytes
    speed = predict(req.spec, req.device, ctx=req.ctx, batch=req.batch, quant=req.quant, kv_dtype=req.kv_dtype,
                    engine=req.engine)
    command = launch_command(req) if fits else None
    if fits and req.gpus > 1:
        command = (command or "") + f" \\\n  --tensor-parallel-size {req.gpus}" if req.engine.name == "vllm" else command
    layouts = []
    if not fits:
        from g4sim.parallel import ranked_layouts

        layouts = [layout.to_dict() for layout in ranked_layouts(req)]
    return Plan(
        request=req,
        params=count_params(req.spec, vision=req.vision, audio=req.audio),
        memory=memory,
        max_context=max_context(req),
        max_batch=max_batch(req) if fits else 0,
        suggested_quant=None if fits else smallest_loss_quant(req),
        sections=(("throughput", speed), ("launch_command", command), ("layouts", layouts)),
    )


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The stable machine-readable form printed by ``g4sim plan --json`` (all sizes in bytes)."""
    from g4sim import __version__

    r, m = plan.request, plan.memory
    return {
        "g4sim_version": __version__,
        "provenance": "computed (analytic model; nothing here is measured)",
        "request": {
            "model": r.spec.name, "ctx_tokens": r.ctx, "batch": r.batch, "quant": r.quant, "kv_dtype": r.kv_dtype,
            "engine": r.engine.name, "engine_options": {k: v for k, v in vars(r.engine).items()},
            "device": r.device.name, "gpus": r.gpus, "vision": r.vision, "audio": r.audio, "prefill_chunk_tokens": r.prefill_chunk,
        },
        "params": {"total": plan.params.total, "active": plan.params.active, "effective": plan.params.effective},
        "memory": {
            "terms": [{"name": t.name, "category": t.category, "bytes": t.bytes, "location": t.location,
                       "source": t.source} for t in m.terms],
            "by_category_bytes": m.by_category("accelerator"),
            "accelerator_total_bytes": m.total("accelerator"),
            "host_total_bytes": m.total("host"),
        },
        "capacity": {"device_memory_bytes": r.device.memory_bytes, "usable_bytes": r.usable_bytes},
        "fits": plan.fits,
        "headroom_bytes": plan.headroom_bytes,
        "max_context_tokens": plan.max_context,
        "max_batch": plan.max_batch,
        "suggested_quant": plan.suggested_quant,
        **{name: (value.to_dict() if hasattr(value, "to_dict") else value) for name, value in plan.sections},
    }
