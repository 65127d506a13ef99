"""The cross product of models x devices x weight formats x contexts as one tidy pandas table.

Speed: memory depends on (model, format, context, device kind) and the FLOP / byte counts of the
throughput model on (model, format, context) only, so each is computed once and every device is
then a few multiplications.  pandas is imported here, never on the ``g4sim plan`` path.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from g4sim.analytic import QUANT_FORMATS, estimate_memory
from g4sim.engines import get_engine
from g4sim.hardware import HardwareProfile, load_profiles
from g4sim.plan import DEFAULT_PREFILL_CHUNK
from g4sim.spec import VARIANTS, ModelSpec
from g4sim.throughput import (compute_dtype, decode_step_bytes, decode_step_flop, efficiencies, expert_rows,
                              prefill_expert_flop, prefill_flop, prefill_weight_bytes)

DEFAULT_CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768, 49152, 65536, 98304, 131072, 196608, 262144)
FORMATS = {".csv", ".parquet", ".json"}


@dataclass(frozen=True)
class SweepAxes:
    models: tuple[str, ...] = tuple(VARIANTS)
    devices: tuple[str, ...] = ()
    quants: tuple[str, ...] = tuple(QUANT_FORMATS)
    contexts: tuple[int, ...] = DEFAULT_CONTEXTS
    kv_dtype: str = "bf16"
    engine: str = "transformers"
    batch: int = 1
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK


@lru_cache(maxsize=None)
def _memory(spec: ModelSpec, quant: str, ctx: int, kind: str, kv: str, engine: str, batch: int, chunk: int):
    m = estimate_memory(spec, ctx=ctx, batch=batch, quant=quant, kv_dtype=kv, engine=engine,
                        prefill_chunk=chunk, device_kind=kind)
    return m.by_category(), m.total(), m.total("host")


@lru_cache(maxsize=None)
def _work(spec: ModelSpec, quant: str, ctx: int, kv: str, engine: str, batch: int):
    eng = get_engine(engine)
    expert = prefill_expert_flop(spec, ctx, batch) / expert_rows(spec, batch * min(ctx, DEFAULT_PREFILL_CHUNK))
    return (prefill_flop(spec, ctx, batch), prefill_weight_bytes(spec, quant),
            decode_step_flop(spec, ctx, batch), decode_step_bytes(spec, ctx, batch, quant, kv, eng), expert)


def _speeds(dev: HardwareProfile, quant: str, work, ctx: int, batch: int) -> dict[str, float]:
    p_flop, p_bytes, d_flop, d_bytes, expert_per_row = work
    dtype = compute_dtype(quant)
    peak, bw = dev.flops(dtype), dev.memory_bandwidth_bytes_per_s
    eff_p, eff_d, _ = efficiencies(dev, dtype)
    p_work = p_flop + expert_per_row * dev.efficiency.expert_gemm_half_rows  # as throughput.predict
    prefill_s = max(p_work / (peak * eff_p), p_bytes / (bw * eff_d))
    step_s = max(d_bytes / (bw * eff_d), d_flop / (peak * eff_p))
    return {"ttft_s": prefill_s, "prefill_tokens_per_s": batch * ctx / prefill_s,
            "prefill_tokens_per_s_roofline": batch * ctx / max(p_flop / peak, p_bytes / bw),
            "decode_tokens_per_s": batch / step_s,
            "decode_tokens_per_s_roofline": batch / max(d_bytes / bw, d_flop / peak)}


def sweep(axes: SweepAxes):
    """One row per (model, device, format, context): memory by category, verdict, headroom, speeds."""
    import pandas as pd

    profiles = load_profiles()
    devices = [profiles[d] for d in (axes.devices or tuple(profiles))]
    rows = []
    for model in axes.models:
        spec = VARIANTS[model]
        for quant in axes.quants:
            for ctx in axes.contexts:
                if ctx > spec.max_context:
                    continue
                work = _work(spec, quant, ctx, axes.kv_dtype, axes.engine, axes.batch)
                for dev in devices:
                    kind = "gpu" if dev.kind == "gpu" else "cpu"
                    cats, total, host = _memory(spec, quant, ctx, kind, axes.kv_dtype, axes.engine, axes.batch,
                                                axes.prefill_chunk)
                    usable = dev.usable_memory_bytes
                    rows.append({
                        "model": model, "device": dev.name, "quant": quant, "kv_dtype": axes.kv_dtype,
                        "engine": axes.engine, "ctx": ctx, "batch": axes.batch,
                        **{f"{c}_bytes": v for c, v in cats.items()}, "total_bytes": total, "host_bytes": host,
                        "usable_bytes": usable, "fits": total <= usable, "headroom_bytes": usable - total,
                        **_speeds(dev, quant, work, ctx, axes.batch),
                    })
    return pd.DataFrame(rows)


def write_table(frame, path: Path) -> Path:
    """CSV / Parquet / JSON by suffix, written atomically (temp file + rename)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"output {path.name!r}: unknown table format {suffix or '(none)'}; valid: {', '.join(sorted(FORMATS))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
