"""README's validation figures, generated from `g4sim validate --json` (never typed).

Two blocks of README.md are rewritten between their markers:

* ``<!-- figures:validate -->``: per figure and split (calibration = in-sample, held-out; split v4,
  g4sim/measure/split.py), the rows, mean |error|, worst error and failures of ``g4sim validate --json``
  on the committed measurements (reports/measurements);
* ``<!-- figures:speed -->``: per engine x backend class and phase, the median / p90 |error| of tokens/s
  and the row counts, in-sample and held-out apart, of ``g4sim validate --speed --published --json``
  (llama.cpp measured on this CPU, and the published runs).

Run: python scripts/readme_figures.py            (rewrites README.md)
     python scripts/readme_figures.py --check    (exit 1 if README.md differs; tests/test_readme_figures.py)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _validate_json(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "g4sim", "validate", "--json", *args], capture_output=True,
                         text=True, cwd=ROOT)
    if not out.stdout.strip():
        raise SystemExit(f"g4sim validate {' '.join(args)} printed nothing: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout)


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def validate_block(data: dict) -> str:
    lines = ["| figure | split | rows | held to tolerance | mean \\|error\\| | worst | tolerance | failures |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in data["summary"]:
        tol = "exact" if r["tolerance"] == 0 else f"±{100 * r['tolerance']:.0f} %"
        lines.append(f"| {r['figure']} | {r['split']} | {r['rows']} | {r['held_to_tolerance']} | "
                     f"{_pct(r['mean_abs_error'])} | {100 * r['worst_error']:+.1f} % | {tol} | {r['failures']} |")
    return "\n".join(lines)


def speed_block(data: dict) -> str:
    lines = ["| engine / backend | phase | in-sample median | p90 | n | held-out median | p90 | n |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, by_split in data["bands"].items():
        for phase in ("prefill", "decode"):
            c, h = by_split["calibration"][phase], by_split["held-out"][phase]
            lines.append(f"| {key} | {phase} | {_pct(c['median'])} | {_pct(c['p90'])} | {c['n']} | "
                         f"{_pct(h['median'])} | {_pct(h['p90'])} | {h['n']} |")
    return "\n".join(lines)


def render(text: str, blocks: dict[str, str]) -> str:
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- figures:{name} -->\n)(?:.*?\n)?(<!-- /figures:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- figures:{name} --> block")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    return text


def blocks() -> dict[str, str]:
    return {"validate": validate_block(_validate_json()), "speed": speed_block(_validate_json("--speed", "--published"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not what the data gives")
    args = parser.parse_args()
    text = README.read_text()
    new = render(text, blocks())
    if args.check:
        sys.exit(0 if new == text else "README.md's figures differ from `g4sim validate --json`: "
                                       "run python scripts/readme_figures.py")
    README.write_text(new)
    print("README.md figures regenerated")


if __name__ == "__main__":
    main()
