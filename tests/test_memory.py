"""Exact memory figures: KV bytes by hand formula, weight bytes per format, logits."""

from __future__ import annotations

from dataclasses import replace

from g4sim.analytic.components import Component, Location

import pytest

from g4sim.engines import estimate_memory
from g4sim.analytic import count_params, get_quant, weight_bytes_by_component
from g4sim.analytic.quant import QuantContext, Tensor, ggml_bytes
from g4sim.analytic.memory import logits_bytes
from g4sim.analytic.tensors import quant_context, text_tensors
from g4sim.engines import get_engine
from g4sim.spec import VARIANTS, get_variant

# (sliding cache layers, full cache layers, sliding kv_heads*head_dim, full kv_heads*head_dim, window)
HAND = {
    "e2b": (12, 3, 1 * 256, 1 * 512, 512),  # 15 cache layers of 35 (20 KV-shared), pattern 4S1F
    "e4b": (20, 4, 2 * 256, 2 * 512, 512),  # 24 cache layers of 42 (18 KV-shared), pattern 5S1F
    "26b-a4b": (25, 5, 8 * 256, 2 * 512, 1024),
    "31b": (50, 10, 16 * 256, 4 * 512, 1024),
}


@pytest.mark.parametrize("variant", sorted(HAND))
@pytest.mark.parametrize("ctx_factor", [0.25, 1, 1.5, 256])
def test_kv_bytes_equal_hand_formula(variant, ctx_factor):
    n_s, n_f, s_width, f_width, window = HAND[variant]
    ctx = int(window * ctx_factor)
    m = estimate_memory(get_variant(variant), ctx=ctx, batch=3, engine="g4sim")
    bf16 = 2
    assert m.get(Component.KV_SLIDING) == 3 * n_s * min(ctx, window) * 2 * s_width * bf16
    assert m.get(Component.KV_FULL) == 3 * n_f * ctx * 2 * f_width * bf16


def test_transformers_sliding_cache_keeps_window_minus_one():
    spec = get_variant("31b")
    m = estimate_memory(spec, ctx=8192, engine="transformers")
    assert m.get(Component.KV_SLIDING) == 50 * 1023 * 2 * 16 * 256 * 2


def test_kv_dtypes_use_ggml_block_sizes():
    spec = get_variant("26b-a4b")
    bf16 = estimate_memory(spec, ctx=4096, engine="g4sim").by_category()["kv_cache"]
    q8 = estimate_memory(spec, ctx=4096, engine="g4sim", kv_dtype="q8_0").by_category()["kv_cache"]
    q4 = estimate_memory(spec, ctx=4096, engine="g4sim", kv_dtype="q4_0").by_category()["kv_cache"]
    fp8 = estimate_memory(spec, ctx=4096, engine="g4sim", kv_dtype="fp8").by_category()["kv_cache"]
    assert q8 * 64 == bf16 * 34  # 34 bytes per 32 elements vs 64
    assert q4 * 64 == bf16 * 18
    assert fp8 * 2 == bf16


def test_logits_for_every_prompt_position_cost_8_6_GB_at_8k():
    assert logits_bytes(get_variant("e2b").text, 8192) == 8_589_934_592


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_float_weights_are_params_times_width(variant):
    spec = VARIANTS[variant]
    params = count_params(spec, vision=False, audio=False).total
    assert sum(weight_bytes_by_component(spec, "bf16").values()) == 2 * params
    assert sum(weight_bytes_by_component(spec, "fp32").values()) == 4 * params
    with_towers = count_params(spec).total
    assert sum(weight_bytes_by_component(spec, "bf16", vision=True, audio=True).values()) == 2 * with_towers


def test_q8_0_weights_are_34_bytes_per_32_except_f32_norms_and_router():
    spec = get_variant("31b")
    fmt, ctx = get_quant("q8_0"), quant_context(spec.text)
    for t in text_tensors(spec.text):
        expected = t.numel * 4 if t.kind in ("norm", "router") else t.numel // 32 * 34
        assert fmt.tensor_bytes(t, ctx) == expected


def test_q4_k_m_follows_llama_cpp_type_choices():
    spec = get_variant("26b-a4b")
    fmt, ctx = get_quant("q4_k_m"), quant_context(spec.text)
    types = {(t.kind, t.layer, t.component): fmt.gguf_type(t, ctx) for t in text_tensors(spec.text)}
    assert types[("token_embd", -1, "token_embedding")] == "Q6_K"  # tied: quantized as the output
    assert types[("attn_q", 3, "attention")] == "Q4_K"
    # 25 attn_v tensors (full layers are k_eq_v): use_more_bits(0) -> Q6_K, use_more_bits(4) -> False
    assert types[("attn_v", 0, "attention")] == "Q6_K"
    assert types[("attn_v", 4, "attention")] == "Q4_K"
    # ffn_down rows of 2112 and 704 are not whole 256-blocks: Q4_K -> Q5_0, Q6_K -> Q8_0 fallbacks
    assert types[("ffn_down", 10, "mlp")] in ("Q5_0", "Q8_0")
    assert types[("ffn_gate", 10, "experts")] == "Q4_K"
    assert fmt.gguf_type(Tensor("norms", "norm", 1, 2816), ctx) == "F32"


def test_gguf_block_sizes_come_from_gguf_package():
    assert ggml_bytes("Q4_K", 256) == 144 and ggml_bytes("Q6_K", 256) == 210 and ggml_bytes("Q8_0", 32) == 34
    with pytest.raises(ValueError):
        ggml_bytes("Q4_K", 100)


def test_int4_group_wise_counts_scales_and_zeros():
    fmt = get_quant("int4-g64")
    t = Tensor("mlp", "ffn_up", 1024, 2048)
    ctx = QuantContext(1, 1, 1, 1, 0)
    assert fmt.tensor_bytes(t, ctx) == 1024 * 2048 // 2 + 1024 * (2048 // 64) * 4


def test_ple_table_can_live_on_the_host():
    spec = get_variant("e2b")
    on_host = estimate_memory(spec, ctx=4096, engine=replace(get_engine("g4sim"), ple_location=Location.HOST))
    on_gpu = estimate_memory(spec, ctx=4096, engine="g4sim")
    ple = 262_144 * 35 * 256 * 2
    assert on_host.total("host") == ple
    assert on_gpu.total() - on_host.total() == ple + 0  # same everything else


def test_vision_and_audio_towers_add_their_weights():
    spec = get_variant("e4b")
    base = estimate_memory(spec, ctx=1024).by_category()["weights"]
    both = estimate_memory(spec, ctx=1024, vision=True, audio=True).by_category()["weights"]
    p = count_params(spec)
    towers = sum(c.total for c in p.components if c.tower)
    assert both - base == 2 * towers


def test_unknown_names_raise():
    spec = get_variant("e2b")
    with pytest.raises(KeyError):
        estimate_memory(spec, ctx=10, quant="q4_k_x")
    with pytest.raises(KeyError):
        estimate_memory(spec, ctx=10, engine="tgi")
    with pytest.raises(ValueError):
        estimate_memory(spec, ctx=0)


def test_towers_stay_16_bit_in_every_format():
    """llama.cpp ships the towers as a separate F16 mmproj file; vLLM and the others keep them 16-bit."""
    from g4sim.analytic.params import vision_params

    spec = get_variant("26b-a4b")
    expected = (vision_params(spec.vision) + spec.vision.hidden_size * spec.text.hidden_size) * 2
    for quant in ("bf16", "q4_k_m", "q2_k", "int4-g128", "nvfp4"):
        assert weight_bytes_by_component(spec, quant, vision=True)["vision_tower"] == expected, quant
