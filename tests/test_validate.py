"""The acceptance test of the profiler issue: `g4sim validate` on the committed CPU measurements."""

from __future__ import annotations

import json

import pytest

import csv
import hashlib

from g4sim.measure.split import CALIBRATION_MODELS, split_key, split_of
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


# sha256 of the sorted "row = split" lines of the committed store, frozen with split v2 before the fit.
SPLIT_PIN = "a6ecf6561905e56c6e8a2774b44e2082a225fbd44ff7cef4e77a758c924332a7"


def test_the_split_is_frozen_and_stored_with_every_row():
    rows = [r for path in sorted(STORE_DIR.glob("*.csv")) for r in csv.DictReader(path.open()) if r["status"] == "ok"]
    assert rows and all(r["split"] == split_of({k: (v or None) for k, v in r.items()}) for r in rows)
    lines = sorted(f"{split_key(r)}={r['split']}" for r in rows
                   if r["device"] == "ci-cpu-2core" and (r.get("engine") or "g4sim") == "g4sim")
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == SPLIT_PIN, "a row changed split: say why"
    held = {split_key(r) for r in rows if r["split"] == "held-out"}
    assert any(k.startswith("e4b") for k in held) and any(k.startswith("26b-a4b") and "bf16" in k for k in held)


# sha256 of the sorted "row = split" lines of llama.cpp's rows, frozen with split v3 before any of them was fitted.
LLAMACPP_SPLIT_PIN = "7efa34a258c4bd8daeaf7e9f84ac5bc3d69044d02a4baa2c0f0488176910b6e4"


def test_llamacpp_rows_follow_split_v3():
    rows = [r for path in sorted(STORE_DIR.glob("*.csv")) for r in csv.DictReader(path.open())
            if r["status"] == "ok" and r.get("engine") == "llamacpp"]
    lines = sorted(f"{split_key(r)}={r['split']}" for r in rows)
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == LLAMACPP_SPLIT_PIN, "a row changed split: say why"
    assert {r["split"] for r in rows} == {"calibration", "held-out"}
    assert all(r["split"] == "held-out" for r in rows if r["model"] == "e4b")  # a whole model the fit never saw


def test_calibrate_re_derives_the_committed_efficiencies():
    from g4sim.hardware import get_profile
    from g4sim.measure.calibrate import fit

    fitted = fit(STORE_DIR, "ci-cpu-2core")
    eff = get_profile("ci-cpu-2core").efficiency
    assert fitted and set(fitted) == set(eff.by_dtype)
    for dtype, v in fitted.items():
        assert (v["prefill_compute"], v["decode_bandwidth"]) == eff.by_dtype[dtype]
        assert v["expert_gemm_half_rows"] == eff.expert_gemm_half_rows


# Held-out rows that fail their tolerance under split v2, reported and kept, never tuned away (a new
# failure, or one of these passing, fails this test until the ledger is updated with the reason).
KNOWN_HELD_OUT_FAILURES = {
    # predicted +38.5 %: the expert-GEMM term (m / (m + half_rows), fitted on 26b-a4b fp32) does not carry
    # over to bf16 at 512 prompt tokens (32 rows per expert): bf16 small GEMMs on this CPU lose more.
    ("26b-a4b[2L] bf16 ctx 512 b1", "prefill_tokens_per_s"),
    # (transformers itself: every row within 5 % since its import left the memory baseline (111 MiB) and its
    # experts' weighted outputs are priced in fp32 -- the router's weights promote them; measured on the experts
    # module alone.  The 2,048-token sdpa row, -12.2 % at first, was in-sample for both corrections.)
}


def test_validate_passes_within_tolerance_but_for_the_ledger(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--store", str(STORE_DIR), "--json"])
    data = json.loads(capsys.readouterr().out)
    failed = {(c["config"], c["figure"]) for c in data["checks"] if not c["ok"]}
    assert failed == KNOWN_HELD_OUT_FAILURES
    assert exc.value.code == (1 if failed else 0)  # validate says so in its exit code
    held = [c for c in data["checks"] if c["tolerance"] is not None]
    for figure in ("param_bytes", "kv_bytes"):
        assert all(c["error"] == 0 for c in held if c["figure"] == figure)
    assert all(abs(c["error"]) <= 0.05 for c in held if c["figure"] == "prefill_peak_bytes"
               and (c["config"], c["figure"]) not in KNOWN_HELD_OUT_FAILURES)
    other = [c for c in data["checks"] if c["split"] == "other-impl"]  # transformers measured, sdpa and eager
    assert {c["config"].rsplit(" ", 1)[1] for c in other} == {"transformers-sdpa", "transformers-eager"}
    assert all(c["error"] == 0 for c in other if c["figure"] in ("param_bytes", "kv_bytes"))
    speed = [c for c in held if "tokens" in c["figure"]]
    assert len(speed) >= 20 and all(c["split"] == "held-out" for c in speed)  # rows the calibration did not see
    assert all(abs(c["error"]) <= 0.25 for c in speed if (c["config"], c["figure"]) not in KNOWN_HELD_OUT_FAILURES)
    own = [c for c in speed if not c["config"].endswith(" llamacpp")]  # llama.cpp's split is by configuration
    assert {c["config"].split("[")[0] for c in own}.isdisjoint(CALIBRATION_MODELS)
    lcpp = [c for c in data["checks"] if c["config"].endswith(" llamacpp")]  # llama.cpp itself, 26 rows
    assert len({c["config"] for c in lcpp}) == 26 and all(c["ok"] for c in lcpp)
    assert all(c["error"] == 0 for c in lcpp if c["figure"] in ("param_bytes", "kv_bytes"))
    assert any(c["config"].startswith("26b-a4b") and "bf16" in c["config"] for c in speed)  # MoE, a dtype never fitted
    splits = {(r["figure"], r["split"]) for r in data["summary"]}
    assert {("prefill_tokens_per_s", s) for s in ("calibration", "held-out", "quantized")} <= splits
