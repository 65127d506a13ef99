"""`g4sim plan` cold and the full `g4sim sweep`, this tree beside a reference commit, in one run.

Run: python benchmarks/bench_plan.py [--against REV]   (default REV: c3ea33f, the tree before "One evaluation")

Each command runs as a fresh process (median of 5 for plan, 3 for sweep), alternating between the
two trees so both see the same machine state.  The reference tree is checked out with
``git worktree`` into a temporary folder and run with ``PYTHONPATH`` pointing at it.  Targets:
plan < 0.5 s, sweep < 1.5 s.  The sweeps differ in what they do (the reference skips nothing and
has no engine choice, margins or commands), so the ratio is what a user waits, not work per row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAN = ["plan", "--model", "26b-a4b", "--ctx", "256k", "--gpu", "rtx4090"]
TARGETS = {"plan": 0.5, "sweep": 1.5}


def seconds(tree: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "g4sim", *args], check=True, capture_output=True, env=env, cwd=tree)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default="c3ea33f")
    rev = parser.parse_args().against
    with tempfile.TemporaryDirectory() as d:
        ref = Path(d) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref), rev], check=True,
                       capture_output=True)
        try:
            runs = {"plan": (PLAN, 5), "sweep": (["sweep", "--out", str(Path(d) / "s.parquet")], 3)}
            print(f"{'command':<8}{'this tree':>12}{rev:>12}{'ratio':>9}{'target':>9}")
            for name, (args, n) in runs.items():
                now, before = [], []
                for _ in range(n):
                    now.append(seconds(ROOT, args))
                    before.append(seconds(ref, args))
                a, b = statistics.median(now), statistics.median(before)
                ok = "ok" if a < TARGETS[name] else "MISSED"
                print(f"{name:<8}{a:>11.3f}s{b:>11.3f}s{a / b:>9.2f}{TARGETS[name]:>8.1f}s {ok}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)], capture_output=True)


if __name__ == "__main__":
    main()
