"""Wall time of `g4sim sweep` over every model x GPU x quantization x 12 contexts (target: under 3 s).

Run: python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "sweep.parquet"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "g4sim", "sweep", "--out", str(out)], check=True, capture_output=True)
        wall = time.perf_counter() - start
        import pandas as pd

        rows = len(pd.read_parquet(out))
    print(f"g4sim sweep, every model x GPU x quant x 12 contexts: {rows:,} rows in {wall:.2f} s wall "
          f"(cold process)   target < 3 s   ratio {wall / 3:.2f} of budget")
