"""Multi-GPU and host-offload layouts: per-GPU memory, communication cost, and ranked layouts that fit.

Tensor parallel over n GPUs (Megatron-style, as vLLM does it): attention heads, MLP columns, experts
and the vocabulary are split n ways; a layer's KV heads are split too, and replicated when n exceeds
them (vLLM replicates KV heads when tensor_parallel_size > num_kv_heads), so a GPU holds
ceil(kv_heads / n) of them; activations and runtime overhead are per GPU.  Each layer does two
all-reduces of the hidden state per token; a ring all-reduce moves 2 (n - 1) / n of it over the
profile's interconnect.  Host offload follows llama.cpp (``--n-cpu-moe`` for experts, ``-ngl`` for
whole layers): offloaded weights are read from host memory at the host's bandwidth.
No torch import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from g4sim.analytic import MemoryBreakdown
from g4sim.engines import get_engine
from g4sim.hardware import HardwareProfile, load_profiles
from g4sim.plan import PlanRequest, smallest_loss_quant
from g4sim.throughput import predict

HOST_PROFILE = "desktop-ddr5"  # where offloaded weights are read from, unless told otherwise
_REPLICATED = ("norms", "router")


def tp_valid(req: PlanRequest, tp: int) -> bool:
    """Heads must split evenly; KV heads must split evenly or be replicated whole."""
    t = req.spec.text
    if t.num_heads % tp:
        return False
    return all(t.kv_heads(i) % tp == 0 or tp % t.kv_heads(i) == 0 for i in t.cache_layers)


def _kv_share(req: PlanRequest, tp: int, sliding: bool) -> float:
    t = req.spec.text
    layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
    if not layers:
        return 1.0
    kvh = t.kv_heads(layers[0])
    return math.ceil(kvh / tp) / kvh


def per_gpu_memory(req: PlanRequest, tp: int) -> MemoryBreakdown:
    """The memory one of ``tp`` tensor-parallel GPUs holds."""
    terms = []
    for term in replace(req, gpus=1).memory().terms:
        n = term.bytes
        if term.category == "weights" and term.location == "accelerator" and not term.name.endswith(_REPLICATED):
            n = -(-n // tp)
        elif term.category == "kv_cache":
            n = int(n * _kv_share(req, tp, "sliding" in term.name))
        terms.append(replace(term, bytes=n, source=term.source + (f"; tensor parallel {tp}" if tp > 1 else "")))
    return MemoryBreakdown(tuple(terms))


def allreduce_seconds_per_token(req: PlanRequest, tp: int, batch: int = 1) -> float:
    """Two ring all-reduces of the hidden state per layer per decoded token."""
    if tp == 1:
        return 0.0
    link = req.device.interconnect.bandwidth_bytes_per_s if req.device.interconnect else 16e9
    volume = 2 * (tp - 1) / tp * batch * req.spec.text.hidden_size * 2  # bf16 activations
    return req.spec.text.num_layers * 2 * volume / link


@dataclass(frozen=True)
class Layout:
    name: str
    gpus: int
    quant: str
    engine: str
    per_gpu_bytes: int
    usable_bytes: int
    host_bytes: int
    decode_tokens_per_s: float
    comm_seconds_per_token: float
    command: str

    @property
    def fits(self) -> bool:
        return self.per_gpu_bytes <= self.usable_bytes

    def to_dict(self) -> dict:
        return {**self.__dict__, "fits": self.fits}


def _decode_with_host(req: PlanRequest, gpu_weight_bytes: int, host_weight_bytes: int, host: HardwareProfile) -> float:
    """Decode tok/s when part of the weights stream from host memory each step."""
    speed = predict(req.spec, req.device, ctx=req.ctx, batch=req.batch, quant=req.quant, kv_dtype=req.kv_dtype,
                    engine=req.engine)
    total = gpu_weight_bytes + host_weight_bytes
    share_host = host_weight_bytes / total if total else 0.0
    step = speed.decode_step_seconds * (1 - share_host)
    step += speed.decode_step_bytes * share_host / (host.memory_bandwidth_bytes_per_s * host.efficiency.decode_bandwidth)
    return req.batch / step


def tensor_parallel_layout(req: PlanRequest, tp: int) -> Layout | None:
    from g4sim.launch import launch_command

    if not tp_valid(req, tp):
        return None
    vllm = replace(req, engine=get_engine("vllm"))
    mem = per_gpu_memory(vllm, tp)
    speed = predict(req.spec, req.device, ctx=req.ctx, batch=req.batch, quant=req.quant, kv_dtype=req.kv_dtype,
                    engine=vllm.engine)
    comm = allreduce_seconds_per_token(req, tp, req.batch)
    decode = req.batch / (speed.decode_step_seconds / tp + comm)
    command = (launch_command(vllm) or "") + f" \\\n  --tensor-parallel-size {tp}"
    return Layout(f"{tp} x {req.device.name}, tensor parallel (vLLM)", tp, req.quant, "vllm", mem.total(),
                  vllm.usable_bytes, 0, decode, comm, command)


def offload_layout(req: PlanRequest, host: HardwareProfile) -> Layout | None:
    """llama.cpp on one GPU with the fewest experts (--n-cpu-moe) or layers (-ngl) kept on the host."""
    from g4sim.launch import launch_command

    t = req.spec.text
    if req.quant not in ("q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_k_s", "iq4_xs", "q4_0", "q3_k_m", "q2_k",
                         "bf16", "fp16"):
        return None
    knob = "n_cpu_moe" if t.enable_moe_block else "n_gpu_layers"
    values = range(0, t.num_layers + 1) if knob == "n_cpu_moe" else range(t.num_layers + 1, -1, -1)
    for value in values:
        eng = get_engine("llamacpp", **{knob: value})
        r = replace(req, engine=eng)
        mem = r.memory()
        if mem.total() <= r.usable_bytes:
            host_w = sum(x.bytes for x in mem.terms if x.category == "weights" and x.location == "host")
            gpu_w = sum(x.bytes for x in mem.terms if x.category == "weights" and x.location == "accelerator")
            what = f"--n-cpu-moe {value}" if knob == "n_cpu_moe" else f"-ngl {value}"
            return Layout(f"1 x {req.device.name}, llama.cpp with host offload ({what})", 1, req.quant, "llamacpp",
                          mem.total(), r.usable_bytes, mem.total("host"), _decode_with_host(r, gpu_w, host_w, host), 0.0,
                          launch_command(r) or "")
    return None


def quantized_layout(req: PlanRequest) -> Layout | None:
    """The smallest-loss weight format that fits one GPU, in the asked engine or else in llama.cpp."""
    from g4sim.launch import launch_command

    tries = [(req.engine, req.kv_dtype)] + [(get_engine("llamacpp"), kv) for kv in (req.kv_dtype, "q8_0", "q4_0")]
    for engine, kv in tries:  # first weights alone, then weights with a quantized KV cache (llama.cpp -ctk/-ctv)
        r = replace(req, engine=engine, kv_dtype=kv)
        quant = smallest_loss_quant(r)
        if quant is not None and (quant, kv) != (req.quant, req.kv_dtype):
            break
    else:
        return None
    r = replace(r, quant=quant)
    speed = predict(r.spec, r.device, ctx=r.ctx, batch=r.batch, quant=quant, kv_dtype=r.kv_dtype, engine=r.engine)
    kv_note = f", KV {r.kv_dtype}" if r.kv_dtype != req.kv_dtype else ""
    return Layout(f"1 x {req.device.name}, weights in {quant}{kv_note} ({r.engine.name})", 1, quant, r.engine.name,
                  r.memory().total(), r.usable_bytes, r.memory().total("host"), speed.decode_tokens_per_s, 0.0,
                  launch_command(r) or "")


def ranked_layouts(req: PlanRequest, max_gpus: int = 8, host: str = HOST_PROFILE) -> list[Layout]:
    """Layouts that fit, cheapest first: fewest GPUs, then fastest decode."""
    candidates: list[Layout | None] = [quantized_layout(req), offload_layout(req, load_profiles()[host])]
    for tp in (2, 4, 8):
        if tp <= max_gpus:
            layout = tensor_parallel_layout(req, tp)
            if layout and layout.fits:
                candidates.append(layout)
                break  # the smallest TP degree that fits; more GPUs only cost more
    fitting = [c for c in candidates if c is not None and c.fits]
    return sorted(fitting, key=lambda c: (c.gpus, -c.decode_tokens_per_s))


__all__ = ["Layout", "per_gpu_memory", "ranked_layouts", "tensor_parallel_layout", "tp_valid"]
