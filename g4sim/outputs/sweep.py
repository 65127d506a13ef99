"""The cross product of models x devices x weight formats x contexts as one tidy pandas table.

Every row is one ``g4sim.evaluation.evaluate`` — the same call ``g4sim plan`` makes — flattened, so
a row and ``plan --json`` for the same request agree figure for figure (tested).  Combinations the
engine cannot run (or, with ``--engine auto``, no engine can) are left out and counted.  Speed
comes from the evaluation's caches: memory per (engine, workload, device kind), work per (engine,
workload); each device then costs a few multiplications.  The command line writes rows with the
standard library or pyarrow; ``sweep()`` returns a pandas DataFrame for Python users.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g4sim.analytic.quant import QUANT_FORMATS, get_quant
from g4sim.engines import Engine, EngineError, Workload
from g4sim.engines.auto import choose
from g4sim.evaluation import Evaluation, Incompatible, Margin, Request, evaluate
from g4sim.hardware import load_profiles
from g4sim.files import atomic
from g4sim.spec import VARIANTS

DEFAULT_CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768, 49152, 65536, 98304, 131072, 196608, 262144)
FORMATS = {".csv", ".parquet", ".json"}


@dataclass(frozen=True)
class SweepAxes:
    models: tuple[str, ...] = tuple(VARIANTS)
    devices: tuple[str, ...] = ()
    quants: tuple[str, ...] = tuple(QUANT_FORMATS)
    contexts: tuple[int, ...] = DEFAULT_CONTEXTS
    kv_dtype: str = "bf16"
    engine: Engine | None = None  # None: --engine auto, per row
    batch: int = 1
    gpus: int = 1
    margin: Margin = Margin()


def row(e: Evaluation) -> dict[str, Any]:
    """One evaluation as a flat row (the keys of ``plan --json`` it shares keep their meaning)."""
    r, w, s = e.request, e.request.workload, e.speed
    cats = e.memory.by_category()
    return {
        "model": w.spec.name, "device": r.device.name, "gpus": r.gpus, "quant": w.quant, "kv_dtype": w.kv_dtype,
        "engine": r.engine.name, "ctx": w.ctx, "batch": w.batch,
        **{f"{c}_bytes": v for c, v in cats.items()},
        "accelerator_total_bytes": e.memory.total(), "host_bytes": e.host_bytes, "needed_bytes": e.needed_bytes,
        "budget_bytes": e.budget_bytes, "margin_bytes": e.margin_bytes, "headroom_bytes": e.headroom_bytes,
        "verdict": e.verdict.value, "fits": e.loads,
        "ttft_s": s.ttft_seconds, "prefill_tokens_per_s": s.prefill_tokens_per_s,
        "prefill_tokens_per_s_roofline": s.prefill_tokens_per_s_roofline,
        "decode_tokens_per_s": s.decode_tokens_per_s, "decode_tokens_per_s_roofline": s.decode_tokens_per_s_roofline,
        # the speed's band: its engine/backend class and that class's held-out |error| p90 (empty: no fitted terms)
        "speed_class": s.speed_class, "speed_calibrated": s.calibrated,
        "prefill_heldout_error_p90": (s.bands.get("prefill") or {}).get("p90"),
        "decode_heldout_error_p90": (s.bands.get("decode") or {}).get("p90"),
        "launch_command": e.command,
    }


def requests(axes: SweepAxes):
    """Every request of the cross product that an engine can run; yields (request or None, skipped reason)."""
    profiles = load_profiles()
    devices = [profiles[d] for d in (axes.devices or tuple(profiles))]
    chosen: dict[tuple, tuple[Engine | None, str]] = {}  # auto's pick depends on the formats, not the context
    for model in axes.models:
        spec = VARIANTS[model]
        for quant in axes.quants:
            for ctx in axes.contexts:
                if ctx > spec.max_context:
                    continue
                # a format whose file fixes its cache type (a .litertlm's float32 graphs) keeps it
                w = Workload(spec, ctx, axes.batch, quant, get_quant(quant).kv_dtype or axes.kv_dtype)
                for dev in devices:
                    if axes.engine is None:
                        key = (model, quant, w.kv_dtype, axes.batch, dev.name)
                        if key not in chosen:
                            try:
                                chosen[key] = choose(w, dev, axes.gpus)
                            except EngineError as exc:
                                chosen[key] = (None, f"{model} {quant} on {dev.name}")
                        engine, why = chosen[key]
                        if engine is None:
                            yield None, why
                            continue
                    else:
                        engine, why = axes.engine, ""
                    yield Request(w, dev, engine, axes.gpus, axes.margin, engine_reason=why), ""


def sweep_rows(axes: SweepAxes, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per runnable (model, device, format, context); ``skipped`` collects why the rest are not."""
    rows = []
    for req, reason in requests(axes):
        if req is None:
            if skipped is not None:
                skipped.append(reason)
            continue
        try:
            rows.append(row(evaluate(req)))
        except Incompatible:
            if skipped is not None:
                skipped.append(f"{req.spec.name} {req.workload.quant} on {req.device.name} ({req.engine.name})")
    return rows


def sweep(axes: SweepAxes, skipped: list[str] | None = None):
    """``sweep_rows`` as a pandas DataFrame (for notebooks and dashboards)."""
    import pandas as pd

    return pd.DataFrame(sweep_rows(axes, skipped))


def _records(table) -> list[dict[str, Any]]:
    return table.to_dict("records") if hasattr(table, "to_dict") else list(table)


def write_table(table, path: Path) -> Path:
    """CSV / Parquet / JSON by suffix, written atomically (temp file + rename).

    ``table``: sweep rows (a list of dicts) or a DataFrame.  Rows are written with the standard
    library (CSV, JSON) or pyarrow (Parquet), so the command line never needs pandas.
    """
    import json

    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"output {path.name!r}: unknown table format {suffix or '(none)'}; valid: {', '.join(sorted(FORMATS))}")
    records = _records(table)
    columns = list(records[0]) if records else list(getattr(table, "columns", []))
    with atomic(path) as tmp:
        if suffix == ".csv":
            with open(tmp, "w", newline="") as f:
                f.write(csv_text(records, columns))
        elif suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(records) if records else pa.table({c: [] for c in columns}), tmp)
        else:
            with open(tmp, "w") as f:
                json.dump(records, f, indent=1)
    return path


def csv_text(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """The rows as CSV text (what ``g4sim sweep`` prints without ``--out``); a header alone when only
    ``columns`` are known."""
    import csv
    import io

    out = io.StringIO()
    columns = columns or (list(rows[0]) if rows else [])
    if columns:
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


__all__ = ["DEFAULT_CONTEXTS", "FORMATS", "SweepAxes", "csv_text", "row", "sweep", "sweep_rows", "write_table"]
