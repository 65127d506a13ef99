"""mlx-lm on Apple silicon: cells and bytes hand-computed from ml-explore/mlx-lm@d78bf58e.

``mlx_lm/models/gemma4_text.py`` make_cache (RotatingKVCache(max_size=sliding_window) on sliding layers,
KVCache on full ones, none on KV-shared ones), ``mlx_lm/models/cache.py`` (``step = 256``; a rotating
cache keeps ``max_size - 1`` cells plus the incoming chunk), ``mlx_lm/utils.py`` quantize_model and
``gemma4_text.py`` quant_predicate (router 8-bit), ``mlx.core.quantize`` affine storage.
"""

from __future__ import annotations

import pytest

from g4sim.analytic.components import Component
from g4sim.analytic.memory import weight_bytes_by_component
from g4sim.analytic.quant import Tensor, get_quant
from g4sim.analytic.tensors import quant_context
from g4sim.engines import EngineError, Workload, engine_for_command, get_engine
from g4sim.engines.auto import choose
from g4sim.engines.mlx import MlxEngine
from g4sim.evaluation import Request, Verdict, evaluate
from g4sim.hardware import get_profile
from g4sim.plan.commandline import request_from_command
from g4sim.spec import VARIANTS
from g4sim.units import GiB, MiB

MOE, DENSE, E2B = VARIANTS["26b-a4b"], VARIANTS["31b"], VARIANTS["e2b"]
MAC = get_profile("apple-m4-pro-48gb")


def test_cache_cells_follow_the_rotating_and_growing_caches():
    mlx, t = get_engine("mlx"), MOE.text  # window 1024; layer 0 sliding, layer 5 full
    assert [mlx.kv_cells(t, 0, n) for n in (1, 300, 1024, 1025, 3071, 100_000)] == [256, 512, 1024, 1025, 3071, 3071]
    assert mlx.kv_cells(t, 0, 100_000) == 1024 - 1 + 2048  # max_size - 1 + a 2048-token prefill chunk
    assert get_engine("mlx", prefill_step_size=512).kv_cells(t, 0, 100_000) == 1024 - 1 + 512
    assert [mlx.kv_cells(t, 5, n) for n in (1, 1000, 1024, 1025)] == [256, 1024, 1024, 1280]  # step = 256


def test_cache_bytes():
    w = Workload(MOE, 32768, 1, "mlx-4bit-g64", "bf16")
    m = get_engine("mlx").bind(w).memory(w, "soc")
    # 25 sliding layers x 3071 cells x 8 KV heads x 256 x 2 (K,V) x 2 B; 5 full x 32768 x 2 x 512 x 2 x 2 B
    assert m.get(Component.KV_SLIDING) == 25 * 3071 * 8 * 256 * 2 * 2 == 628_940_800
    assert m.get(Component.KV_FULL) == 5 * 32768 * 2 * 512 * 2 * 2 == 671_088_640
    e2b = Workload(E2B, 4096, 2, "mlx-4bit-g64", "bf16")
    m2 = get_engine("mlx").bind(e2b).memory(e2b, "soc")
    # E2B: 15 cache layers (20 share): 12 sliding x 2 seq x min(4096, 511 + 2048) cells x 1 head x 256 x 2 x 2 B
    assert m2.get(Component.KV_SLIDING) == 12 * 2 * 2559 * 256 * 2 * 2
    assert m2.get(Component.KV_FULL) == 3 * 2 * 4096 * 512 * 2 * 2


def test_mlx_affine_weight_bytes():
    fmt, qc = get_quant("mlx-4bit-g64"), quant_context(DENSE.text)
    q = Tensor("attention", "attn_q", 32 * 256, 5376, 0)  # 31B attn_q: 8192 x 5376
    assert fmt.tensor_bytes(q, qc) == 8192 * 5376 // 2 + 8192 * (5376 // 64) * 4  # packed 4-bit + bf16 scale, bias
    router = Tensor("router", "router", 128, 2816, 0)  # quant_predicate: router.proj 8 bits, group 64
    assert fmt.tensor_bytes(router, qc) == 128 * 2816 + 128 * 44 * 4
    assert fmt.tensor_bytes(Tensor("norms", "norm", 1, 5376, 0), qc) == 5376 * 2  # 1-D stays bf16
    assert fmt.tensor_bytes(Tensor("mlp", "ffn_down", 5376, 100, 0), qc) == 5376 * 100 * 2  # 100 % 64: kept bf16
    # the embedding is an nn.Embedding with to_quantized: quantized too
    assert weight_bytes_by_component(MOE, "mlx-4bit-g64")["token_embedding"] == 262144 * 2816 // 2 + 262144 * 44 * 4
    assert weight_bytes_by_component(MOE, "mlx-8bit-g64")["token_embedding"] == 262144 * 2816 + 262144 * 44 * 4
    assert get_quant("mlx-4bit").bits_per_linear_weight == 4.5


@pytest.mark.parametrize("device,workload,gpus,needle", [
    ("h100-sxm", Workload(DENSE, 4096, 1, "mlx-4bit-g64"), 1, "Apple silicon only"),
    ("apple-m4-pro-48gb", Workload(DENSE, 4096, 1, "mlx-4bit-g64", vision=True), 1, "mlx-vlm"),
    ("apple-m4-pro-48gb", Workload(DENSE, 4096, 1, "q4_k_m"), 1, "does not load q4_k_m"),
    ("apple-m4-pro-48gb", Workload(DENSE, 4096, 1, "mlx-4bit-g64"), 2, "not a GPU"),
])
def test_refusals_are_one_line(device, workload, gpus, needle):
    reason = get_engine("mlx").compatibility(workload, get_profile(device), gpus)
    assert reason is not None and needle in reason and "\n" not in reason


def test_wired_limit_replaces_the_default_fraction():
    w = Workload(DENSE, 65536, 1, "mlx-8bit-g64")  # needs 38.4 GiB
    default = evaluate(Request(w, MAC, get_engine("mlx")))
    raised = evaluate(Request(w, MAC, get_engine("mlx", wired_limit_mb=40960)))
    assert default.budget_bytes == int(48 * GiB * 0.75) == 36 * GiB  # recommendedMaxWorkingSetSize
    assert raised.budget_bytes == 40960 * MiB
    assert default.verdict is Verdict.DOES_NOT_FIT and raised.verdict is not Verdict.DOES_NOT_FIT
    assert raised.command.startswith("sudo sysctl iogpu.wired_limit_mb=40960\n")
    # a limit that leaves macOS less than its cited 4096 MiB is refused
    assert get_engine("mlx", wired_limit_mb=45057).compatibility(w, MAC, 1) is not None
    assert get_engine("mlx", wired_limit_mb=45056).compatibility(w, MAC, 1) is None


def test_printed_command_reads_back():
    w = Workload(MOE, 32768, 4, "mlx-8bit-g64")
    eng = get_engine("mlx", prefill_step_size=1024, wired_limit_mb=40000)
    before = evaluate(Request(w, MAC, eng))
    assert "--model mlx-community/gemma-4-26b-a4b-it-8bit --decode-concurrency 4" in before.command
    assert engine_for_command(before.command) is MlxEngine
    after = evaluate(request_from_command(before.command, None, MAC))
    assert after.request.workload == w and after.memory == before.memory and after.command == before.command
    assert after.request.engine.settings() == {"prefill_step_size": 1024, "wired_limit_mb": 40000}


@pytest.mark.parametrize("cmd,expected", [
    ("mlx_lm.generate --model mlx-community/gemma-4-31b-it-4bit --max-kv-size 8192 --prompt hi",
     ("31b", "mlx-4bit-g64", 8192, 1)),
    ("python -m mlx_lm server --model google/gemma-4-E2B-it --decode-concurrency 8", ("e2b", "bf16", None, 8)),
    ("mlx_lm.server --model mlx-community/gemma-4-e4b-it-bf16", ("e4b", "bf16", None, None)),
])
def test_user_commands(cmd, expected):
    p = MlxEngine.parse_command(cmd)
    assert (p.model, p.quant, p.ctx, p.batch) == expected


@pytest.mark.parametrize("cmd,needle", [
    ("mlx_lm.generate --model mlx-community/gemma-4-31b-it-4bit --kv-bits 4", "unsupported flag '--kv-bits'"),
    ("mlx_lm.server --model mlx-community/gemma-4-31b-it-mxfp4", "not mxfp4"),
])
def test_what_g4sim_does_not_plan_is_named(cmd, needle):
    with pytest.raises(EngineError, match=needle):
        MlxEngine.parse_command(cmd)


def test_auto_picks_mlx_for_an_mlx_format_on_apple_only():
    w = Workload(MOE, 8192, 1, "mlx-4bit-g64")
    engine, why = choose(w, MAC)
    assert engine.name == "mlx" and "mlx-lm" in why
    with pytest.raises(EngineError, match="Apple silicon only"):
        choose(w, get_profile("rtx4090"))
    assert choose(Workload(MOE, 8192, 1, "q4_k_m"), MAC)[0].name == "llamacpp"  # GGUF stays llama.cpp's
