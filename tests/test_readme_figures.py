"""README's validation tables are what `g4sim validate --json` computes from the committed data, never typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_figures_are_generated_from_validate():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_figures.py"), "--check"], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr or out.stdout
