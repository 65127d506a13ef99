"""The acceptance test of the profiler issue: `g4sim validate` on the committed CPU measurements."""

from __future__ import annotations

import json

import pytest

from g4sim.measure.split import CALIBRATION_MODELS
from g4sim.cli import main
from g4sim.measure.measurements import STORE_DIR, load_store


def test_committed_measurements_cover_every_variant():
    frame = load_store()
    ok = frame[frame.status == "ok"]
    for model in ("e2b", "e4b", "26b-a4b", "31b"):
        rows = ok[ok.model == model]
        assert {"bf16", "fp32"} <= set(rows.dtype)
        assert {"int8", "int4-g128"} <= set(rows.quant.dropna())
        assert rows.ctx.nunique() >= 1
    for model in ("e2b", "e4b", "26b-a4b", "31b"):  # three contexts, one past the window, per float dtype
        rows = ok[(ok.model == model) & ok.quant.isna()]
        assert rows.ctx.nunique() >= 3


def test_validate_passes_within_tolerance(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--store", str(STORE_DIR), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0, [c for c in data["checks"] if not c["ok"]]
    held = [c for c in data["checks"] if c["tolerance"] is not None]
    for figure in ("param_bytes", "kv_bytes"):
        assert all(c["error"] == 0 for c in held if c["figure"] == figure)
    assert all(abs(c["error"]) <= 0.05 for c in held if c["figure"] == "prefill_peak_bytes")
    speed = [c for c in held if "tokens" in c["figure"]]
    assert len(speed) >= 20 and all(not c["calibration_row"] for c in speed)  # rows the calibration did not see
    assert all(abs(c["error"]) <= 0.25 for c in speed)
    assert {c["config"].split("[")[0] for c in speed}.isdisjoint(CALIBRATION_MODELS)
    assert any(c["config"].startswith("26b-a4b") and "ctx 512" in c["config"] for c in speed)  # MoE, unseen context
