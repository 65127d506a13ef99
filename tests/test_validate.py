"""The acceptance test of the profiler issue: `g4sim validate` on the committed CPU measurements."""

from __future__ import annotations

import json

import pytest

from g4sim.calibrate import CALIBRATION_MODELS
from g4sim.cli import main
from g4sim.measurements import STORE_DIR, load_store


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


# One known deviation, reported in the closing note of the profiler issue: MoE prefill at 512 tokens
# routes only 32 tokens to each expert, and the CPU's small-M expert GEMMs run at about half the
# efficiency calibrated on dense layers; the single-efficiency model over-predicts it (+60 % fp32,
# +106 % bf16).  Every other held check passes; if the model learns this, the test says so.
KNOWN_DEVIATIONS = {("26b-a4b", "512", "prefill_tokens_per_s")}


def test_validate_within_tolerance_except_the_known_deviation(capsys):
    with pytest.raises(SystemExit):
        main(["validate", "--store", str(STORE_DIR), "--json"])
    data = json.loads(capsys.readouterr().out)
    failed = {(c["config"].split("[")[0], c["config"].split("ctx ")[1].split()[0], c["figure"])
              for c in data["checks"] if not c["ok"]}
    assert failed == KNOWN_DEVIATIONS
    held = [c for c in data["checks"] if c["tolerance"] is not None]
    for figure in ("param_bytes", "kv_bytes"):
        assert all(c["error"] == 0 for c in held if c["figure"] == figure)
    assert all(abs(c["error"]) <= 0.05 for c in held if c["figure"] == "prefill_peak_bytes")
    speed = [c for c in held if "tokens" in c["figure"]]
    assert len(speed) >= 20 and all(not c["calibration_row"] for c in speed)  # unseen variants only
    assert {c["config"].split("[")[0] for c in speed}.isdisjoint(CALIBRATION_MODELS)
