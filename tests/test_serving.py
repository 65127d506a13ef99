"""Serving capacity: the concurrency that fits is the plan's largest batch; the knee is where it should be."""

from __future__ import annotations

import json

import pytest

from g4sim.cli import main
from g4sim.engines import Workload, get_engine
from g4sim.evaluation import Request, fit
from g4sim.hardware import get_profile
from g4sim.plan.capacity import capacity
from g4sim.plan.search import max_batch
from g4sim.spec import get_variant


def test_capacity_agrees_with_the_plan_and_finds_the_knee():
    req = Request(Workload(get_variant("e2b"), 4096), get_profile("h200"), get_engine("vllm"))
    cap = capacity(req, concurrency=32, output_tokens=256)
    assert cap.max_concurrency == max_batch(req) and cap.fits_asked
    assert fit(req.with_workload(batch=cap.max_concurrency)).safe
    assert not fit(req.with_workload(batch=cap.max_concurrency + 1)).safe
    assert cap.knee_reason == "KV-bound" and cap.knee_batch < cap.max_concurrency  # 4k tokens of KV per sequence
    speeds = [p.decode_tokens_per_s for p in cap.points]
    assert speeds == sorted(speeds)  # aggregate throughput grows with the batch
    assert cap.requests_per_s_at_asked > 0


def test_capacity_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["capacity", "--scenario", "serving-fleet", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0 and data["rows"]
    assert all(r["max_concurrency"] >= 0 for r in data["rows"])


def test_capacity_carries_the_speed_band_of_its_class():
    from g4sim.evaluation.speed import speed_classes

    req = Request(Workload(get_variant("26b-a4b"), 8192, 1, "q4_k_m", "fp16"), get_profile("rtx4090"),
                  get_engine("llamacpp"))
    cap = capacity(req, 4, 256)
    b = dict(speed_classes()["llamacpp/cuda"].bands)["decode"]
    assert cap.speed_class == "llamacpp/cuda"
    assert cap.decode_band == (f"held-out error for llamacpp/cuda: median {b['median']:.0%}, p90 {b['p90']:.0%}, "
                               f"n={b['n']}")
    assert cap.to_dict()["decode_band"] == cap.decode_band
