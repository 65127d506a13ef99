"""Fit an engine's speed terms on one backend class, and measure them on rows the fit did not see.

A run, measured here (``g4sim profile --impl llamacpp``) or published (``reports/published/runs.csv``),
becomes a ``SpeedRow``: the work g4sim computes for it (the FLOPs the engine runs, bytes a decode step
moves, forward passes, layers: ``g4sim.evaluation.speed.work``) beside the seconds it took.  The
terms of ``g4sim.evaluation.speed.EngineSpeed`` are linear in the unknowns

    prefill_s = F / (P e_p[family]) + X expert_rows_at_peak / P + passes x layers x prefill_layer_seconds
    decode_s  = B / (W e_d[family]) + layers x decode_layer_seconds

so each phase is a least-squares fit of relative error (every row counts alike, whatever its size)
over the calibration rows, with every coefficient kept non-negative (the best of all subsets of
coefficients that come out non-negative: a handful of unknowns) and each fraction capped at 1, so a
prediction never beats its roofline.  Only rows whose ``split`` says calibration are fitted; the
held-out rows are scored afterwards through ``predict`` itself, the path ``g4sim plan`` takes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class SpeedRow:
    """One run, as the speed terms see it (units in the names)."""

    label: str
    source: str
    split: str  # calibration or held-out (frozen before any fit)
    family: str  # format family (g4sim.evaluation.speed.format_family)
    layers: int
    passes: int  # forward passes over the prompt (micro-batches)
    peak_flop_per_s: float
    bandwidth_bytes_per_s: float
    prefill_flop: float
    expert_flop_per_row: float
    decode_bytes: float
    prefill_s: float | None  # measured / published seconds of the prefill; None when not reported
    decode_step_s: float | None  # seconds of one decode step (all sequences)
    # > 0: the decode figure is end to end (generated tokens over the whole request, prefill included, as
    # `vllm bench serve`'s output throughput), for this many generated tokens per request
    end_to_end_gen: int = 0


def speed_row(engine, w, device, *, prefill_s: float | None, decode_step_s: float | None, split: str, label: str,
              source: str, decode_ctx: int | None = None, end_to_end_gen: int = 0) -> SpeedRow:
    """The work of ``w`` under ``engine`` on ``device``, beside measured seconds (decode at ``decode_ctx``)."""
    from dataclasses import replace

    from g4sim.evaluation.speed import format_family, work

    p_flop, expert_per_row, _p_bytes, _d_flop, _ = work(engine, w)
    d_bytes = work(engine, replace(w, ctx=decode_ctx or w.ctx))[4]
    passes = -(-w.batch * w.ctx // max(1, engine.chunk_tokens(w.ctx)))
    return SpeedRow(label, source, split, format_family(w.quant), w.spec.text.num_layers, passes,
                    engine.peak_flops_on(w.quant, device), device.memory_bandwidth_bytes_per_s, p_flop, expert_per_row,
                    d_bytes, prefill_s, decode_step_s, end_to_end_gen)


MIN_FAMILY_ROWS = 3  # a format family gets its own fraction from this many calibration rows; fewer pool as "*"
MIN_FIXED_ROWS = 4  # the fixed per-layer and expert terms are fitted only from this many rows (else 0: the
# roofline terms alone, one pooled fraction, so two rows never fit three unknowns)


def _work_s(r: SpeedRow, phase: str) -> float:
    """The row's roofline seconds of the phase's main term: FLOPs at peak (prefill), bytes at bandwidth (decode)."""
    return r.prefill_flop / r.peak_flop_per_s if phase == "prefill" else r.decode_bytes / r.bandwidth_bytes_per_s


def _features(r: SpeedRow, phase: str, families: list[str], fixed: bool) -> tuple[list[float], list[str]]:
    """One row's coefficients of one phase's unknowns: per family the roofline seconds again (its unknown is
    1 / fraction - 1, so a fraction never exceeds 1), then the fixed per-layer and (prefill) expert terms."""
    values, names = [], []
    for fam in families:
        values.append(_work_s(r, phase) if (r.family if r.family in families else "*") == fam else 0.0)
        names.append(f"{phase}:{fam}")
    if fixed:
        values.append(r.passes * r.layers if phase == "prefill" else r.layers)
        names.append(f"{phase}:layer_seconds")
        if phase == "prefill":
            values.append(r.expert_flop_per_row / r.peak_flop_per_s)
            names.append("prefill:expert_rows_at_peak")
    return values, names


def nonnegative_lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min |a x - b| with x >= 0: the best least-squares solution over subsets of columns that is non-negative."""
    n = a.shape[1]
    best, best_res = np.zeros(n), float(np.sum(b * b))
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            x, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.all(x >= 0):
                res = float(np.sum((a[:, cols] @ x - b) ** 2))
                if res < best_res - 1e-15:
                    best_res, best = res, np.zeros(n)
                    best[list(cols)] = x
    return best


def _plan(rows: list[SpeedRow], phase: str) -> tuple[list[str], bool]:
    """(families with their own unknown, "*" pooling the rest; whether the fixed terms are fitted) of a phase."""
    if not rows:
        return [], False
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.family] = counts.get(r.family, 0) + 1
    fixed = len(rows) >= MIN_FIXED_ROWS
    families = sorted(f for f, n in counts.items() if n >= MIN_FAMILY_ROWS and fixed)
    pooled = len(rows) - sum(counts[f] for f in families)
    # rows of families too thin to stand alone pool as "*" -- if the pool itself has a family's worth of rows,
    # or nothing else was fitted; otherwise they take the fitted families' mean and do not fit (``_fitted``)
    if pooled and (pooled >= MIN_FAMILY_ROWS or not families):
        families.append("*")
    return families, fixed


def _fitted(r: SpeedRow, families: list[str]) -> bool:
    """Whether the row's format family has an unknown of its own or in the pool."""
    return not families or r.family in families or "*" in families


def fit_class(rows: list[SpeedRow]) -> tuple[dict[str, float], dict[str, float]]:
    """Both phases' terms in one least squares over the calibration rows (an end-to-end decode figure holds its
    prompt's prefill, so it constrains both): (prefill terms, decode terms), fractions at most 1."""
    calib = [r for r in rows if r.split == "calibration"]
    pre_rows = [r for r in calib if r.prefill_s or (r.end_to_end_gen and r.decode_step_s)]
    dec_rows = [r for r in calib if r.decode_step_s]
    (pre_fams, pre_fixed), (dec_fams, dec_fixed) = _plan(pre_rows, "prefill"), _plan(dec_rows, "decode")
    eqs, rhs, names = [], [], []
    for r in calib:
        if not (_fitted(r, pre_fams) and _fitted(r, dec_fams)):
            continue  # a thin family outside the pool: predicted with the fitted families' mean, not fitted
        p_val, p_names = _features(r, "prefill", pre_fams, pre_fixed)
        d_val, d_names = _features(r, "decode", dec_fams, dec_fixed)
        names = p_names + d_names
        share = 1 / r.end_to_end_gen if r.end_to_end_gen else 0.0  # the prompt's prefill in each generated token
        for t, row, roof in ((r.prefill_s, p_val + [0.0] * len(d_val), _work_s(r, "prefill")),
                             (r.decode_step_s, [v * share for v in p_val] + d_val,
                              _work_s(r, "decode") + share * _work_s(r, "prefill"))):
            if t:
                eqs.append([v / t for v in row])  # relative error: each row divided by its time
                rhs.append((t - roof) / t)
    if not eqs:
        return {}, {}
    x = nonnegative_lstsq(np.array(eqs), np.array(rhs))
    out: tuple[dict[str, float], dict[str, float]] = ({}, {})
    for name, v in zip(names, x):
        phase, term = name.split(":")
        fams = pre_fams if phase == "prefill" else dec_fams
        out[phase == "decode"][term] = float(1.0 / (1.0 + v)) if term in fams else float(v)
    return out


def terms_from_fit(prefill: dict[str, float], decode: dict[str, float], provenance: str) -> dict:
    """The YAML entry of one class (g4sim/evaluation/speed_classes.yaml), rounded to what the data supports."""
    fams_p = {k: round(v, 4) for k, v in prefill.items() if k not in ("layer_seconds", "expert_rows_at_peak")}
    fams_d = {k: round(v, 4) for k, v in decode.items() if k != "layer_seconds"}
    return {"prefill_compute": fams_p, "decode_bandwidth": fams_d,
            "prefill_layer_seconds": float(f"{prefill.get('layer_seconds', 0.0):.4g}"),
            "decode_layer_seconds": float(f"{decode.get('layer_seconds', 0.0):.4g}"),
            "expert_rows_at_peak": round(prefill.get("expert_rows_at_peak", 0.0), 2), "provenance": provenance}


def band(errors: list[float]) -> dict:
    """Median and 90th percentile of |relative error|, and the count."""
    if not errors:
        return {"median": None, "p90": None, "n": 0}
    e = sorted(abs(x) for x in errors)
    return {"median": round(float(np.median(e)), 4), "p90": round(float(np.percentile(e, 90)), 4), "n": len(e)}


# ---- the runs: measured here, and published ---------------------------------------------------

@dataclass(frozen=True)
class Run:
    """A run and how to predict it: the engine with its settings, the workload, the device, the decode depth."""

    row: SpeedRow
    engine: object
    workload: object
    device: object
    decode_ctx: int
    key: str  # engine/backend class
    gpus: int = 1


CONTENDED = 0.10  # other processes took more than this share of one core during a timed phase: not a timing


def contended(row: dict, phase: str) -> bool:
    """Whether other work shared the CPU during the phase (``<phase>_others_cpu_s`` over its wall seconds);
    rows measured before that column existed count as uncontended (their load_1min says what it was)."""
    others = row.get(f"{phase}_others_cpu_s")
    seconds = row.get(f"{phase}_seconds")
    return others not in (None, "") and bool(seconds) and float(others) > CONTENDED * float(seconds)


def store_runs(store=None, impl: str = "llamacpp") -> list[Run]:
    """Every ok row an engine ran in the measurement store (``g4sim profile --impl``), with its frozen split;
    a phase timed while other work took the CPU (``contended``) is left out of the run."""
    from g4sim.engines import Workload
    from g4sim.evaluation.speed import speed_class_of
    from g4sim.hardware import get_profile
    from g4sim.measure.measurements import load_store
    from g4sim.measure.split import row_spec, split_of, weight_format
    from g4sim.measure.validate import engine_for_impl, kv_dtype_of

    frame = load_store(store)
    if frame.empty:
        return []
    frame = frame[(frame["status"] == "ok") & (frame["engine"].fillna("g4sim") == impl)]
    runs = []
    for _, r in frame.iterrows():
        row = {k: (None if v != v else v) for k, v in r.items()}
        spec, fmt, ctx = row_spec(row), weight_format(row), int(row["ctx"])
        steps = int(row["decode_steps"] or 0)
        engine = engine_for_impl(impl, int(row.get("chunk") or 0) or None, ctx)
        device = get_profile(str(row["device"]))
        w = Workload(spec, ctx, int(row["batch"]), fmt, kv_dtype_of(impl, fmt))
        decode_ctx = ctx + steps // 2
        label = f"{row['model']}[{row['layers']}L] {fmt} ctx {ctx}"
        prefill_s = None if contended(row, "prefill") else float(row["prefill_seconds"])
        step_s = float(row["decode_seconds"]) / steps if steps and not contended(row, "decode") else None
        sr = speed_row(engine, w, device, prefill_s=prefill_s, decode_step_s=step_s, split=split_of(row),
                       label=label, source=f"measured: {row['command']} ({row['date_utc']}, load {row['load_1min']})",
                       decode_ctx=decode_ctx)
        runs.append(Run(sr, engine, w, device, decode_ctx, speed_class_of(engine, device)))
    return runs


LITERT_SPEED = "reports/measurements/litert-lm/speed.csv"


def litert_runs(path=None) -> list[Run]:
    """LiteRT-LM timed on this project's CPU (scripts/litert/measure.sh, reports/measurements/litert-lm): each row
    names its export's config, cache length, format, threads and device profile; its split was frozen before it ran."""
    import csv
    from dataclasses import replace
    from pathlib import Path

    from g4sim.engines import Workload, get_engine
    from g4sim.evaluation.speed import speed_class_of
    from g4sim.hardware import get_profile
    from g4sim.spec import load_config

    path = Path(path or Path(__file__).resolve().parents[2] / LITERT_SPEED)
    runs = []
    for r in csv.DictReader(path.open(newline="")):
        engine = replace(get_engine("litert-lm", backend="cpu", cpu_thread_count=int(r["threads"])),
                         cache_length=int(r["cache_length"]))  # the export's, not a runtime setting
        device = get_profile(r["device_profile"])
        prompt, gen = int(r["prompt_tokens"]), int(r["gen_tokens"])
        w = Workload(load_config(path.parent / r["config"]), prompt, 1, r["format"], "fp32")
        sr = speed_row(engine, w, device, prefill_s=prompt / float(r["prefill_tokens_per_s"]),
                       decode_step_s=1 / float(r["decode_tokens_per_s"]), split=r["split"], label=r["tag"],
                       source=f"measured: {r['command']} ({r['date_utc']}, load {r['load_1min_before']})",
                       decode_ctx=prompt + gen // 2)
        runs.append(Run(sr, engine, w, device, prompt + gen // 2, speed_class_of(engine, device)))
    return runs


# engines timed outside `g4sim profile`: their measured runs, by engine name
MEASURED_RUNS = {"litert-lm": litert_runs}

PUBLISHED = "reports/published/runs.csv"
# The published format names as g4sim's formats: AWQ / GPTQ int4 checkpoints are group-128 int4, MLX's
# quantizations group 64.  Formats g4sim does not price (iq4_nl, unsloth's ud-q4_k_xl mixes) leave their rows
# out, each named in ``published_runs``' skipped list.
PUBLISHED_FORMATS = {"awq-int4": "int4-g128", "gptq-int4": "int4-g128", "mlx-4bit": "mlx-4bit-g64",
                     "mlx-8bit": "mlx-8bit-g64"}


def published_runs(path=None) -> tuple[list[Run], list[tuple[str, str]]]:
    """The published dataset as runs g4sim can predict, and (id, why) for every row it cannot."""
    import csv
    from pathlib import Path

    from g4sim.analytic.quant import QUANT_FORMATS, get_quant
    from g4sim.engines import ENGINES, EngineError, Workload, get_engine
    from g4sim.hardware import get_profile
    from g4sim.spec import get_variant

    path = Path(path or Path(__file__).resolve().parents[2] / PUBLISHED)
    runs, skipped = [], []
    for r in csv.DictReader(path.open(newline="")):
        fmt = PUBLISHED_FORMATS.get(r["format"], r["format"])
        why = ("no g4sim engine for " + r["engine"] if r["engine"] not in ENGINES else
               "no g4sim profile for " + r["device"] if not r["device_profile"] else
               f"format {r['format']} is not one g4sim prices" if fmt not in QUANT_FORMATS else
               f"speculative decoding ({r['speculative']})" if r["speculative"] not in ("", "none") else None)
        if why is None:
            try:
                engine = get_engine(r["engine"], **ENGINES[r["engine"]].published_settings(r))
            except EngineError as exc:
                why = str(exc)
        if why is None:
            device = get_profile(r["device_profile"])
            cls = engine.backend_on(device)
            if r["backend"] != cls.split("-")[0] and r["backend"] != cls:
                why = f"backend {r['backend']} is not what g4sim runs {r['engine']} on there ({cls})"
        if why:
            skipped.append((r["id"], why))
            continue
        batch, gpus = int(r["concurrency"] or 1), int(r["gpus"] or 1) or 1
        prompt, gen, depth = int(r["prompt_tokens"] or 0), int(r["gen_tokens"] or 128), int(r["depth_tokens"] or 0)
        # llama-bench's tg runs start from the depth alone; a served request decodes after its prompt
        decode_ctx = depth + gen // 2 + (0 if r["engine"] == "llamacpp" else prompt)
        kv = get_quant(fmt).kv_dtype or ("fp16" if r["engine"] in ("llamacpp", "ollama") else "bf16")
        w = Workload(get_variant(r["model"]), prompt or decode_ctx, batch, fmt, kv)
        why = engine.compatibility(w, device, gpus)
        if why:  # as g4sim plan would refuse it
            skipped.append((r["id"], why))
            continue
        prefill = float(r["prefill_tokens_per_s"]) if r["prefill_tokens_per_s"] and prompt else None
        decode = float(r["decode_tokens_per_s"]) if r["decode_tokens_per_s"] else None
        per_request = "per-request" in r["notes"] or "per user" in r["notes"] and "aggregate" not in r["notes"]
        step = (1 / decode if per_request else batch / decode) if decode else None
        sr = speed_row(engine, w, device, prefill_s=batch * prompt / prefill if prefill else None, decode_step_s=step,
                       split=r["split"], label=r["id"], source=r["source_url"], decode_ctx=decode_ctx,
                       end_to_end_gen=gen if r["decode_metric"] == "end-to-end" and prompt else 0)
        runs.append(Run(sr, engine, w, device, decode_ctx, f"{engine.name}/{cls}", gpus))
    return runs, skipped


def predicted_seconds(run: Run, terms) -> tuple[float, float]:
    """(prefill seconds, decode-step seconds) that ``predict`` gives for the run under ``terms``."""
    from dataclasses import replace

    from g4sim.evaluation.speed import predict

    p = predict(run.engine, run.workload, run.device, run.gpus, terms=terms)
    d = predict(run.engine, replace(run.workload, ctx=run.decode_ctx), run.device, run.gpus, terms=terms)
    gen = run.row.end_to_end_gen
    step = d.decode_step_seconds + (p.prefill_seconds / gen if gen else 0.0)
    return p.prefill_seconds, step


def score(runs: list[Run], terms) -> list[dict]:
    """Every run's predicted vs measured speed (tokens/s error = measured seconds / predicted seconds - 1)."""
    out = []
    for run in runs:
        p_s, d_s = predicted_seconds(run, terms)
        r = run.row
        w = run.workload
        for phase, measured, predicted, tokens in (("prefill", r.prefill_s, p_s, w.batch * w.ctx),
                                                   ("decode", r.decode_step_s, d_s, w.batch)):
            if measured:
                out.append({"label": r.label, "class": run.key, "phase": phase, "split": r.split, "tokens": tokens,
                            "source": r.source, "measured_s": measured, "predicted_s": predicted,
                            "error": measured / predicted - 1})  # error of tokens/s: rate = 1 / seconds
    return out


def bands_by_split(scored: list[dict]) -> dict[str, dict[str, dict]]:
    """split -> phase -> band."""
    out: dict[str, dict[str, dict]] = {}
    for split in ("calibration", "held-out"):
        out[split] = {phase: band([s["error"] for s in scored if s["split"] == split and s["phase"] == phase])
                      for phase in PHASES}
    return out


def fit_runs(runs: list[Run], key: str, provenance: str) -> tuple[dict, list[dict]]:
    """Fit one class on its calibration runs, score every run through ``predict``; (YAML entry, scored rows)."""
    from g4sim.evaluation.speed import engine_speed

    mine = [r for r in runs if r.key == key]
    prefill, decode = fit_class([r.row for r in mine])
    entry = terms_from_fit(prefill, decode, provenance)
    scored = score(mine, engine_speed(key, entry))
    bands = bands_by_split(scored)
    entry["bands"] = bands["held-out"]
    entry["in_sample"] = bands["calibration"]
    return entry, scored


def calibrate(runs: list[Run], provenance: str) -> tuple[dict[str, dict], list[dict]]:
    """Fit every class the runs cover that has calibration rows; (class -> YAML entry, scored rows)."""
    entries, scored = {}, []
    for key in sorted({r.key for r in runs}):
        if not any(r.key == key and r.row.split == "calibration" for r in runs):
            continue
        entries[key], rows = fit_runs(runs, key, provenance)
        scored += rows
    return entries, scored


def write_classes(entries: dict[str, dict], path=None) -> object:
    """Merge fitted classes into speed_classes.yaml (other classes kept), atomically."""
    from pathlib import Path

    import yaml

    from g4sim.evaluation.speed import SPEED_CLASSES, speed_classes
    from g4sim.files import atomic

    path = Path(path or SPEED_CLASSES)
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    data = {**(data or {}), **entries}
    header = ("# Speed terms per engine/backend class (g4sim/evaluation/speed.py EngineSpeed), written by\n"
              "# `g4sim calibrate --engine ... --write` / `--published --write` (g4sim/measure/speedfit.py).\n"
              "# bands: held-out |error| of tokens/s (median, p90, n); in_sample: the same on the calibration rows.\n")
    with atomic(path) as tmp, open(tmp, "w") as f:
        f.write(header)
        yaml.safe_dump(dict(sorted(data.items())), f, sort_keys=False, width=120)
    speed_classes.cache_clear()
    return path


def validate_shipped(runs: list[Run]) -> tuple[list[dict], dict[str, dict[str, dict[str, dict]]]]:
    """Score runs with the shipped terms through ``predict``: (scored rows, class -> split -> phase -> band)."""
    from g4sim.evaluation.speed import speed_classes

    shipped = speed_classes()
    scored = score([r for r in runs if r.key in shipped], None)
    return scored, {key: bands_by_split([s for s in scored if s["class"] == key])
                    for key in sorted({s["class"] for s in scored})}
