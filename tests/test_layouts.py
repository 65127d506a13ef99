"""Multi-GPU and host-offload layouts: per-GPU memory, speed that follows the layout, ranked layouts."""

from __future__ import annotations

import pytest

from g4sim.analytic.components import Component, Location
from g4sim.engines import Workload, get_engine
from g4sim.evaluation import Incompatible, Request, evaluate, fit
from g4sim.evaluation.speed import allreduce_seconds, hop_seconds
from g4sim.hardware import get_profile
from g4sim.plan.layouts import ranked_layouts
from g4sim.spec import get_variant


def req(model="26b-a4b", gpu="h100-sxm", engine="vllm", gpus=1, **kw):
    return Request(Workload(get_variant(model), **{"ctx": 32768, **kw}), get_profile(gpu), get_engine(engine), gpus)


def test_tensor_parallel_sizes():
    t = get_variant("26b-a4b").text  # 16 query heads; 8 KV heads on sliding layers, 2 on full layers
    assert get_engine("vllm").tensor_parallel_sizes(t, 8) == (1, 2, 4, 8)
    assert get_engine("llamacpp").tensor_parallel_sizes(t, 3) == (1, 2, 3)  # layer split: any count
    assert get_engine("g4sim").tensor_parallel_sizes(t) == (1,)


def test_per_gpu_memory_splits_weights_and_replicates_kv_heads():
    one, four = fit(req()).memory, fit(req(gpus=4)).memory
    assert four.get(Component.EXPERTS) == -(-one.get(Component.EXPERTS) // 4)
    assert four.get(Component.NORMS) == one.get(Component.NORMS)  # replicated
    assert four.get(Component.KV_SLIDING) == one.get(Component.KV_SLIDING) // 4  # 8 heads / 4
    assert four.get(Component.KV_FULL) == one.get(Component.KV_FULL) // 2  # 2 heads: one each, replicated
    assert four.get(Component.HIDDEN_STATES) == one.get(Component.HIDDEN_STATES)


def test_speed_follows_tensor_parallelism_by_the_physics():
    """31B on 1, 2, 4 H100 SXM (vLLM): per-GPU work / n plus two all-reduces per layer, each paying
    NCCL's ~6 us small-message latency and the bytes at NVLink's one-direction 450 GB/s (the
    datasheet's 900 GB/s adds both directions)."""
    t = get_variant("31b").text
    speeds = {n: evaluate(req("31b", gpus=n)).speed for n in (1, 2, 4)}
    one = speeds[1].decode_step_seconds
    for n in (2, 4):
        comm = t.num_layers * 2 * (6e-6 + (2 * (n - 1) / n * 1 * t.hidden_size * 2) / 450e9)
        assert speeds[n].comm_seconds_per_step == comm == allreduce_seconds(t.hidden_size, t.num_layers, n, 1, 450e9)
        assert speeds[n].decode_step_seconds == pytest.approx(one / n + comm, rel=1e-12)
    d = {n: s.decode_tokens_per_s for n, s in speeds.items()}
    assert d[1] < d[2] < 2 * d[1] and d[2] < d[4] < 2 * d[2]


def test_layer_split_is_no_faster_than_one_gpu():
    t = get_variant("31b").text
    one = evaluate(req("31b", engine="transformers")).speed
    two = evaluate(req("31b", engine="transformers", gpus=2)).speed
    assert two.decode_step_seconds == one.decode_step_seconds + hop_seconds(t.hidden_size, 2, 1, 450e9)
    assert hop_seconds(t.hidden_size, 2, 1, 450e9) == 6e-6 + t.hidden_size * 2 / 450e9
    assert two.decode_tokens_per_s < one.decode_tokens_per_s


def test_host_offload_is_slower_and_counts_pcie_in_prefill():
    base = req("26b-a4b", "rtx4090", "llamacpp", quant="q4_k_m", ctx=8192)
    off = Request(base.workload, base.device, get_engine("llamacpp", n_cpu_moe=10))
    e0, e1 = evaluate(base), evaluate(off)
    host_experts = e1.memory.get(Component.EXPERTS, Location.HOST)
    assert host_experts > 0 and e1.speed.decode_tokens_per_s < e0.speed.decode_tokens_per_s
    micro_batches = 8192 // 512
    upload = micro_batches * host_experts / get_profile("rtx4090").host_link_bytes_per_s
    assert e1.speed.prefill_seconds == pytest.approx(e0.speed.prefill_seconds + upload, rel=1e-9)


def test_tensor_parallel_needs_an_interconnect_and_a_gpu():
    with pytest.raises(Incompatible, match="not a GPU"):
        fit(req("e2b", "rpi5-8gb", "llamacpp", gpus=2, quant="q4_0"))
    with pytest.raises(Incompatible, match="one device"):
        fit(req("e2b", "rtx4090", "g4sim", gpus=2))


def test_31b_bf16_on_a_4090_gets_ranked_layouts_that_load():
    layouts = ranked_layouts(req("31b", "rtx4090", "llamacpp", quant="bf16", ctx=32768))
    assert len(layouts) >= 3 and all(l.evaluation.loads for l in layouts)
    assert any(l.evaluation.request.gpus > 1 for l in layouts) and any("offload" in l.name for l in layouts)
    assert all(l.evaluation.command for l in layouts)
    host_ram = get_profile("desktop-ddr5").usable_bytes(True)
    assert all(l.evaluation.host_bytes <= host_ram for l in layouts)
    for l in layouts:  # every layout is one the engine can run on those devices
        r = l.evaluation.request
        assert r.engine.compatibility(r.workload, r.device, r.gpus) is None


def test_no_offload_layout_needs_more_host_ram_than_the_desktop_has():
    """31B bf16 at 256k would keep ~78 GiB on the host with -ngl 0: more than the 64 GB desktop holds."""
    layouts = ranked_layouts(req("31b", "rtx4090", "llamacpp", quant="bf16", ctx=262144))
    assert layouts and not any("offload" in l.name for l in layouts)
