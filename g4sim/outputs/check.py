"""The CI memory-regression check: recompute a named matrix of configurations, diff against a baseline.

The baseline (``reports/baseline.json``) stores, per configuration, the analytic figures and, where
the measurement store has the configuration, the measured peak.  A figure that moves the wrong way
(bytes grow, fitting context / batch shrink) by more than its tolerance fails the check (exit 1);
improvements are reported and pass.  ``--update`` rewrites the baseline atomically; ``--junit``
writes JUnit XML; on GitHub Actions each failure is also an ``::error`` annotation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from g4sim.files import write_text

BASELINE = Path(__file__).resolve().parents[2] / "reports" / "baseline.json"

# figure -> (relative tolerance, direction).  Analytic figures are deterministic: "exact" fails on any
# change, up or down (a shrink is a change too: an intended one is accepted with --update and said in
# the commit).  Measured figures vary run to run: "down" fails only when they grow past the tolerance.
TOLERANCES: dict[str, tuple[float, str]] = {
    "weights_bytes": (0.0, "exact"), "kv_cache_bytes": (0.0, "exact"), "activations_bytes": (0.0, "exact"),
    "overhead_bytes": (0.0, "exact"), "total_bytes": (0.0, "exact"),
    "max_context_tokens": (0.0, "exact"), "max_batch": (0.0, "exact"), "measured_prefill_peak_bytes": (0.05, "down"),
}
FAILING = ("regression", "changed")

MATRIX: list[dict[str, Any]] = [
    {"name": "26b-a4b-256k-q4_k_m-rtx4090", "model": "26b-a4b", "ctx": 262144, "quant": "q4_k_m", "device": "rtx4090"},
    {"name": "26b-a4b-32k-bf16-h100", "model": "26b-a4b", "ctx": 32768, "quant": "bf16", "device": "h100-sxm"},
    {"name": "31b-256k-bf16-h200", "model": "31b", "ctx": 262144, "quant": "bf16", "device": "h200"},
    {"name": "31b-32k-fp8-h100", "model": "31b", "ctx": 32768, "quant": "fp8", "device": "h100-sxm"},
    {"name": "31b-8k-q4_k_m-rtx4090", "model": "31b", "ctx": 8192, "quant": "q4_k_m", "device": "rtx4090"},
    {"name": "e4b-128k-q8_0-kvq8-l4", "model": "e4b", "ctx": 131072, "quant": "q8_0", "kv_dtype": "q8_0", "device": "l4"},
    {"name": "e2b-8k-q4_0-rpi5", "model": "e2b", "ctx": 8192, "quant": "q4_0", "device": "rpi5-8gb"},
    {"name": "e2b-32k-bf16-batch8-g4sim-4090", "model": "e2b", "ctx": 32768, "quant": "bf16", "batch": 8,
     "engine": "g4sim", "device": "rtx4090"},
    {"name": "31b-32k-bf16-transformers-h100", "model": "31b", "ctx": 32768, "quant": "bf16", "device": "h100-sxm",
     "engine": "transformers"},
]


@dataclass(frozen=True)
class Diff:
    config: str
    figure: str
    baseline: float
    now: float
    tolerance: float
    direction: str

    @property
    def change(self) -> float:
        return (self.now - self.baseline) / self.baseline if self.baseline else (0.0 if self.now == self.baseline else 1.0)

    @property
    def verdict(self) -> str:
        if self.direction == "exact":
            return "same" if self.now == self.baseline else "changed"
        worse = self.change > self.tolerance if self.direction == "down" else -self.change > self.tolerance
        better = self.change < 0 if self.direction == "down" else self.change > 0
        return "regression" if worse else ("improvement" if better else "same")


def request_for(entry: dict[str, Any]):
    """The evaluation request a matrix entry names (engine ``auto`` unless the entry names one)."""
    from g4sim.engines import Workload, get_engine
    from g4sim.engines.auto import choose
    from g4sim.evaluation import Request
    from g4sim.hardware import get_profile
    from g4sim.spec import get_variant

    w = Workload(get_variant(entry["model"]), entry["ctx"], entry.get("batch", 1), entry["quant"],
                 entry.get("kv_dtype", "bf16"))
    device = get_profile(entry["device"])
    name = entry.get("engine", "auto")
    engine = choose(w, device)[0] if name == "auto" else get_engine(name)
    return Request(w, device, engine)


def compute(entry: dict[str, Any]) -> dict[str, float]:
    from g4sim.plan import make_plan

    plan = make_plan(request_for(entry), search_layouts=False)
    e = plan.evaluation
    cats = e.memory.by_category()
    return {**{f"{c}_bytes": v for c, v in cats.items()}, "total_bytes": e.needed_bytes,
            "max_context_tokens": plan.max_context, "max_batch": plan.max_batch}


def measured_figures(store: Path | None = None) -> dict[str, dict[str, float]]:
    """The latest measured prefill peak per measured configuration of the store."""
    from g4sim.measure.measurements import load_store

    frame = load_store(store)
    if frame.empty:
        return {}
    out: dict[str, dict[str, float]] = {}
    for _, row in frame[frame["status"] == "ok"].iterrows():
        fmt = row["quant"] if isinstance(row.get("quant"), str) and row["quant"] else row["dtype"]
        impl = row["engine"] if isinstance(row.get("engine"), str) and row["engine"] != "g4sim" else ""
        key = (f"measured:{row['device']}:{row['model']}[{int(row['layers'])}L]:{fmt}:ctx{int(row['ctx'])}:b{int(row['batch'])}"
               + (f":{impl}" if impl else ""))  # one key per implementation measured
        out[key] = {"measured_prefill_peak_bytes": float(row["prefill_peak_bytes"])}
    return out


def current(store: Path | None = None) -> dict[str, dict[str, float]]:
    figures = {e["name"]: compute(e) for e in MATRIX}
    figures.update(measured_figures(store))
    return figures


def diff(baseline: dict[str, Any], now: dict[str, dict[str, float]]) -> list[Diff]:
    tolerances = TOLERANCES  # the code's rule, not the baseline's copy: editing a baseline cannot loosen a check
    out = []
    for config, figures in baseline["configs"].items():
        if config not in now:
            continue
        for figure, value in figures.items():
            tol, direction = tolerances.get(figure, TOLERANCES.get(figure, (0.0, "down")))
            out.append(Diff(config, figure, float(value), float(now[config][figure]), float(tol), direction))
    return out


def write_baseline(path: Path, now: dict[str, dict[str, float]]) -> None:
    from g4sim import __version__

    data = {"g4sim_version": __version__, "description": "analytic figures of a named matrix (g4sim/check.py "
            "MATRIX) and measured peaks from reports/measurements; rewrite with `g4sim check --update`",
            "tolerances": {k: list(v) for k, v in TOLERANCES.items()}, "matrix": MATRIX, "configs": now}
    write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def junit_xml(diffs: list[Diff]) -> str:
    failures = [d for d in diffs if d.verdict in FAILING]
    cases = []
    for d in diffs:
        name = quoteattr(f"{d.config} {d.figure}")
        body = ""
        if d.verdict in FAILING:
            msg = f"{d.figure} moved from {d.baseline:,.0f} to {d.now:,.0f} ({d.change:+.3%}, tolerance {d.tolerance:.1%})"
            body = f"<failure message={quoteattr(msg)}>{escape(msg)}</failure>"
        cases.append(f'  <testcase classname="g4sim.outputs.check" name={name}>{body}</testcase>')
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="g4sim-memory" tests="{len(diffs)}" '
            f'failures="{len(failures)}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def github_annotations(diffs: list[Diff], baseline_path: Path) -> list[str]:
    return [f"::error file={baseline_path}::{d.config}: {d.figure} grew from {d.baseline:,.0f} to {d.now:,.0f} "
            f"({d.change:+.3%}, tolerance {d.tolerance:.1%})" for d in diffs if d.verdict in FAILING]
