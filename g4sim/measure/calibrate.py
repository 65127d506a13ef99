"""Fit a hardware profile's achieved efficiencies from its measurements, and write them back.

Prefill efficiency = roofline time / measured time (the fraction of peak FLOP/s achieved); decode
efficiency = (bytes per step / bandwidth) / measured step time (the fraction of bandwidth
achieved).  Each is the geometric mean over the calibration rows of one compute dtype (float
weights), or of one weight-only format (int8, int4-g128: g4sim's packed kernels, ``efficiency.by_format``),
fitted on the dense CALIBRATION_MODELS.  Then the MoE rows in CALIBRATION_MOE
(26b-a4b at fp32) fix ``expert_gemm_half_rows``: the extra time their routed-expert GEMMs take at m rows each,
modelled as an efficiency m / (m + half_rows) of the dense one.  ``g4sim validate`` holds the
other rows to the tolerances.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import yaml

from g4sim.files import atomic

from g4sim.measure.split import CALIBRATION_MODELS, CALIBRATION_MOE, row_spec, split_of, weight_format


def _g4sim_rows(store: Path | None, device: str):
    """The store's ok rows of g4sim's own model on ``device``: other implementations' rows never calibrate it."""
    from g4sim.measure.measurements import load_store

    frame = load_store(store)
    return frame[(frame["status"] == "ok") & (frame["device"] == device) & (frame["engine"].fillna("g4sim") == "g4sim")]


def fit(store: Path | None = None, device: str = "ci-cpu-2core",
        models: set[str] = CALIBRATION_MODELS) -> dict[str, dict[str, float]]:
    from g4sim.analytic.work import (compute_dtype, decode_step_bytes, expert_rows, prefill_expert_flop, prefill_flop,
                                     prefill_weight_bytes)
    from g4sim.engines import get_engine
    from g4sim.hardware import WEIGHT_ONLY_FORMATS, get_profile

    ours = _g4sim_rows(store, device)
    frame = ours[ours["model"].isin(models)]
    frame = frame[[split_of(r) == "calibration" for _, r in frame.iterrows()]]  # the frozen split decides
    prof = get_profile(device)
    samples: dict[str, dict[str, list[float]]] = {}
    engine = get_engine("g4sim")
    for _, row in frame.iterrows():
        fmt = weight_format(row)
        if fmt not in ("fp32", "bf16", "fp16") + WEIGHT_ONLY_FORMATS:
            continue
        spec, dtype = row_spec(row), compute_dtype(fmt)
        head = engine.head_quant(spec.text, fmt)  # the weight-only formats' int8 tied head
        peak, bw = prof.flops(dtype), prof.memory_bandwidth_bytes_per_s
        ctx, batch, steps = int(row["ctx"]), int(row["batch"]), int(row["decode_steps"])
        p_roof = max(prefill_flop(spec, ctx, batch) / peak, prefill_weight_bytes(spec, fmt, None, head) / bw)
        # float rows fit their compute dtype's pair; weight-only rows their format's own (efficiency.by_format)
        s = samples.setdefault(fmt if fmt in WEIGHT_ONLY_FORMATS else dtype, {"prefill": [], "decode": []})
        s["prefill"].append(p_roof / float(row["prefill_seconds"]))
        if steps:
            step = float(row["decode_seconds"]) / steps
            mid = ctx + steps // 2
            d_bytes = decode_step_bytes(spec, mid, batch, fmt, "bf16" if fmt != "fp32" else "fp32",
                                        lambda layer, n: engine.kv_cells(spec.text, layer, n), None, head)
            s["decode"].append(d_bytes / bw / step)
    geo = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))  # noqa: E731
    fitted = {dtype: {"prefill_compute": round(min(1.0, geo(v["prefill"])), 4),
                      "decode_bandwidth": round(min(1.0, geo(v["decode"])), 4), "rows": len(v["prefill"])}
              for dtype, v in samples.items() if v["prefill"] and v["decode"]}
    halves = []
    for _, row in ours.iterrows():
        fmt = weight_format(row)
        if (row["model"], fmt) not in CALIBRATION_MOE or split_of(row) != "calibration":
            continue
        spec, dtype = row_spec(row), compute_dtype(fmt)
        if dtype not in fitted:
            continue
        ctx, batch = int(row["ctx"]), int(row["batch"])
        work = float(row["prefill_seconds"]) * prof.flops(dtype) * fitted[dtype]["prefill_compute"]
        extra = work - prefill_flop(spec, ctx, batch)
        halves.append(max(0.0, extra * expert_rows(spec, batch * ctx) / prefill_expert_flop(spec, ctx, batch)))
    if halves:
        for v in fitted.values():
            v["expert_gemm_half_rows"] = round(sum(halves) / len(halves), 2)
    return fitted


def write_back(device: str, fitted: dict[str, dict[str, float]], note: str) -> Path:
    """Rewrite the profile's efficiency block (keeping every other field) atomically."""
    from g4sim.hardware import WEIGHT_ONLY_FORMATS, _load_all, get_profile, parse_profile

    path = Path(get_profile(device).path)
    data = yaml.safe_load(path.read_text())
    eff = data["efficiency"]
    pair = lambda v: {"prefill_compute": v["prefill_compute"], "decode_bandwidth": v["decode_bandwidth"]}  # noqa: E731
    halves = {v["expert_gemm_half_rows"] for v in fitted.values() if "expert_gemm_half_rows" in v}
    half_rows = halves.pop() if halves else eff.get("expert_gemm_half_rows")
    # re-added below in numeric_fields' order; the bands of the old efficiencies go (write_bands adds the new ones)
    for key in ("by_dtype", "by_format", "expert_gemm_half_rows", "bands"):
        eff.pop(key, None)
    eff["by_dtype"] = {d: pair(v) for d, v in fitted.items() if d not in WEIGHT_ONLY_FORMATS}
    by_format = {f: pair(v) for f, v in fitted.items() if f in WEIGHT_ONLY_FORMATS}
    if by_format:
        eff["by_format"] = by_format
    if half_rows is not None:
        eff["expert_gemm_half_rows"] = half_rows
    eff["provenance"] = note
    # every figure written is a calibrated one: stamp its provenance entry (in file order), drop removed ones
    prov = data.setdefault("provenance", {})
    for key in [k for k in prov if k.startswith(("efficiency.by_dtype.", "efficiency.by_format.",
                                                 "efficiency.expert_gemm_half_rows", "efficiency.bands."))]:
        del prov[key]
    written = [f"efficiency.{block}.{d}.{k}" for block in ("by_dtype", "by_format") for d in eff.get(block) or {}
               for k in ("prefill_compute", "decode_bandwidth")]
    written += ["efficiency.expert_gemm_half_rows"] if "expert_gemm_half_rows" in eff else []
    for key in written:
        prov[key] = {"kind": "calibrated", "source": note}
    parse_profile(data, path)  # refuse to write a profile that would not load
    _dump(path, data)
    _load_all.cache_clear()
    return path


def heldout_bands(store: Path | None = None, device: str = "ci-cpu-2core") -> dict[str, dict]:
    """phase -> band (median, p90 and n of |error| of tokens/s) over g4sim's held-out rows on ``device``, predicted
    through the profile as it now stands: the error a g4sim plan there carries (efficiency.bands)."""
    from g4sim.measure.speedfit import band
    from g4sim.measure.validate import checks_for_row

    frame = _g4sim_rows(store, device)
    errors: dict[str, list[float]] = {"prefill": [], "decode": []}
    for index, row in frame.iterrows():
        if split_of(row) != "held-out":
            continue
        for c in checks_for_row(int(index), {k: (None if v != v else v) for k, v in row.items()}):
            if c.figure in ("prefill_tokens_per_s", "decode_tokens_per_s"):
                errors[c.figure.split("_")[0]].append(c.error)
    return {phase: band(e) for phase, e in errors.items()}


def write_bands(device: str, bands: dict[str, dict], note: str) -> Path:
    """Store ``heldout_bands`` in the profile's efficiency block (calibrated figures, provenance stamped)."""
    from g4sim.hardware import BAND_FIGURES, _load_all, get_profile, parse_profile

    path = Path(get_profile(device).path)
    data = yaml.safe_load(path.read_text())
    data["efficiency"]["bands"] = {phase: dict(b) for phase, b in bands.items()}
    prov = data.setdefault("provenance", {})
    for key in [k for k in prov if k.startswith("efficiency.bands.")]:
        del prov[key]
    for phase, b in bands.items():
        for key in BAND_FIGURES:
            if b[key] is not None:
                prov[f"efficiency.bands.{phase}.{key}"] = {"kind": "calibrated", "source": note}
    parse_profile(data, path)  # refuse to write a profile that would not load
    _dump(path, data)
    _load_all.cache_clear()
    return path


def _dump(path: Path, data: dict) -> None:
    header = path.read_text().splitlines()[0] if path.read_text().startswith("#") else ""
    with atomic(path) as tmp, open(tmp, "w") as f:
        if header:
            f.write(header + "\n")
        yaml.safe_dump(data, f, sort_keys=False, width=120)


def calibration_note(fitted: dict[str, dict[str, float]], commit: str) -> str:
    rows = sum(v["rows"] for v in fitted.values())
    date = dt.datetime.now(dt.timezone.utc).date().isoformat()
    return (f"calibrated by `g4sim calibrate` on {date} at g4sim {commit} from {rows} measured rows of "
            f"{', '.join(sorted(CALIBRATION_MODELS))} (float, and int8 / int4-g128 for efficiency.by_format) and "
            "26b-a4b fp32 (frozen split v4, g4sim/measure/split.py; reports/measurements); held out: e4b (float and "
            "int) and 26b-a4b bf16 / int8 / int4-g128")
