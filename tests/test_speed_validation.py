"""The shipped speed terms against what g4sim did not compute: llama.cpp's own kernels measured on this CPU
(reports/measurements, `g4sim profile --impl llamacpp`) and the published runs (reports/published/runs.csv).

Splits are frozen before any fit: llama.cpp's rows by whole configuration (g4sim/measure/split.py, v3), the
published rows by whole source and whole device (reports/published/README.md).  What is held:

* ``g4sim calibrate --engine llamacpp --published`` re-derives g4sim/evaluation/speed_classes.yaml exactly,
  and the bands it stores are what ``predict`` gives on the held-out rows (nothing edited by hand);
* llama.cpp on this CPU: every held-out row's prefill and decode within 20 % (the issue's bar), but for the
  rows in LLAMACPP_LEDGER, each kept with its reason;
* the published runs: per engine x backend class with at least 5 held-out rows, decode median |error| <= 15 %
  and p90 <= 30 %, prefill median <= 25 % and p90 <= 40 %, but for the classes in CLASS_LEDGER;
* every published row has a band -- its class's held-out p90 -- and the rows whose prediction lies outside
  it are exactly PUBLISHED_OUTSIDE: a change that moves any prediction across its band fails.
"""

from __future__ import annotations

import pytest
import yaml

from g4sim.evaluation.speed import SPEED_CLASSES, speed_classes
from g4sim.measure import speedfit
from g4sim.measure.measurements import STORE_DIR


@pytest.fixture(scope="module")
def runs():
    measured = [r for impl in ("llamacpp", "transformers-sdpa", "transformers-eager")
                for r in speedfit.store_runs(STORE_DIR, impl)] + speedfit.litert_runs()
    published, _ = speedfit.published_runs()
    return measured, published


def test_calibrate_re_derives_the_shipped_terms_and_bands(runs):
    measured, published = runs
    shipped = yaml.safe_load(SPEED_CLASSES.read_text())
    entries, _ = speedfit.calibrate(measured + published, provenance="")
    for key, entry in entries.items():
        entry["provenance"] = shipped[key]["provenance"]
    assert entries == shipped


def test_the_stored_bands_are_what_predict_gives(runs):
    measured, published = runs
    shipped = yaml.safe_load(SPEED_CLASSES.read_text())
    _, bands = speedfit.validate_shipped(measured + published)
    assert set(bands) == set(shipped)
    for key, by_split in bands.items():
        assert by_split["held-out"] == shipped[key]["bands"] and by_split["calibration"] == shipped[key]["in_sample"]


def test_llamacpp_on_this_cpu_within_20_percent_on_held_out_rows(runs):
    """The issue's bar: E2B, E4B, 26B-A4B and 31B in Q4_K_M and Q8_0, prefill and decode, rows the fit did not see."""
    measured, _ = runs
    scored, _ = speedfit.validate_shipped([r for r in measured if r.key.startswith("llamacpp/")])
    held = [s for s in scored if s["split"] == "held-out"]
    covered = {(s["label"].split("[")[0], s["label"].split()[1], s["phase"]) for s in held}
    assert covered == {(m, f, p) for m in ("e2b", "e4b", "26b-a4b", "31b") for f in ("q4_k_m", "q8_0")
                       for p in ("prefill", "decode")}
    assert len(held) == 28 and all(abs(s["error"]) <= 0.20 for s in held), \
        [(s["label"], s["phase"], round(s["error"], 3)) for s in held if abs(s["error"]) > 0.20]
    assert all(s["class"] == "llamacpp/cpu-x86" for s in scored)


# Classes with >= 5 held-out rows that miss the bar (decode median 15 % / p90 30 %, prefill 25 % / 40 %),
# each with what is known; a class passing or a new one failing fails this test until the ledger says why.
CLASS_LEDGER = {
    # calibrated on the Raspberry Pi 4 (Cortex-A72: no dotprod, 2 rows); the held-out Pi 5 and Dimensity 9000+ have
    # dotprod / i8mm kernels, 2-3x faster: one class for all ARM CPUs does not hold (split it by cpu_features).  The
    # int8 peak (integer-dot kernels) took prefill from 68 % / 80 % to 36 % / 60 %, seen on these rows; still short.
    ("llamacpp/cpu-arm", "prefill"), ("llamacpp/cpu-arm", "decode"),
    # median 8 %, but the held-out i7-10750H laptop decodes 1.6-2x slower than predicted: the fraction is fitted
    # against this VM's measured 32.7 GB/s (llama.cpp beats it: fraction capped at 1), the laptop's is a datasheet.
    ("llamacpp/cpu-x86", "decode"),
    # held-out Jetson Thor (NVFP4, concurrency 1 and 8): end-to-end throughput with a 2048-token prompt rests on a
    # prefill term fitted on three GB10 rows; 31B at concurrency 8 predicted 64 % slow before the joint fit.
    ("vllm/cuda", "decode"),
    # measured on this CPU, not published: transformers' expert term is fitted on its 26b-a4b fp32 rows (split v4),
    # and its held-out 26b-a4b bf16 prefill (routed experts through grouped_mm) still runs 1.4-1.7x slower than
    # predicted (p90 63 %, median 19 %; 77 % before the fp32 rows calibrated it).
    ("transformers/cpu-x86", "prefill"),
}
BAR = {"decode": (0.15, 0.30), "prefill": (0.25, 0.40)}


def test_published_classes_meet_the_bar_but_for_the_ledger():
    shipped = yaml.safe_load(SPEED_CLASSES.read_text())
    failing = set()
    for key, entry in shipped.items():
        for phase, (median, p90) in BAR.items():
            b = entry["bands"][phase]
            if b["n"] >= 5 and (b["median"] > median or b["p90"] > p90):
                failing.add((key, phase))
    assert failing == CLASS_LEDGER
    assert {k for k, e in shipped.items() for p in BAR if e["bands"][p]["n"] >= 5} >= {
        "llamacpp/cuda", "llamacpp/cpu-x86", "vllm/cuda"}


def test_every_published_row_has_a_band_and_the_rows_outside_it_are_listed(runs):
    """Band per row: its class's held-out p90 (or in-sample p90 where the class has no held-out rows)."""
    _, published = runs
    shipped = yaml.safe_load(SPEED_CLASSES.read_text())
    scored, _ = speedfit.validate_shipped(published)
    outside = set()
    for s in scored:
        entry = shipped[s["class"]]
        band = entry["bands"][s["phase"]]["p90"] or entry["in_sample"][s["phase"]]["p90"]
        assert band is not None, s
        if abs(s["error"]) > band + 1e-9:
            outside.add((s["label"], s["phase"]))
    assert outside == PUBLISHED_OUTSIDE, sorted(outside ^ PUBLISHED_OUTSIDE)


def test_a_plan_prints_its_class_band():
    from g4sim.engines import Workload, get_engine
    from g4sim.evaluation.speed import predict
    from g4sim.hardware import get_profile
    from g4sim.spec import get_variant

    t = predict(get_engine("llamacpp"), Workload(get_variant("e4b"), 4096, 1, "q4_k_m", "fp16"), get_profile("ci-cpu-2core"))
    b = speed_classes()["llamacpp/cpu-x86"]
    assert t.calibrated and t.speed_class == "llamacpp/cpu-x86" and t.bands == dict(b.bands)
    assert t.band_text("prefill") == (f"held-out error for llamacpp/cpu-x86: median {t.bands['prefill']['median']:.0%}, "
                                      f"p90 {t.bands['prefill']['p90']:.0%}, n={t.bands['prefill']['n']}")
    hf = predict(get_engine("transformers"), Workload(get_variant("e4b"), 4096, 1, "bf16", "bf16"), get_profile("h100-sxm"))
    assert not hf.calibrated and hf.band_text("decode").startswith("no error band")


# Published rows whose prediction lies outside their class's band (error of tokens/s at commit time, for the record).
PUBLISHED_OUTSIDE = {
    ("aimuninn-vllm-gb10-31b-nvfp4", "decode"),  # +70%
    ("algollabs-lcpp-rtx5070ti-26b-ud-iq4_xs-pp2048-tg64", "decode"),  # +22%
    ("algollabs-lcpp-rtx5070ti-26b-ud-iq4_xs-pp2048-tg64", "prefill"),  # -45%
    ("djangodevreng-vllm0201-gb10-26b-nvfp4-c1-4k", "decode"),  # +82%
    ("gist-selfup-lcpp-m5max-36gb-e2b-q4_k_m-pp512-tg128-d4096", "decode"),  # +0%
    ("gist-selfup-lcpp-m5max-36gb-e2b-q4_k_m-pp512-tg128-d4096", "prefill"),  # +26%
    ("gpumod-20260603-lcpp-rtx4090-26b-ud-iq4_xs-kvq8", "decode"),  # +26%
    ("inferenceatlas-vllm-gb10-e2b-bf16-prefill-32k", "prefill"),  # +15%
    ("jetsonailab-llamacpp-agxorin64-e2b-q8_0-c1", "decode"),  # +58%
    ("kimonooyaji-ollama-rtx3090-26b-a4b-q4_k_m", "decode"),  # +33%
    ("macmlx-issue62-m5max-e4b-mlx-8bit", "prefill"),  # +26%
    ("modtech-ollama-2x4070ti-26b-q4_k_m-64k", "decode"),  # -19%
    ("multimodalflow-ollama-0210-rtx3090-e4b-q4_k_m-short", "prefill"),  # +121%
    ("potato-pr269-lcpp-pi5-8gb-e2b-q4_k_m-pp512-tg128", "decode"),  # -62%
    ("pt13762104-litert-cpu1-e2b-pp1024-tg256", "decode"),  # +73% (measured 15.1 tok/s, predicted 26.1)
    ("pt13762104-litert-cpu1-e2b-pp1024-tg256", "prefill"),  # +36% (152 vs 207)
    ("pt13762104-litert-cpu2max-e2b-pp1024-tg256", "decode"),  # -30% (i7 at ~3.4 GHz; its profile's base clock)
    ("pt13762104-litert-cpu2max-e2b-pp1024-tg256", "prefill"),  # -31% (211 vs 145)
    ("pt13762104-litert-gpu2-e2b-pp1024-tg256", "decode"),  # -62% (99 vs 38)
    ("pt13762104-litert-gpu2-e2b-pp1024-tg256", "prefill"),  # -86% (4,877 vs 664)
    ("pt13762104-lcpp-cpu1max-e2b-q4_0-pp1024-tg256-d0", "prefill"),  # -65% (-82% before the int8 peak)
    ("pt13762104-lcpp-cpu2-e2b-q4_0-pp1024-tg256-d0", "decode"),  # +81%
    ("pt13762104-lcpp-cpu2-e2b-q4_0-pp1024-tg256-d4096", "decode"),  # +103%
    ("pt13762104-lcpp-cpu2-e2b-q4_0-pp1024-tg256-d4096", "prefill"),  # +14%
    ("pt13762104-lcpp-cpu2max-e2b-q4_0-pp1024-tg256-d0", "prefill"),  # -27%
    ("smeltcore-lcpp-rtx3090-26b-q4_k_m-4k", "decode"),  # +37%
    ("sovgrid-vllm-gb10-31b-nvfp4", "decode"),  # +75%
}


def test_published_runs_are_the_runs_plan_would_accept(tmp_path, runs):
    """A published run g4sim plan would refuse is left out with the engine's own reason; vLLM runs on NVIDIA's
    SoCs (Jetson AGX Orin / Thor, DGX Spark's GB10: published vLLM runs) are kept, in vllm/cuda."""
    _, published = runs
    soc = {r.row.label for r in published if r.key == "vllm/cuda" and r.device.kind == "soc"}
    assert len(soc) == 17  # 8 Jetson AI Lab rows + 9 GB10 rows
    import csv
    from pathlib import Path

    src = Path(speedfit.__file__).resolve().parents[2] / speedfit.PUBLISHED
    rows = list(csv.DictReader(src.open(newline="")))
    row = next(r for r in rows if r["id"] == "aimuninn-vllm-gb10-31b-nvfp4")
    bad = dict(row, id="x-vllm-on-a-mac", device_profile="apple-m4-16gb", backend="metal")
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerows([row, bad])
    kept, skipped = speedfit.published_runs(path)
    assert [r.row.label for r in kept] == ["aimuninn-vllm-gb10-31b-nvfp4"]
    assert skipped == [("x-vllm-on-a-mac", "vllm does not run on apple-m4-16gb (soc, apple); it runs on: gpu, soc "
                                            "(amd, nvidia)")]
