"""Weight repacking of the weights a GPU load of llama.cpp leaves on the host (-ngl, --n-cpu-moe).

What llama.cpp does (ggml-org/llama.cpp@0c1e57098, the commit llama-cpp-python 0.3.36 vendors; llamacpp.py's
"CPU extra buffers" section has the lines): host-resident weights, --n-cpu-moe's experts included (its
override to ggml_backend_cpu_buffer_type() is turned into a pick from the CPU buffer type list,
src/llama-model-loader.cpp:1238-1242), take the first buffer type of make_cpu_buft_list (src/llama-model.cpp:
1078-1137) that takes their op: ACCEL, then the GPU's host buffer type, then ggml-cpu's extra buffer types
(CPU_REPACK), then CPU.  CUDA / ROCm have a host buffer type (CUDA_Host) that takes every GGUF type: nothing
is repacked (with mmap the loader maps the file instead: llama-model-loader.cpp:1269-1277).  Metal has none
(ggml-metal.cpp:822): the weights are repacked exactly as on a CPU-only load, a real allocation beside the
mapped file -- as Ollama's llm/llama_server_test.go (fb3076099) "Metal partial offload with mmap" logs.
"""

from __future__ import annotations

import dataclasses

import pytest

from g4sim.analytic.components import Component, Location
from g4sim.analytic.quant import get_quant
from g4sim.analytic.tensors import quant_context, text_tensors
from g4sim.engines import Workload, get_engine
from g4sim.engines.llamacpp import LlamaCppEngine
from g4sim.evaluation import Request, evaluate
from g4sim.hardware import get_profile
from g4sim.plan.commandline import request_from_command
from g4sim.spec import VARIANTS

MOE = VARIANTS["26b-a4b"]
W = Workload(MOE, 4096, 1, "q4_k_m", "fp16")
APPLE = "apple-m4-pro-48gb"  # cpu_features arm-i8mm

# ggml/src/ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type at 0c1e57098, NEON with dotprod and i8mm:
# GGML type -> the rows (ne[1]) multiple it needs (Q4_0 4x8, Q4_K / Q5_K / Q6_K 8x8, Q8_0 4x8, IQ4_NL / MXFP4 4x4)
ARM_I8MM = {"Q4_0": 4, "Q4_K": 8, "Q5_K": 8, "Q6_K": 8, "IQ4_NL": 4, "MXFP4": 4, "Q8_0": 4}


def _host_repacked(spec, quant: str, ngl: int, ncmoe: int, table: dict[str, int] = ARM_I8MM) -> int:
    """The CPU_REPACK bytes, from the tensor table: every MUL_MAT / MUL_MAT_ID weight (the tied output is
    token_embd used as the output layer's MUL_MAT) that stays on the host, of a type the table takes with its
    rows a multiple of the interleave, each padded to the CPU buffer's 32-byte alignment."""
    t, fmt = spec.text, get_quant(quant)
    qc = quant_context(t)
    weights: dict[str, list] = {}  # name -> [type, rows ne[1], bytes, layer, experts]
    for x in text_tensors(t):
        if x.kind in ("norm", "ple_table") or (x.kind == "token_embd" and not t.tie_word_embeddings):
            continue
        w = weights.setdefault(x.name, [fmt.gguf_type(x, qc), 0, 0, x.layer, x.component == "experts"])
        w[1] += x.rows  # the experts' gate and up: one fused 3-D tensor, ne[1] = both
        w[2] += fmt.tensor_bytes(x, qc)
    i_gpu_start = max(t.num_layers + 1 - ngl, 0)  # src/llama-model.cpp load_tensors
    total = 0
    for typ, rows, b, layer, experts in weights.values():
        host = ngl <= t.num_layers if layer < 0 else (layer < i_gpu_start or (experts and layer < ncmoe))
        if host and typ in table and rows % table[typ] == 0:
            total += -(-b // 32) * 32
    return total


def _repacked(device: str, **settings) -> tuple[int, int]:
    m = evaluate(Request(W, get_profile(device), get_engine("llamacpp", **settings))).memory
    return m.get(Component.REPACKED_WEIGHTS, Location.HOST), m.get(Component.REPACKED_WEIGHTS, Location.ACCELERATOR)


@pytest.mark.parametrize("settings", [
    {"n_cpu_moe": 10},                       # experts of layers 0-9 (Q4_K gate_up; Q8_0 / Q5_0 down)
    {"n_gpu_layers": 20},                    # layers 0-10 and the output (the tied Q6_K token_embd)
    {"n_gpu_layers": 30},                    # layer 0 and the output
    {"n_gpu_layers": 25, "n_cpu_moe": 12},   # both
    {"n_cpu_moe": 30},                       # every layer's experts (--cpu-moe)
])
def test_metal_repacks_exactly_the_host_resident_weights(settings):
    host, acc = _repacked(APPLE, **settings)
    expected = _host_repacked(MOE, "q4_k_m", settings.get("n_gpu_layers", 999), settings.get("n_cpu_moe", 0))
    assert host == expected > 0 and acc == 0
    # --no-repack: none, and nothing else changes
    on = evaluate(Request(W, get_profile(APPLE), get_engine("llamacpp", **settings))).memory
    off = evaluate(Request(W, get_profile(APPLE), get_engine("llamacpp", repack=False, **settings))).memory
    assert off.get(Component.REPACKED_WEIGHTS, None) == 0 and on.total(None) - off.total(None) == expected
    assert on.total() == off.total()  # device memory untouched


def test_n_cpu_moe_by_hand():
    # 26b-a4b Q4_K_M, --n-cpu-moe 10: the fused gate_up experts are Q4_K (rows 2 x 704) in all ten layers; the
    # down experts are Q8_0 in layers 0, 1, 2, 5, 8 and Q5_0 (not repacked) in 3, 4, 6, 7, 9
    assert _repacked(APPLE, n_cpu_moe=10)[0] == 10 * 2 * 142_737_408 + 5 * 269_615_104


def test_nothing_on_the_host_nothing_repacked():
    # every layer and the output on the GPU: only the input tables stay on the host (GET_ROWS, never repacked)
    assert _repacked(APPLE) == (0, 0) and _repacked(APPLE, n_gpu_layers=31) == (0, 0)
    assert _host_repacked(MOE, "q4_k_m", 31, 0) == 0


def test_metal_with_nothing_offloaded_repacks_as_a_cpu_only_load():
    # -ngl 0 keeps every weight on the host: the same list and per-tensor rule as a CPU-only load
    cpu_only = LlamaCppEngine(cpu_features="arm-i8mm").extra_buffer_terms(W)
    assert _repacked(APPLE, n_gpu_layers=0)[0] == sum(t.bytes for t in cpu_only) == _host_repacked(MOE, "q4_k_m", 0, 0)


@pytest.mark.parametrize("device", ["rtx4090", "jetson-agx-orin-64gb", "dgx-spark"])
@pytest.mark.parametrize("settings", [{"n_cpu_moe": 10}, {"n_gpu_layers": 20}, {"n_gpu_layers": 0},
                                      {"n_gpu_layers": 25, "n_cpu_moe": 30}])
def test_cuda_keeps_host_weights_in_cuda_host_or_the_mapped_file(device, settings):
    # CUDA's host buffer type comes before CPU_REPACK in make_cpu_buft_list and takes every type: no repack
    m = evaluate(Request(W, get_profile(device), get_engine("llamacpp", **settings))).memory
    assert m.get(Component.EXPERTS, Location.HOST) > 0  # experts left on the host, as asked
    assert m.get(Component.REPACKED_WEIGHTS, None) == 0


def test_the_gpu_backend_is_bound_from_the_device():
    assert LlamaCppEngine().for_device(get_profile(APPLE)).gpu_host_buffer is False  # Metal: no host buffer type
    for name in ("rtx4090", "jetson-orin-nano-8gb", "mi300x", "rpi5-8gb", "ci-cpu-2core"):
        assert LlamaCppEngine().for_device(get_profile(name)).gpu_host_buffer is True
    # an engine told it has none (llama-server --no-host) prices CUDA's host weights as Metal's
    e = LlamaCppEngine(n_cpu_moe=10, gpu_host_buffer=False).bind(W)
    assert e.memory(W, "gpu").get(Component.REPACKED_WEIGHTS, Location.HOST) == _host_repacked(
        MOE, "q4_k_m", 999, 10, {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8})  # no cpu_features: x86-avx2
    # a CPU-only load is unchanged: its extra buffers are the CPU's (ACCELERATOR), as before
    cpu = LlamaCppEngine(cpu_features="arm-i8mm", gpu_host_buffer=False).bind(W).memory(W, "cpu")
    assert cpu.get(Component.REPACKED_WEIGHTS, Location.HOST) == 0 and cpu.get(Component.REPACKED_WEIGHTS) > 0


def test_a_metal_profile_without_cpu_features_uses_the_default():
    dev = dataclasses.replace(get_profile(APPLE), cpu_features=None, cpu_features_source=None)
    m = evaluate(Request(W, dev, get_engine("llamacpp", n_cpu_moe=10))).memory
    x86_avx2 = {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}  # llamacpp.DEFAULT_CPU_FEATURES
    assert m.get(Component.REPACKED_WEIGHTS, Location.HOST) == _host_repacked(MOE, "q4_k_m", 999, 10, x86_avx2)


def test_a_pasted_command_on_apple_silicon():
    cmd = ("llama-server -m gemma-4-26B-A4B-it-Q4_K_M.gguf -c 4096 -np 1 -ngl 999 -fa on -ctk f16 -ctv f16 "
           "--n-cpu-moe 10")
    ev = evaluate(request_from_command(cmd, None, get_profile(APPLE)))
    assert ev.memory.get(Component.REPACKED_WEIGHTS, Location.HOST) == _host_repacked(MOE, "q4_k_m", 999, 10)
    off = evaluate(request_from_command(cmd + " --no-repack", None, get_profile(APPLE)))
    assert off.memory.get(Component.REPACKED_WEIGHTS, None) == 0


def test_no_host_on_cuda_repacks_the_host_weights():
    """llama-server --no-host (common/arg.cpp params.no_host) drops CUDA_Host from make_cpu_buft_list: the
    weights --n-cpu-moe leaves on the host meet the CPU extra buffer types, as on Metal; the flag round-trips."""
    cmd = ("llama-server -m gemma-4-26B-A4B-it-Q4_K_M.gguf -c 4096 -np 1 -ngl 999 -fa on -ctk f16 -ctv f16 "
           "--n-cpu-moe 10")
    cuda = get_profile("rtx4090")  # no cpu_features: DEFAULT_CPU_FEATURES, x86-avx2
    x86_avx2 = {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}
    assert evaluate(request_from_command(cmd, None, cuda)).memory.get(Component.REPACKED_WEIGHTS, None) == 0
    req = request_from_command(cmd + " --no-host", None, cuda)
    assert req.engine.no_host and "--no-host" in req.engine.launch_command(W, 1, cuda)
    ev = evaluate(req)
    assert ev.memory.get(Component.REPACKED_WEIGHTS, Location.HOST) == _host_repacked(MOE, "q4_k_m", 999, 10, x86_avx2)
    off = evaluate(request_from_command(cmd + " --no-host --no-repack", None, cuda))
    assert off.memory.get(Component.REPACKED_WEIGHTS, None) == 0


def test_plan_takes_no_host(capsys):
    import json

    from g4sim.cli import main

    args = ["plan", "--model", "26b-a4b", "--quant", "q4_k_m", "--engine", "llamacpp", "--gpu", "rtx4090",
            "--n-cpu-moe", "10", "--json"]
    terms = {}
    for extra in ([], ["--no-host"]):
        with pytest.raises(SystemExit) as exc:
            main(args + extra)
        assert exc.value.code == 0
        data = json.loads(capsys.readouterr().out)
        terms[bool(extra)] = sum(t["bytes"] for t in data["memory"]["terms"] if t["component"] == "repacked_weights")
        assert ("--no-host" in data["launch_command"]) == bool(extra)
    x86_avx2 = {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}
    assert terms == {False: 0, True: _host_repacked(MOE, "q4_k_m", 999, 10, x86_avx2)}
