"""Plans: the evaluation of what the user asked, its limits, and what to do when it does not fit.

``make_plan`` evaluates the request (``g4sim.evaluation.evaluate``), searches the largest context
and batch that keep the margin, and, when the request does not fit with its margin, ranks the
layouts that do (``layouts``).  ``choose_format`` is what ``plan`` does when no ``--quant`` is
given: the smallest-loss weight format that fits with the margin, on the engine ``auto`` picks for
it.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from g4sim.analytic.quant import QUANT_FORMATS, get_quant
from g4sim.engines import EngineError
from g4sim.engines.auto import choose
from g4sim.evaluation import Evaluation, Incompatible, Request, evaluate, evaluation_to_dict, fit
from g4sim.plan.layouts import RANKED_BY, Layout, ranked_layouts
from g4sim.plan.search import max_batch, max_context

# Formats auto considers for a user who did not name one: 16-bit first, fp32 never (no loss to gain).
# fp32 is never the answer to "what fits"; a .litertlm file's quality beside the others is unpublished
AUTO_FORMATS = tuple(q for q in QUANT_FORMATS if q not in ("fp32", "litertlm"))


@dataclass(frozen=True)
class Plan:
    evaluation: Evaluation
    max_context: int  # with the margin kept; 0 when not one token fits
    max_batch: int  # at the asked context, with the margin kept
    layouts: tuple[Layout, ...] = ()  # ranked alternatives, when the request does not fit with its margin
    choice: str = ""  # how the engine / format were chosen, when g4sim chose them

    @property
    def request(self) -> Request:
        return self.evaluation.request


def choose_format(req: Request, auto_engine: bool, settings: dict | None = None) -> tuple[Request, str]:
    """The smallest-loss format that fits with the margin (engine auto-picked per format when asked,
    among the engines that have every one of ``settings``)."""
    first_loading: tuple[Request, str] | None = None
    for quant in AUTO_FORMATS:
        r = req.with_workload(quant=quant, kv_dtype=_kv_for(req, quant))
        try:
            if auto_engine:
                engine, why = choose(r.workload, r.device, r.gpus, settings)
                r = replace(r, engine=engine, engine_reason=why)
            f = fit(r)
        except (Incompatible, EngineError):
            continue
        if f.safe:
            return r, f"{quant}: the smallest-loss weight format that fits with the margin"
        if f.loads and first_loading is None:
            first_loading = (r, f"{quant}: the smallest-loss weight format that loads (tight: less spare than the margin)")
    if first_loading:
        return first_loading
    for quant in AUTO_FORMATS:  # nothing loads: show the smallest-loss format the engine can run
        r = req.with_workload(quant=quant, kv_dtype=_kv_for(req, quant))
        try:
            if auto_engine:
                engine, why = choose(r.workload, r.device, r.gpus, settings)
                r = replace(r, engine=engine, engine_reason=why)
            fit(r)
        except (Incompatible, EngineError):
            continue
        return r, f"no weight format fits; showing {quant}, the smallest-loss one {r.engine.name} runs"
    raise EngineError(f"no engine g4sim models runs {req.spec.name} on {req.gpus} x {req.device.name}")


def _kv_for(req: Request, quant: str) -> str:
    """The KV dtype a format's engine keeps by default: the model's 16-bit dtype, unless the user set one."""
    kv = req.workload.kv_dtype
    if kv in ("bf16", "fp16", "fp32") and get_quant(quant).name in ("fp16", "fp32"):
        return get_quant(quant).name
    return kv if kv not in ("fp32",) else "bf16"


def make_plan(req: Request, choice: str = "", search_layouts: bool = True, context_cap: int | None = None) -> Plan:
    """``context_cap``: the largest context searched (default the model's maximum)."""
    e = evaluate(req, view=True)
    layouts: tuple[Layout, ...] = ()
    if not e.safe and search_layouts:
        layouts = tuple(ranked_layouts(req))
    return Plan(e, max_context(req, context_cap), max_batch(req) if e.loads else 0, layouts, choice)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """``plan --json``: the evaluation's stable form plus the limits and the ranked layouts."""
    return {**evaluation_to_dict(plan.evaluation), "choice": plan.choice,
            "max_context_tokens": plan.max_context, "max_batch": plan.max_batch,
            "layouts_ranked_by": RANKED_BY, "layouts": [layout.to_dict() for layout in plan.layouts]}


__all__ = ["AUTO_FORMATS", "Plan", "choose_format", "make_plan", "plan_to_dict"]
