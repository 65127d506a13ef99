"""Throughput model: hand-checked counts, the distinct-experts formula, and the roofline bound."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from g4sim.analytic import QUANT_FORMATS
from g4sim.analytic.work import expected_distinct_experts, prefill_flop
from g4sim.engines import ENGINES, Workload, get_engine
from g4sim.evaluation.speed import predict
from g4sim.hardware import load_profiles
from g4sim.spec import VARIANTS, get_variant


def test_distinct_experts_matches_monte_carlo():
    rng = random.Random(0)
    for tokens in (1, 4, 16, 64):
        trials = 2000
        hits = sum(len(set().union(*(rng.sample(range(128), 8) for _ in range(tokens)))) for _ in range(trials)) / trials
        assert abs(expected_distinct_experts(128, 8, tokens) - hits) < 0.02 * hits + 0.2
    assert expected_distinct_experts(128, 8, 1) == 8
    assert 127.9 < expected_distinct_experts(128, 8, 1000) <= 128


def test_prefill_flop_by_hand_for_one_dense_layer():
    spec = get_variant("31b").reduced(1)  # one sliding layer
    t = spec.text
    ctx = 2048
    matmul = 5376 * 32 * 256 * 2 + 5376 * 16 * 256 * 2 + 3 * 5376 * 21504  # q, o, k, v, MLP
    window_sum = sum(min(p + 1, 1024) for p in range(ctx))
    expected = 2 * matmul * ctx + 4 * 32 * 256 * window_sum + 2 * 5376 * 262144  # + one kept logit row
    assert prefill_flop(spec, ctx) == expected
    assert t.num_layers == 1


def test_moe_decode_reads_more_experts_as_the_batch_grows():
    spec, dev = get_variant("26b-a4b"), load_profiles()["h100-sxm"]
    eng = get_engine("vllm")
    one = predict(eng, Workload(spec, 4096, 1), dev).decode_step_bytes
    many = predict(eng, Workload(spec, 4096, 64), dev).decode_step_bytes
    assert many > one * 3  # 8 of 128 experts per layer at batch 1; nearly all at 64


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(sorted(VARIANTS)), st.sampled_from(sorted(load_profiles())), st.sampled_from(sorted(QUANT_FORMATS)),
       st.integers(1, 131072), st.integers(1, 256), st.sampled_from(sorted(ENGINES)), st.sampled_from([1, 2, 4, 8]),
       st.sampled_from([0, 2**30, 8 * 2**30]))
def test_predictions_never_beat_the_roofline(variant, device, quant, ctx, batch, engine, gpus, host_bytes):
    dev = load_profiles()[device]
    eng = get_engine(engine)
    if gpus > 1 and (eng.caps.parallel is None or dev.interconnect is None):
        gpus = 1
    t = predict(eng, Workload(VARIANTS[variant], ctx, batch, quant), dev, gpus, host_bytes,
                load_profiles()["desktop-ddr5"] if host_bytes else None)
    assert t.prefill_tokens_per_s <= t.prefill_tokens_per_s_roofline * (1 + 1e-12)
    assert t.decode_tokens_per_s <= t.decode_tokens_per_s_roofline * (1 + 1e-12)
    assert t.prefill_seconds > 0 and t.decode_step_seconds > 0
