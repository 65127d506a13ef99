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
TARGETS = {"plan": 0.5, "sweep": 1.5, "plan-512L": 1.0}


def write_longest_config(folder: Path) -> Path | None:
    """A 512-layer config.json (the largest g4sim plans) from the committed E4B fixture."""
    import json

    fixture = ROOT / "tests" / "data" / "configs" / "e4b" / "config.json"
    if not fixture.exists():
        return None
    cfg = json.loads(fixture.read_text())
    t = cfg["text_config"]
    t.update(num_hidden_layers=512, num_kv_shared_layers=0, layer_types=(t["layer_types"] * 20)[:512])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


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
            longest = write_longest_config(Path(d) / "longest")
            if longest:  # the 512-layer bound of a --config (the reference tree may not accept it)
                runs["plan-512L"] = (["plan", "--config", str(longest), "--ctx", "32k"], 3)
            print(f"{'command':<10}{'this tree':>12}{rev:>12}{'ratio':>9}{'target':>9}")
            for name, (args, n) in runs.items():
                now, before = [], []
                for _ in range(n):
                    now.append(seconds(ROOT, args))
                    try:
                        before.append(seconds(ref, args))
                    except subprocess.CalledProcessError:  # the reference tree refuses or lacks this case
                        pass
                a = statistics.median(now)
                ok = "ok" if a < TARGETS[name] else "MISSED"
                if before:
                    b = statistics.median(before)
                    print(f"{name:<10}{a:>11.3f}s{b:>11.3f}s{a / b:>9.2f}{TARGETS[name]:>8.1f}s {ok}")
                else:
                    print(f"{name:<10}{a:>11.3f}s{'-':>12}{'-':>9}{TARGETS[name]:>8.1f}s {ok}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref)], capture_output=True)


if __name__ == "__main__":
    main()
