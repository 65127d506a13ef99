"""Layouts that make a deployment fit, ranked by what they cost the user.

Candidates, each a full ``evaluate`` of a request the chosen engine and devices can run:

* a smaller weight format on the same devices (the smallest-loss one that fits with the margin),
  then the same with a quantized KV cache;
* host offload, where an engine offloads and the GPU has host memory of its own (not on CPUs and
  unified-memory devices, where "the host" is the same RAM);
* more GPUs of the same kind, where an engine spreads a model over several (tensor parallel only
  over an interconnect; layer split anywhere two GPUs sit in one host).

Ranking, in order: a tight layout never comes before one that fits with the margin; then the
smallest quality loss (weight format, then KV format); then the fastest decode; then the fewest
GPUs.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from g4sim.analytic.quant import QUANT_FORMATS, get_kv_dtype, get_quant
from g4sim.engines import ENGINES, Engine, EngineError
from g4sim.engines.auto import choose
from g4sim.evaluation import Evaluation, Incompatible, Request, Verdict, evaluate, fit, host_profile_for, shares_ram
from g4sim.plan.search import largest_fitting

RANKED_BY = "fits with the margin before tight; then least quality loss (weights, then KV); then fastest decode; then fewest GPUs"
_KV_LOSS = {"fp32": 0, "bf16": 0, "fp16": 0, "fp8": 1, "q8_0": 1, "q4_0": 2}
KV_STEPS = ("q8_0", "fp8", "q4_0")  # quantized KV caches, least loss first


@dataclass(frozen=True)
class Layout:
    name: str
    evaluation: Evaluation

    @property
    def quality_loss(self) -> tuple[int, int]:
        w = self.evaluation.request.workload
        return get_quant(w.quant).loss_rank, _KV_LOSS.get(get_kv_dtype(w.kv_dtype).name, 3)

    def rank_key(self) -> tuple:
        e = self.evaluation
        return (e.verdict is not Verdict.FITS, self.quality_loss, -e.speed.decode_tokens_per_s, e.request.gpus)

    def to_dict(self) -> dict[str, Any]:
        e, w = self.evaluation, self.evaluation.request.workload
        return {"name": self.name, "engine": e.request.engine.name, "gpus": e.request.gpus, "quant": w.quant,
                "kv_dtype": w.kv_dtype, "engine_settings": e.settings, "verdict": e.verdict.value,
                "needed_bytes_per_gpu": e.needed_bytes, "budget_bytes": e.budget_bytes, "headroom_bytes": e.headroom_bytes,
                "host_bytes": e.host_bytes, "decode_tokens_per_s": e.speed.decode_tokens_per_s,
                "prefill_tokens_per_s": e.speed.prefill_tokens_per_s, "layout": e.speed.layout,
                "command": e.command}


def engines_for(req: Request, quant: str, kv: str, gpus: int) -> list[Engine]:
    """The user's engine when it can run this, else what ``--engine auto`` picks."""
    w = replace(req.workload, quant=quant, kv_dtype=kv)
    if req.engine.compatibility(w, req.device, gpus) is None:
        return [req.engine]
    try:
        return [choose(w, req.device, gpus)[0]]
    except EngineError:
        return []


def _try(req: Request, name: str, engine: Engine, gpus: int, **workload) -> Layout | None:
    r = replace(req.with_workload(**workload), engine=engine, gpus=gpus, engine_reason="")
    try:
        if not fit(r).loads:
            return None
        return Layout(name, evaluate(r))
    except Incompatible:
        return None


def smaller_format(req: Request) -> list[Layout]:
    """The smallest-loss weight format that fits safely (and the first that loads, if that one is tight)."""
    out: list[Layout] = []
    w = req.workload
    for kv in (w.kv_dtype, *KV_STEPS):
        if kv != w.kv_dtype and _KV_LOSS.get(kv, 3) <= _KV_LOSS.get(w.kv_dtype, 3):
            continue
        for quant in QUANT_FORMATS:
            if (quant, kv) == (w.quant, w.kv_dtype) or get_quant(quant).loss_rank < get_quant(w.quant).loss_rank:
                continue
            for engine in engines_for(req, quant, kv, req.gpus):
                kv_note = f", KV {kv}" if kv != w.kv_dtype else ""
                layout = _try(req, f"{req.gpus} x {req.device.name}, weights {quant}{kv_note} ({engine.name})",
                              engine, req.gpus, quant=quant, kv_dtype=kv)
                if layout is not None:
                    out.append(layout)
                    if layout.evaluation.safe:
                        return out
    return out


def host_offload(req: Request) -> Layout | None:
    """The fewest experts (--n-cpu-moe) or layers (-ngl) kept in host memory that make it fit safely,
    as long as what stays on the host fits the host's own RAM (the ``desktop-ddr5`` profile).

    GPU memory falls and host memory grows monotonically as more is kept on the host, so both ends
    are found by bisection (a few evaluations, not one per layer)."""
    if shares_ram(req.device) or req.gpus != 1:
        return None
    t = req.spec.text
    host_ram = host_profile_for(req.device).usable_bytes(True)  # the desktop around the GPU
    for cls in ENGINES.values():
        base = req.engine if isinstance(req.engine, cls) else cls()
        if not base.caps.host_offload or base.compatibility(req.workload, req.device, 1):
            continue
        knob = "n_cpu_moe" if t.enable_moe_block else "n_gpu_layers"
        # "on host" = how much moves to the host: n_cpu_moe itself, or the layers -ngl leaves behind
        value_of = (lambda k: k) if knob == "n_cpu_moe" else (lambda k: t.num_layers + 1 - k)
        flag = next(o.flags[0] for o in base.options if o.field == knob)

        def at(k: int):
            return fit(replace(req, engine=base.with_settings({knob: value_of(k)}), gpus=1, engine_reason=""))

        top = t.num_layers if knob == "n_cpu_moe" else t.num_layers + 1
        fewest = largest_fitting(lambda k: not at(k).safe, 0, top) + 1  # the first k that fits safely
        if fewest > top or at(fewest).host_bytes > host_ram:
            continue
        layout = _try(req, "", base.with_settings({knob: value_of(fewest)}), 1)
        if layout is not None:
            return replace(layout, name=f"1 x {req.device.name}, {base.name} with host offload ({flag} {value_of(fewest)})")
    return None


def more_gpus(req: Request, max_gpus: int = 8) -> list[Layout]:
    """Per engine that spreads a model over GPUs of this kind: the fewest GPUs that fit safely."""
    out = []
    for cls in ENGINES.values():
        base = req.engine if isinstance(req.engine, cls) else cls()
        if base.caps.parallel is None:
            continue
        for n in base.tensor_parallel_sizes(req.spec.text, max_gpus):
            if n <= req.gpus:
                continue
            layout = _try(req, f"{n} x {req.device.name}, {base.caps.parallel.value} parallel ({base.name})", base, n)
            if layout is not None and layout.evaluation.safe:
                out.append(layout)
                break  # more GPUs only cost more
    return out


def ranked_layouts(req: Request, max_gpus: int = 8) -> list[Layout]:
    """Layouts that load (fit or tight), ranked (see RANKED_BY)."""
    candidates = [*smaller_format(req), host_offload(req), *more_gpus(req, max_gpus)]
    layouts = [c for c in candidates if c is not None]
    return sorted(layouts, key=Layout.rank_key)
