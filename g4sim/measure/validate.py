"""Analytic prediction vs measurement, per component, for every row of the measurement store.

For each measured configuration the analytic model is re-run with the same reduced spec, dtype /
weight format, batch, prefill chunk and the "g4sim" engine rule on the row's device profile.
Tolerances: parameter and KV bytes exact and peak prefill memory within 5 % on every row; prefill
and decode tokens/s within 25 % on the held-out rows of the frozen split (g4sim/measure/split.py).
Calibration rows (in-sample) have their speed errors reported, not held; g4sim's int8 / int4 rows
follow the float rows' split (split v4) and each weight-only format has its own fitted efficiencies.
Rows profiled with ``--components`` also hold each workspace of the rule (attention, MLP, router,
experts, logits, PLE inputs and projections, norms, token embedding) against the measured prefill peak
of its region, within 5 % (or the CPU probe's resolution, on regions of a few MiB) on float rows
(``g4sim.measure.components``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g4sim.analytic.components import Category, Component, Location
from g4sim.measure.components import PEAK_FIGURES, PEAK_TOLERANCE, component_peaks
from g4sim.measure.split import SPLITS, row_spec, split_of, weight_format
from g4sim.units import MiB

TOLERANCES = {"param_bytes": 0.0, "kv_bytes": 0.0, "prefill_peak_bytes": 0.05,
              "prefill_tokens_per_s": 0.25, "decode_tokens_per_s": 0.25,
              # rows profiled with --components: each workspace term against its region's peak (float rows)
              **dict.fromkeys(PEAK_FIGURES.values(), PEAK_TOLERANCE)}


@dataclass(frozen=True)
class Check:
    row: int
    config: str
    figure: str
    predicted: float
    measured: float
    tolerance: float | None  # None: reported, not enforced
    split: str = "held-out"  # calibration, held-out or other-impl (g4sim/measure/split.py SPLITS)

    @property
    def calibration(self) -> bool:
        return self.split == "calibration"

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured if self.measured else 0.0

    @property
    def ok(self) -> bool:
        return self.tolerance is None or abs(self.error) <= self.tolerance + 1e-12


def engine_for_impl(impl: str, chunk: int | None, ctx: int):
    """The engine rule a measured implementation is held to (its own allocation rules), as it ran."""
    from g4sim.engines import get_engine

    if impl.startswith("transformers-"):  # generate() without prefill_chunk_size: the whole prompt at once
        return get_engine("transformers", attn_implementation=impl.split("-", 1)[1], prefill_chunk=chunk or ctx)
    if impl == "llamacpp":  # as g4sim.measure.llamacpp runs it: llama-server's defaults, one slot, on a CPU
        from g4sim.measure.llamacpp import N_UBATCH

        return get_engine("llamacpp", n_ubatch=chunk or N_UBATCH)
    return get_engine("g4sim", prefill_chunk=chunk or ctx)


def kv_dtype_of(impl: str, fmt: str) -> str:
    """The cache type a measured run used: llama.cpp's f16 default; g4sim's model and transformers keep K/V in
    the model's dtype (fp32 weights: fp32, else bf16)."""
    return "fp16" if impl == "llamacpp" else "fp32" if fmt == "fp32" else "bf16"


def checks_for_row(index: int, row: dict[str, Any], calibration_models: set[str] | None = None) -> list[Check]:
    """Every figure of one measured row against the analytic model.  ``calibration_models`` overrides the
    frozen split (a live profile of a model no split names counts as in-sample for those models)."""
    from g4sim.engines import Workload, estimate_memory, get_engine
    from g4sim.evaluation.speed import predict
    from g4sim.hardware import get_profile

    spec = row_spec(row)
    fmt = weight_format(row)
    device = get_profile(str(row["device"]))
    batch, ctx, cache_ctx = int(row["batch"]), int(row["ctx"]), int(row["cache_context"])
    chunk = int(row.get("chunk") or 0) or None
    impl = str(row.get("engine") or "g4sim")
    engine = engine_for_impl(impl, chunk, ctx)
    label = f"{row['model']}[{row['layers']}L] {fmt} ctx {ctx} b{batch}" + ("" if impl == "g4sim" else f" {impl}")

    split = split_of(row)
    if calibration_models is not None and impl == "g4sim":
        split = "calibration" if str(row["model"]) in calibration_models else "held-out"
    calib = split
    out: list[Check] = []
    cpu = device.kind != "gpu"
    if impl == "llamacpp":  # the file's tensors (llama_model_size); the KV line llama.cpp logs, in MiB to 2 decimals
        kv = kv_dtype_of(impl, fmt)
        memory = estimate_memory(spec, ctx=cache_ctx, batch=batch, quant=fmt, kv_dtype=kv, engine=engine,
                                 device_kind="cpu")
        weights = sum(t.bytes for t in memory.terms_in(Category.WEIGHTS) if t.component is not Component.REPACKED_WEIGHTS)
        out.append(Check(index, label, "param_bytes", weights, float(row["param_bytes"]), 0.0, calib))
        logged_kv = sum(round(t.bytes / MiB, 2) * MiB for t in memory.terms_in(Category.KV_CACHE))  # per cache
        out.append(Check(index, label, "kv_bytes", logged_kv, float(row["kv_bytes"]), 0.0, calib))
    else:
        weights = sum(t.bytes for t in engine.weight_terms(spec, fmt, vision=False, audio=False))  # as it stores them
        scalars = spec.text.num_layers * (4 if fmt == "fp32" else 2)  # layer_scalar buffers, not priced weights
        out.append(Check(index, label, "param_bytes", weights, float(row["param_bytes"]) - scalars, 0.0, calib))
        kv = kv_dtype_of(impl, fmt)
        memory = estimate_memory(spec, ctx=cache_ctx, batch=batch, quant=fmt, kv_dtype=kv, engine=engine,
                                 device_kind="cpu" if cpu else "gpu")
        out.append(Check(index, label, "kv_bytes", memory.by_category()["kv_cache"], float(row["kv_bytes"]), 0.0,
                         calib))
    # on a CPU the host is the device: host-resident terms (mapped embeddings, logits) are in the same RSS
    out.append(Check(index, label, "prefill_peak_bytes", memory.total(None if cpu else Location.ACCELERATOR),
                     float(row["prefill_peak_bytes"]), TOLERANCES["prefill_peak_bytes"], calib))
    if impl == "g4sim":  # --components rows: per component, held on float weights (int rows add dequant work)
        peaks = component_peaks(row, engine, spec.text, ctx=cache_ctx, batch=batch, quant=fmt)
        for figure, predicted, measured, tolerance in peaks:  # 5 %, or the CPU probe's resolution on small regions
            out.append(Check(index, label, figure, predicted, measured,
                             tolerance if fmt in ("fp32", "bf16", "fp16") else None, calib))
    speed_tol = TOLERANCES["prefill_tokens_per_s"] if split == "held-out" else None
    prefill = predict(engine, Workload(spec, ctx, batch, fmt, kv), device)
    out.append(Check(index, label, "prefill_tokens_per_s", prefill.prefill_tokens_per_s,
                     float(row["prefill_tokens_per_s"]), speed_tol, calib))
    steps = int(row.get("decode_steps") or 0)
    if steps and row.get("decode_tokens_per_s") not in ("", None):
        decode = predict(engine, Workload(spec, ctx + steps // 2, batch, fmt, kv), device)
        out.append(Check(index, label, "decode_tokens_per_s", decode.decode_tokens_per_s,
                         float(row["decode_tokens_per_s"]), speed_tol, calib))
    return out


def validate(store: Path | None = None, calibration_models: set[str] | None = None) -> list[Check]:
    from g4sim.measure.measurements import load_store

    frame = load_store(store)
    if frame.empty:
        return []
    frame = frame[frame["status"] == "ok"]
    checks: list[Check] = []
    for index, row in frame.iterrows():
        checks += checks_for_row(int(index), {k: (None if v != v else v) for k, v in row.items()}, calibration_models)
    return checks


def summary(checks: list[Check]) -> list[dict[str, Any]]:
    """Per figure and split (in-sample calibration rows and held-out rows apart):
    rows, rows held to the tolerance, mean |error|, worst error, failures."""
    by: dict[tuple[str, str], list[Check]] = {}
    for c in checks:
        by.setdefault((c.figure, c.split), []).append(c)
    rows = []
    for (figure, split), cs in sorted(by.items(), key=lambda kv: (list(TOLERANCES).index(kv[0][0]),
                                                                   SPLITS.index(kv[0][1]))):
        held = [c for c in cs if c.tolerance is not None]
        worst = max(cs, key=lambda c: abs(c.error))
        rows.append({"figure": figure, "split": split, "rows": len(cs), "held_to_tolerance": len(held),
                     "mean_abs_error": sum(abs(c.error) for c in cs) / len(cs), "worst_error": worst.error,
                     "worst_config": worst.config, "tolerance": TOLERANCES[figure],
                     "failures": sum(not c.ok for c in cs)})
    return rows
