"""vLLM and llama.cpp allocation rules, hand-computed from the cited sources."""

from __future__ import annotations

from g4sim.analytic.components import Component, Location

import pytest

from g4sim.engines import estimate_memory
from g4sim.engines import Workload, get_engine
from g4sim.spec import get_variant

MOE = get_variant("26b-a4b")


def test_vllm_sliding_layers_reserve_window_plus_batched_tokens():
    eng = get_engine("vllm")
    t = MOE.text
    # sliding page 16 x 8 heads x 256 x 2 (K,V) x 2 B = 128 KiB; full 2 x 512: half -> full blocks hold 32 tokens
    # vLLM 0.33.0 (the default) reserves window - 1 + max_in_flight_tokens = 2 x max_num_batched_tokens (async
    # scheduling); 0.19.1 / 0.20.0 reserve window - 1 + max_num_batched_tokens
    assert eng.kv_cells(t, 0, 262144) == (-(-(1024 - 1 + 2 * 2048) // 16) + 1) * 16 == 5136
    assert get_engine("vllm", vllm_version="0.19.1").kv_cells(t, 0, 262144) == (-(-(1024 - 1 + 2048) // 16) + 1) * 16
    assert eng.kv_cells(t, 5, 262144) == 262144
    assert eng.kv_cells(t, 5, 1000) == 1024  # cdiv(1000, 32) x 32
    assert eng.kv_cells(t, 0, 1000) == (-(-1000 // 16) + 1) * 16  # capped at max_model_len


def test_vllm_budget_is_utilization_of_capacity_capped_by_what_is_free():
    assert get_engine("vllm").budget_bytes(1000, 1000) == 900
    assert get_engine("vllm", gpu_memory_utilization=0.5).budget_bytes(1000, 1000) == 500
    # vLLM takes ceil(total x utilisation) of the total cudaMemGetInfo reports, which g4sim reads as the usable memory
    assert get_engine("vllm").budget_bytes(800, 1000) == 720
    assert get_engine("llamacpp").budget_bytes(800, 1000) == 800


def test_registry_is_explicit_and_fails_loudly():
    from g4sim.engines import ENGINES, UnknownEngineError, engine_class

    assert set(ENGINES) == {"llamacpp", "vllm", "transformers", "g4sim", "ollama", "mlx", "litert-lm"}
    assert engine_class("llama.cpp").name == "llamacpp" and engine_class("HF").name == "transformers"
    with pytest.raises(UnknownEngineError):
        engine_class("tgi")
    for cls in ENGINES.values():  # every engine states what it loads, where it runs, and its settings' sources
        assert cls.caps.weight_formats and cls.caps.kv_dtypes and cls.caps.device_kinds
        assert all(o.flags and o.source and hasattr(cls(), o.field) for o in cls.options)


def test_no_module_outside_an_engine_branches_on_an_engine_name():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1] / "g4sim"
    pattern = re.compile(r"""(engine|\.name)\s*(==|!=|in)\s*\(?["'](vllm|llamacpp|transformers|g4sim)["']""")
    offenders = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if "engines" not in p.parts
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders


def test_llamacpp_context_padding_and_swa_rule():
    eng = get_engine("llamacpp")
    t = MOE.text
    assert eng.n_ctx(1000) == 1024 and eng.n_ctx(1024) == 1024 and eng.n_ctx(1025) == 1280
    # pad256(min(n_ctx, n_swa * 1 + n_ubatch)) = pad256(min(262144, 1024 + 512)) = 1536
    assert eng.kv_cells(t, 0, 262144) == 1536
    assert eng.kv_cells(t, 0, 1000) == 1024  # min with the padded context
    assert get_engine("llamacpp", swa_full=True).kv_cells(t, 0, 262144) == 262144
    four_slots = get_engine("llamacpp", kv_unified=True).bind(Workload(MOE, 262144, 4))  # -np 4 --kv-unified
    assert four_slots.kv_cells(t, 0, 262144) == 4 * 1024 + 512
    assert get_engine("llamacpp").bind(Workload(MOE, 262144, 4)).kv_cells(t, 0, 262144) == 1536  # one stream each
    assert get_engine("llamacpp", n_ubatch=100).kv_cells(t, 0, 262144) == 1280  # pad256(1124)


def test_llamacpp_transposed_v_takes_the_widest_row_without_flash_attention():
    t = MOE.text  # sliding V rows 8 x 256 = 2048, full 2 x 512 = 1024
    fa = get_engine("llamacpp", flash_attn=True).kv_layer_bytes(t, 5, 4096, "bf16", "bf16")
    no_fa = get_engine("llamacpp", flash_attn=False).kv_layer_bytes(t, 5, 4096, "bf16", "bf16")
    assert fa == (4096 * 1024 * 2, 4096 * 1024 * 2)
    assert no_fa == (4096 * 1024 * 2, 4096 * 2048 * 2)


def test_llamacpp_q8_0_cache_is_34_bytes_per_32():
    t = get_variant("31b").text
    k, v = get_engine("llamacpp").kv_layer_bytes(t, 5, 4096, "q8_0", "q8_0")  # a full layer: 4 KV heads x 512
    assert k == v == 4096 * 4 * 512 // 32 * 34


def test_llamacpp_kv_shared_layers_have_no_cache():
    spec = get_variant("e2b")
    m = estimate_memory(spec, ctx=8192, engine="llamacpp")
    eng = get_engine("llamacpp")
    expected = sum(sum(eng.kv_layer_bytes(spec.text, i, 8192, "bf16", "bf16")) for i in range(15))
    assert m.by_category()["kv_cache"] == expected  # layers 15..34 share and add nothing


def test_llamacpp_offload_rules():
    spec = get_variant("26b-a4b")
    full = estimate_memory(spec, ctx=4096, quant="q4_k_m", engine="llamacpp")
    assert full.get(Component.TOKEN_EMBEDDING, Location.HOST) > 0  # input embedding stays on the host
    assert full.get(Component.OUTPUT_COPY) == full.get(Component.TOKEN_EMBEDDING, Location.HOST)
    q8 = estimate_memory(spec, ctx=4096, quant="q8_0", engine="llamacpp")
    cpu_moe = estimate_memory(spec, ctx=4096, quant="q8_0", engine=get_engine("llamacpp", n_cpu_moe=10))
    assert cpu_moe.get(Component.EXPERTS, Location.HOST) * 3 == q8.get(Component.EXPERTS)  # 10 of 30 layers
    assert cpu_moe.get(Component.EXPERTS, Location.HOST) + cpu_moe.get(Component.EXPERTS) == q8.get(Component.EXPERTS)
    partial = estimate_memory(spec, ctx=4096, quant="q4_k_m", engine=get_engine("llamacpp", n_gpu_layers=16))
    assert partial.total("host") > full.total("host") and partial.total() < full.total()


@pytest.mark.parametrize("engine", ["vllm", "llamacpp"])
def test_engines_plan_the_headline_case(engine):
    m = estimate_memory(get_variant("26b-a4b"), ctx=262144, quant="q4_k_m", engine=engine)
    assert m.by_category()["kv_cache"] > 5 * 2**30  # five full layers x 256k x 2 KV heads x 512 x 2 x 2 B = 5 GiB
