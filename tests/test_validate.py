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


# sha256 of the sorted "row = split" lines of g4sim's and transformers' rows, frozen with split v4 before the fit
# (v2's pin covered g4sim's rows only: a6ecf656...; v4 re-measured them, and moved the int8 / int4 and transformers
# rows out of "quantized" / "other-impl"; amended with transformers' 26b-a4b fp32 rows, g4sim/measure/split.py).
SPLIT_PIN = "043330488600a5e983d8b26126239321416c52ce4fdeb252cc23608e25408e28"


def test_the_split_is_frozen_and_stored_with_every_row():
    rows = [r for path in sorted(STORE_DIR.glob("*.csv")) for r in csv.DictReader(path.open()) if r["status"] == "ok"]
    assert rows and all(r["split"] == split_of({k: (v or None) for k, v in r.items()}) for r in rows)
    lines = sorted(f"{split_key(r)}={r['split']}" for r in rows
                   if r["device"] == "ci-cpu-2core" and (r.get("engine") or "g4sim") != "llamacpp")
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
    from g4sim.hardware import WEIGHT_ONLY_FORMATS, get_profile
    from g4sim.measure.calibrate import fit, heldout_bands

    fitted = fit(STORE_DIR, "ci-cpu-2core")
    eff = get_profile("ci-cpu-2core").efficiency
    assert set(WEIGHT_ONLY_FORMATS) <= set(fitted) and set(fitted) == set(eff.by_dtype) | set(eff.by_format)
    for key, v in fitted.items():  # compute dtypes (float rows), weight-only formats (int8 / int4 rows)
        pair = eff.by_format[key] if key in WEIGHT_ONLY_FORMATS else eff.by_dtype[key]
        assert (v["prefill_compute"], v["decode_bandwidth"]) == pair
        assert v["expert_gemm_half_rows"] == eff.expert_gemm_half_rows
    # the band a g4sim plan on this profile prints: the held-out rows' |error| through these efficiencies
    assert dict(eff.bands) == heldout_bands(STORE_DIR, "ci-cpu-2core")
    assert all(b["n"] >= 15 for b in dict(eff.bands).values())


def test_a_g4sim_plan_on_the_calibrated_profile_prints_its_held_out_band(capsys):
    """g4sim's own engine has no speed class: on the profile its rows calibrated, the band is that profile's
    (efficiency.bands); elsewhere the plan says it has none."""
    from g4sim.hardware import get_profile

    bands = dict(get_profile("ci-cpu-2core").efficiency.bands)
    for device, want in (("ci-cpu-2core", bands), ("desktop-ddr5", None)):
        with pytest.raises(SystemExit) as exc:
            main(["plan", "--model", "e2b", "--engine", "g4sim", "--quant", "int8", "--gpu", device, "--json"])
        assert exc.value.code == 0
        speed = json.loads(capsys.readouterr().out)["throughput"]
        if want is None:
            assert not speed["calibrated"] and speed["band"]["decode"].startswith("no error band")
            continue
        assert speed["calibrated"] and speed["bands"] == want and speed["speed_class"] == "g4sim on ci-cpu-2core (profile)"
        for phase in ("prefill", "decode"):
            b = want[phase]
            assert speed["band"][phase] == (f"held-out error for g4sim on ci-cpu-2core (profile): median "
                                            f"{b['median']:.0%}, p90 {b['p90']:.0%}, n={b['n']}")


# Held-out rows that fail their tolerance under split v4, reported and kept, never tuned away (a new
# failure, or one of these passing, fails this test until the ledger is updated with the reason).
KNOWN_HELD_OUT_FAILURES = {
    # g4sim int8, +59 %: with more than 16 rows the int8 path copies each expert it runs to bf16 before its
    # GEMM (g4sim/model/quant.py PREFILL_ROWS); the int8 pair was fitted on dense e2b / 31b, where one copy
    # serves 1,024 rows, while 26b-a4b copies 2 banks of up to 128 experts per layer for ~64 rows each.
    ("26b-a4b[2L] int8 ctx 1024 b1", "prefill_tokens_per_s"),
    # g4sim fp32, +34 %: e4b at 256 tokens measured 92 tok/s against 131-142 at 512-2,048 (other processes under
    # 2 % of a core); a short prompt's fixed cost, which the efficiency model has no term for.
    ("e4b[12L] fp32 ctx 256 b1", "prefill_tokens_per_s"),
    # transformers, +43 % to +70 % prefill and +27 % eager decode on the MoE: its expert term (transformers/cpu-x86,
    # expert rows at peak 19.1) is fitted on 26b-a4b fp32 (split v4 amended; with dense rows only it was +68 % to
    # +88 %) and does not carry over to bf16, as g4sim's own did not under split v2.
    ("26b-a4b[2L] bf16 ctx 512 b1 transformers-sdpa", "prefill_tokens_per_s"),
    ("26b-a4b[2L] bf16 ctx 2048 b1 transformers-sdpa", "prefill_tokens_per_s"),
    ("26b-a4b[2L] bf16 ctx 512 b1 transformers-eager", "prefill_tokens_per_s"),
    ("26b-a4b[2L] bf16 ctx 2048 b1 transformers-eager", "prefill_tokens_per_s"),
    ("26b-a4b[2L] bf16 ctx 2048 b1 transformers-eager", "decode_tokens_per_s"),
    # (v2's 26b-a4b bf16 prefill at 512 tokens, +38.5 %, measured again with the current model: -0.1 %.)
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
    tf = [c for c in data["checks"] if "transformers" in c["config"]]  # transformers measured, sdpa and eager
    assert {c["config"].rsplit(" ", 1)[1] for c in tf} == {"transformers-sdpa", "transformers-eager"}
    assert {c["split"] for c in tf} == {"calibration", "held-out"}  # split v4: by model, as g4sim's own rows
    assert all(c["error"] == 0 for c in tf if c["figure"] in ("param_bytes", "kv_bytes"))
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
    assert {("prefill_tokens_per_s", s) for s in ("calibration", "held-out")} <= splits
