"""Ollama (>= 0.30, llama-server underneath): figures hand-computed from the cited sources.

Sources: ollama/ollama v0.33.0-rc2 (fb3076099687) and the llama.cpp rules of g4sim/engines/llamacpp.py;
the published run is decision log D-002 (gemma4:e4b-it-qat, Ollama >= 0.30.5, GTX 1070 8 GB, num_ctx
8192): 2,696 MiB of weights on the GPU, 2,730 MiB in host memory, a 168 MiB KV cache.
"""

from __future__ import annotations

import pytest

from g4sim.analytic.components import Category, Component, Location
from g4sim.analytic.memory import weight_bytes_by_component
from g4sim.engines.llamacpp import LlamaCppEngine
from g4sim.engines import EngineError, Workload, engine_for_command, get_engine
from g4sim.engines.ollama import (
    OllamaEngine, PsLine, effective_num_ctx, generation_batch_for_context, human_bytes, parse_tag,
)
from g4sim.evaluation import Request, evaluate
from g4sim.hardware import get_profile
from g4sim.plan.commandline import request_from_command
from g4sim.spec import VARIANTS
from g4sim.units import GiB, MiB

E4B, MOE, DENSE = VARIANTS["e4b"], VARIANTS["26b-a4b"], VARIANTS["31b"]


def test_e4b_qat_matches_the_published_ollama_run():
    # num_ctx 8192, one slot, f16 cache, num_batch 512 (Ollama steps 1024 down on an 8 GB card, below)
    w = Workload(E4B, 8192, 1, "q4_0", "fp16")
    m = get_engine("ollama", n_ubatch=512).bind(w).memory(w)
    # llama.cpp SWA cells = pad256(min(n_ctx, window 512 + n_ubatch 512)) = 1024; E4B caches 24 layers
    # (18 share): 20 sliding x 1024 cells x (2 KV heads x 256 x 2 B x 2) + 4 full x 8192 cells x (2 x 512 x 2 B x 2)
    assert m.get(Component.KV_SLIDING) == 20 * 1024 * 2048 == 40 * MiB
    assert m.get(Component.KV_FULL) == 4 * 8192 * 4096 == 128 * MiB  # published: 168 MiB in all
    text = [t for t in m.terms if t.category is Category.WEIGHTS and t.component not in
            (Component.VISION_TOWER, Component.AUDIO_TOWER)]
    gpu = sum(t.bytes for t in text if t.location is Location.ACCELERATOR)
    host = sum(t.bytes for t in text if t.location is Location.HOST)
    assert round(gpu / MiB) == 2696 and round(host / MiB) == 2730  # published, to the MiB
    assert host == m.get(Component.TOKEN_EMBEDDING, Location.HOST) + m.get(Component.PLE_TABLE, Location.HOST)
    # the projector is loaded although the workload is text-only (--mmproj), on the GPU
    assert m.get(Component.VISION_TOWER, Location.ACCELERATOR) > 0 and m.get(Component.AUDIO_TOWER) > 0


def test_automatic_num_batch_follows_context_then_vram():
    assert [generation_batch_for_context(n) for n in (4096, 4097, 32768, 32769)] == [512, 1024, 1024, 2048]
    w = Workload(E4B, 8192, 1, "q4_0", "fp16")
    ollama = get_engine("ollama")
    # PredictServerVRAM = 5,139,... B file + 2 x 42 layers x 2 KV heads x (2560 / 8) x 8192 x 2 B > 75 % of 7.5 GiB
    assert ollama._automatic_batch(w, int(7.5 * GiB)) == 512
    assert ollama._automatic_batch(w, 22 * GiB) == 1024
    assert ollama.bind(Workload(MOE, 16384, 2)).n_ubatch == 1024  # 16384 x 2 = 32768, not above it
    assert ollama.bind(Workload(MOE, 16385, 2)).n_ubatch == 2048
    assert get_engine("ollama", flash_attn=False).bind(Workload(MOE, 65536, 1)).n_ubatch == 512


def test_num_ctx_is_raised_to_2048_for_a_vision_model_and_capped_at_the_trained_context():
    assert effective_num_ctx(MOE.text, 100) == 2048 and effective_num_ctx(MOE.text, 2049) == 2049
    assert effective_num_ctx(E4B.text, 262144) == 131072
    eng = get_engine("ollama")
    assert eng.bind(Workload(MOE, 100)).kv_cells(MOE.text, 5, 100) == 2048  # a full layer: pad256(2048)
    # SWA: pad256(min(2048, 1024 + 512)) = 1536
    assert eng.bind(Workload(MOE, 100)).kv_cells(MOE.text, 0, 100) == 1536


@pytest.mark.parametrize("device,workload,settings,needle", [
    ("phone-8gb", Workload(VARIANTS["e2b"], 4096, 1, "q4_k_m", "fp16"), {}, "not for phones"),
    ("rtx4090", Workload(DENSE, 4096, 1, "q6_k", "fp16"), {}, "--engine llamacpp"),
    ("rtx4090", Workload(DENSE, 4096, 1, "q4_k_m", "q8_0"), {"flash_attn": False}, "OLLAMA_FLASH_ATTENTION=1"),
])
def test_refusals_are_one_line(device, workload, settings, needle):
    reason = get_engine("ollama", **settings).compatibility(workload, get_profile(device), 1)
    assert reason is not None and needle in reason and "\n" not in reason


def test_printed_recipe_reads_back_exactly():
    w = Workload(MOE, 32768, 2, "q4_k_s", "q8_0")
    eng = get_engine("ollama", n_gpu_layers=20, n_cpu_moe=7)
    cmd = eng.bind(w).launch_command(w, 2, get_profile("rtx4090"))
    assert "OLLAMA_NUM_PARALLEL=2 OLLAMA_KV_CACHE_TYPE=q8_0 OLLAMA_FLASH_ATTENTION=1 LLAMA_ARG_N_CPU_MOE=7" in cmd
    assert "FROM gemma4:26b-a4b-it-bf16" in cmd and "--quantize q4_K_S" in cmd  # q4_K_S: ollama create
    assert "PARAMETER num_ctx 32768" in cmd and "PARAMETER num_batch 2048" in cmd and "PARAMETER num_gpu 20" in cmd
    assert engine_for_command(cmd) is OllamaEngine
    p = OllamaEngine.parse_command(cmd)
    assert (p.model, p.quant, p.kv_dtype, p.ctx, p.batch, p.gpus) == ("26b-a4b", "q4_k_s", "q8_0", 32768, 2, 2)
    assert (p.engine.n_gpu_layers, p.engine.n_cpu_moe, p.engine.n_ubatch, p.engine.flash_attn) == (20, 7, 2048, True)
    req = Request(w, get_profile("rtx4090"), eng, 2)
    before = evaluate(req)
    after = evaluate(request_from_command(before.command, None, get_profile("rtx4090"), gpus=2))
    assert after.memory == before.memory and after.command == before.command


@pytest.mark.parametrize("cmd,expected", [
    ("OLLAMA_NUM_PARALLEL=2 OLLAMA_KV_CACHE_TYPE=q8_0 ollama run gemma4:26b", ("26b-a4b", "q4_k_m", "q8_0", None, 2)),
    ("ollama run gemma4:26b-a4b-it-q8_0 --verbose", ("26b-a4b", "q8_0", "fp16", None, 1)),
    ("ollama run gemma4:e2b-it-qat", ("e2b", "q4_0", "fp16", None, 1)),
    ("OLLAMA_CONTEXT_LENGTH=65536 ollama run gemma4", ("e4b", "q4_k_m", "fp16", 65536, 1)),
    ("ollama run gemma4:31b-it-bf16\n/set parameter num_ctx 16384", ("31b", "bf16", "fp16", 16384, 1)),
])
def test_user_commands(cmd, expected):
    p = OllamaEngine.parse_command(cmd)
    assert (p.model, p.quant, p.kv_dtype, p.ctx, p.batch) == expected


@pytest.mark.parametrize("tag,needle", [
    ("gemma4:31b-cloud", "ollama.com"), ("gemma4:e2b-nvfp4", "MLX runner"), ("gemma4:12b", "not a Gemma 4 variant"),
    ("gemma4:31b-it-q6_K", "-it-qat"), ("llama3:8b", "not a gemma4 tag"),
])
def test_tags_g4sim_does_not_plan_are_named(tag, needle):
    with pytest.raises(EngineError, match=needle):
        parse_tag(tag)
    with pytest.raises(EngineError):
        OllamaEngine.parse_command(f"ollama run {tag}")


def test_ps_size_and_split_with_num_gpu():
    # 31B q4_K_M, num_ctx 8192, num_batch 512, num_gpu 40: layers 21..59 on the GPU (i_gpu_start = 61 - 40)
    w = Workload(DENSE, 8192, 1, "q4_k_m", "fp16")
    eng = get_engine("ollama", n_gpu_layers=40, n_ubatch=512)
    ps = eng.ps_line(w, get_profile("rtx4090"))
    # f16 K+V per cell: sliding 16 heads x 256 x 2 x 2 B = 16384, full 4 x 512 x 2 x 2 B = 8192; sliding cells
    # pad256(min(8192, 1024 + 512)) = 1536; host layers 0..20 = 18 sliding + 3 full (5, 11, 17)
    kv_gpu = 32 * 1536 * 16384 + 7 * 8192 * 8192
    kv_host = 18 * 1536 * 16384 + 3 * 8192 * 8192
    # llama.cpp's compute buffer: the reproduced worst-case graph, equal to llama.cpp's log at every printed
    # digit on 556 loads (tests/test_llamacpp_loader.py); the output buffer holds one slot's logits (vocab x 4 B)
    compute = LlamaCppEngine(n_ubatch=512).activation_terms(DENSE.text, ctx=8192, batch=1, quant="q4_k_m")[0].bytes
    m = eng.bind(w).memory(w)
    gpu_weights = sum(t.bytes for t in m.terms if t.category is Category.WEIGHTS and t.location is Location.ACCELERATOR
                      and t.component is not Component.VISION_TOWER)
    assert m.get(Component.VISION_TOWER, Location.HOST) > 0  # num_gpu below 61: --no-mmproj-offload
    assert ps.vram_bytes == gpu_weights + kv_gpu + compute
    assert ps.size_bytes == (sum(weight_bytes_by_component(DENSE, "q4_k_m").values()) + kv_gpu + kv_host + compute
                             + 262144 * 4)
    cpu = round((ps.size_bytes - ps.vram_bytes) / ps.size_bytes * 100)
    assert ps.processor == f"{cpu}%/{100 - cpu}% CPU/GPU" and 0 < cpu < 100
    assert (ps.context, ps.num_batch, ps.gpu_layers, ps.fit) == (8192, 512, 40, False)


def test_ps_when_llama_server_fits_the_layers():
    w = Workload(DENSE, 32768, 1, "q4_k_m", "fp16")
    dev = get_profile("rtx4090")
    ps = get_engine("ollama").ps_line(w, dev)
    assert ps.fit and ps.num_batch == 512  # 1024 stepped down: the file alone is over 75 % of free VRAM
    target = dev.usable_bytes(True) - 1024 * MiB  # common/common.h fit_params_target

    def used(layers):
        e = OllamaEngine(n_ubatch=512, n_gpu_layers=layers, fit_placed=True).bind(w)
        return e.memory(w).total(Location.ACCELERATOR)

    assert used(ps.gpu_layers) <= target < used(ps.gpu_layers + 1)  # the most layers that leave 1 GiB free
    bound = get_engine("ollama", n_ubatch=512).bind(w)  # at the byte: 1,024 MiB left free, not one byte less
    assert bound._fit(w, "gpu", used(40) + 1024 * MiB)[0].n_gpu_layers == 40
    assert bound._fit(w, "gpu", used(40) + 1024 * MiB - 1)[0].n_gpu_layers == 39
    assert ps.processor.endswith("CPU/GPU") and ps.vram_bytes < ps.size_bytes
    # a MoE model keeps every layer on the GPU and moves the first layers' experts out
    moe = get_engine("ollama").ps_line(Workload(MOE, 32768, 1, "q8_0", "fp16"), dev)
    assert moe.fit and moe.gpu_layers == 31 and 0 < moe.n_cpu_moe < 30


def test_ps_counts_vram_only_when_every_layer_is_offloaded():
    w = Workload(MOE, 8192, 1, "q4_k_m", "fp16")
    ps = get_engine("ollama").ps_line(w, get_profile("h100-sxm"))
    m = get_engine("ollama").bind(w).memory(w)
    vram = m.total(Location.ACCELERATOR) - m.get(Component.CUDA_CONTEXT) - m.get(Component.VISION_TOWER)
    assert ps.processor == "100% GPU" and ps.size_bytes == ps.vram_bytes == vram  # input embedding not counted
    # LLAMA_ARG_N_CPU_MOE leaves no fit log line: Ollama still says 100% GPU with experts in host memory
    quirk = get_engine("ollama", n_cpu_moe=10).ps_line(w, get_profile("h100-sxm"))
    assert quirk.processor == "100% GPU" and quirk.vram_bytes < ps.vram_bytes
    assert get_engine("ollama").ps_line(Workload(VARIANTS["e2b"], 4096, 1, "q4_0", "fp16"),
                                        get_profile("rpi5-8gb")).processor == "100% CPU"


def test_human_bytes_is_ollamas():
    assert [human_bytes(n) for n in (17_990_000_000, 9_600_000_000, 10**9, 999, 1_500)] == \
        ["17 GB", "9.6 GB", "1 GB", "999 B", "1.5 KB"]
    assert PsLine("x", 200, 99, 4096, 512, 1, 0, True).processor == "51%/49% CPU/GPU"  # Go rounds 50.5 up


def test_host_layers_are_priced_at_host_bandwidth():
    w = Workload(DENSE, 8192, 1, "q4_k_m", "fp16")
    full = evaluate(Request(w, get_profile("h100-sxm"), get_engine("ollama")))
    split = evaluate(Request(w, get_profile("h100-sxm"), get_engine("ollama", n_gpu_layers=40)))
    assert split.host_bytes > full.host_bytes and "host memory" in split.speed.layout
    assert split.speed.decode_tokens_per_s < full.speed.decode_tokens_per_s / 2


# ---- a CPU-only load: llama.cpp's CPU path (ollama/ollama fb3076099687 llm/llama_server.go startLlamaServer passes
# no --repack / --no-repack, so llama-server's default --repack holds; MemorySize keeps CPU_REPACK in SIZE) ----

@pytest.mark.parametrize("device,variant,quant,features", [
    ("rpi5-8gb", "e2b", "q4_0", "arm-dotprod"),      # Q4_0 (rows x 4) and the tied output's Q6_K (rows x 8)
    ("ci-cpu-2core", "e4b", "q4_k_m", "x86-avx2"),   # Q4_K rows x 8
    ("rpi5-8gb", "26b-a4b", "q8_0", "arm-dotprod"),  # Q8_0: repacked on ARM (dotprod), not on x86-avx2
])
def test_cpu_load_prices_llama_cpps_repacked_copy_for_the_devices_cpu(device, variant, quant, features):
    w = Workload(VARIANTS[variant], 4096, 1, quant, "fp16")
    dev = get_profile(device)
    ev = evaluate(Request(w, dev, get_engine("ollama")))
    same = evaluate(Request(w, dev, get_engine("llamacpp", n_ubatch=512)))  # Ollama's num_batch at 4,096 tokens
    assert dev.cpu_features == features
    repacked = ev.memory.get(Component.REPACKED_WEIGHTS, Location.ACCELERATOR)
    assert repacked > 0 and repacked == same.memory.get(Component.REPACKED_WEIGHTS, Location.ACCELERATOR)
    # the llama.cpp rule with the device's feature set named (not DEFAULT_CPU_FEATURES, x86-avx2, on the Pi)
    rule = LlamaCppEngine(cpu_features=features).extra_buffer_terms(w)
    assert [t.bytes for t in rule] == [repacked]
    # everything else is llama.cpp's CPU load too (no GPU copy of the tied output), plus the projector Ollama loads
    towers = ev.memory.get(Component.VISION_TOWER, None) + ev.memory.get(Component.AUDIO_TOWER, None)
    assert ev.memory.get(Component.OUTPUT_COPY, None) == 0 and towers > 0
    assert ev.memory.total() == same.memory.total() + towers


def test_cpu_features_follow_the_device_as_llama_cpps_do():
    for name in ("rpi5-8gb", "ci-cpu-2core", "rpi4-8gb", "desktop-ddr5", "rtx4090"):
        dev = get_profile(name)
        assert get_engine("ollama").for_device(dev).cpu_features == LlamaCppEngine().for_device(dev).cpu_features \
            == dev.cpu_features
    rpi5 = get_profile("rpi5-8gb")
    assert OllamaEngine(cpu_features="x86-avx2").for_device(rpi5).cpu_features == "x86-avx2"  # a set one stays
    with pytest.raises(EngineError, match="cpu_features"):
        OllamaEngine(cpu_features="riscv")
    # the same plan, two CPUs: Q8_0 is repacked by ARM's dotprod kernels, not by x86-avx2's
    w = Workload(MOE, 4096, 1, "q8_0", "fp16")
    arm = evaluate(Request(w, rpi5, get_engine("ollama"))).memory
    x86 = evaluate(Request(w, get_profile("ci-cpu-2core"), get_engine("ollama"))).memory
    assert arm.get(Component.REPACKED_WEIGHTS) > 0 and x86.get(Component.REPACKED_WEIGHTS, None) == 0
    assert arm.total() - arm.get(Component.REPACKED_WEIGHTS) == x86.total()
    # rpi4-8gb (Cortex-A72, no dotprod): cpu_features none, nothing repacked
    rpi4 = evaluate(Request(Workload(VARIANTS["e2b"], 4096, 1, "q4_0", "fp16"), get_profile("rpi4-8gb"),
                            get_engine("ollama"))).memory
    assert rpi4.get(Component.REPACKED_WEIGHTS, None) == 0


def test_no_repacked_copy_on_a_gpu():
    w = Workload(VARIANTS["e2b"], 4096, 1, "q4_0", "fp16")
    for name in ("rtx4090", "h100-sxm"):
        m = evaluate(Request(w, get_profile(name), get_engine("ollama"))).memory
        # nothing repacked; the tied output is offloaded (its GPU copy), as llama.cpp on a GPU
        assert m.get(Component.REPACKED_WEIGHTS, None) == 0 and m.get(Component.OUTPUT_COPY) > 0
    assert get_engine("ollama").bind(w).memory(w, "gpu").get(Component.REPACKED_WEIGHTS, None) == 0


def test_ps_size_on_a_cpu_keeps_the_repacked_copy():
    # llm/llama_server.go MemorySize: CPU_Mapped (the file) + CPU_REPACK + KV + compute + output, nothing trimmed
    w = Workload(VARIANTS["e2b"], 4096, 1, "q4_0", "fp16")
    dev = get_profile("rpi5-8gb")
    ps = get_engine("ollama").ps_line(w, dev)
    m = get_engine("ollama").for_device(dev).bind(w).memory(w, "cpu")
    repacked = m.get(Component.REPACKED_WEIGHTS)
    kv = m.get(Component.KV_SLIDING) + m.get(Component.KV_FULL)
    assert repacked == LlamaCppEngine(cpu_features="arm-dotprod").extra_buffer_terms(w)[0].bytes
    assert ps.size_bytes == (sum(weight_bytes_by_component(VARIANTS["e2b"], "q4_0").values()) + repacked + kv
                             + m.get(Component.COMPUTE_BUFFER) + m.get(Component.LOGITS, Location.HOST))
    assert ps.vram_bytes == 0 and ps.processor == "100% CPU"
    off = get_engine("ollama", repack=False).ps_line(w, dev)
    assert ps.size_bytes - off.size_bytes == repacked


def test_llama_arg_repack_reaches_llama_server():
    # SetupLlamaServerCommandEnv starts from os.Environ(): `ollama serve`'s LLAMA_ARG_REPACK is llama-server's
    p = OllamaEngine.parse_command("LLAMA_ARG_REPACK=off ollama serve &\nollama run gemma4:e2b-it-qat")
    assert p.engine.repack is False and OllamaEngine.parse_command("ollama run gemma4:e2b").engine.repack is True
    assert OllamaEngine.parse_command("LLAMA_ARG_REPACK=1 ollama serve &\nollama run gemma4:e2b").engine.repack
    with pytest.raises(EngineError, match="LLAMA_ARG_REPACK"):
        OllamaEngine.parse_command("LLAMA_ARG_REPACK=maybe ollama serve &\nollama run gemma4:e2b")
    w = Workload(VARIANTS["e2b"], 4096, 1, "q4_0", "fp16")
    dev = get_profile("rpi5-8gb")
    before = evaluate(Request(w, dev, get_engine("ollama", repack=False)))
    assert "LLAMA_ARG_REPACK=0" in before.command and before.memory.get(Component.REPACKED_WEIGHTS, None) == 0
    after = evaluate(request_from_command(before.command, None, dev))
    assert after.memory == before.memory and after.command == before.command
    assert "LLAMA_ARG_REPACK" not in evaluate(Request(w, dev, get_engine("ollama"))).command


def test_apple_partial_offload_repacks_the_host_layers_as_llama_cpp_does():
    """llama-server on Metal (no host buffer type) repacks the weights num_gpu leaves on the host, for the
    device's cpu_features: Ollama's host REPACKED_WEIGHTS equal LlamaCppEngine's for the same -ngl; none with every
    layer on the GPU, and none on CUDA."""
    w = Workload(VARIANTS["26b-a4b"], 4096, 1, "q4_k_m", "fp16")
    mac, cuda = get_profile("apple-m4-pro-48gb"), get_profile("rtx4090")
    ngl = 20
    ollama = get_engine("ollama", n_gpu_layers=ngl)
    host = evaluate(Request(w, mac, ollama)).memory.get(Component.REPACKED_WEIGHTS, Location.HOST)
    rule = LlamaCppEngine(n_gpu_layers=ngl, n_ubatch=512).for_device(mac).host_extra_buffer_terms(w)
    assert ollama.for_device(mac).gpu_host_buffer is False and host > 0 and [t.bytes for t in rule] == [host]
    full = evaluate(Request(w, mac, get_engine("ollama"))).memory
    assert full.get(Component.REPACKED_WEIGHTS, None) == 0
    assert evaluate(Request(w, cuda, ollama)).memory.get(Component.REPACKED_WEIGHTS, None) == 0
