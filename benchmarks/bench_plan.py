"""Cold wall time of `g4sim plan` and of an in-process sweep of every model x GPU x quant x 12 contexts.

Run: python benchmarks/bench_plan.py     (targets: plan < 1 s cold; printed beside the measurement)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

PLAN = [sys.executable, "-m", "g4sim", "plan", "--model", "26b-a4b", "--ctx", "256k", "--gpu", "rtx4090"]
CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768, 49152, 65536, 98304, 131072, 196608, 262144]


def cold_plan_seconds(runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(PLAN, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sweep_seconds() -> tuple[float, int]:
    from g4sim.engines import estimate_memory
from g4sim.analytic import QUANT_FORMATS
    from g4sim.hardware import load_profiles
    from g4sim.spec import VARIANTS

    start, n = time.perf_counter(), 0
    profiles = load_profiles()
    for spec in VARIANTS.values():
        for quant in QUANT_FORMATS:
            for ctx in CONTEXTS:
                memory = estimate_memory(spec, ctx=min(ctx, spec.max_context), quant=quant, prefill_chunk=4096)
                total = memory.total()
                for prof in profiles.values():
                    n += total <= prof.usable_memory_bytes
    return time.perf_counter() - start, len(VARIANTS) * len(QUANT_FORMATS) * len(CONTEXTS) * len(profiles)


if __name__ == "__main__":
    plan = cold_plan_seconds()
    print(f"g4sim plan (cold process, median of 5): {plan:.3f} s   target < 1 s   ratio {plan / 1.0:.2f} of budget")
    sweep, configs = sweep_seconds()
    print(f"in-process sweep of {configs} configs (model x GPU x quant x 12 ctx): {sweep:.3f} s")
