"""Speed of a deployment: its roofline on one device, then what its layout changes.

Units are in the names.  On one device, a phase that performs ``F`` FLOP and moves ``B`` bytes
takes at least ``max(F / P, B / W)`` (the roofline, peak ``P`` FLOP/s and bandwidth ``W`` bytes/s);
the prediction divides by the achieved fractions (``efficiency`` in the hardware profile,
calibrated where measured), so it never beats the bound.  Layouts:

* tensor parallel over n GPUs: each GPU does 1/n of the work and reads 1/n of the bytes, then two
  ring all-reduces of the hidden state per layer move ``2 (n - 1) / n x batch x hidden x 2 B`` each
  over the link's one-direction bandwidth;
* layer split over n GPUs (llama.cpp ``-sm layer``, accelerate ``device_map="auto"``): the GPUs
  take turns, so a step costs what it costs on one GPU plus n - 1 hops of the hidden state;
* weights kept in host memory (llama.cpp ``-ngl`` / ``--n-cpu-moe``): in decode the CPU computes
  with them at the host's bandwidth; in prefill they cross PCIe once per micro-batch.
Weight bytes are the exact file's stored bytes when the workload carries one (``Workload.file``).
No torch import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from g4sim.analytic.work import (
    compute_dtype, decode_step_bytes, decode_step_flop, expert_rows, prefill_expert_flop, prefill_flop,
    prefill_weight_bytes,
)
from g4sim.engines.base import Engine, Parallel, Workload
from g4sim.hardware import HardwareProfile

ACTIVATION_BYTES = 2  # hidden states cross links in 16-bit
# A small all-reduce costs a fixed latency before any byte moves: ~6 us on 2 x H100 over NVLink
# (NCCL 2.20.5, NVLSTree, CUDA graphs; github.com/NVIDIA/nccl/issues/1259).  Taken as the floor for
# every link and every GPU-to-GPU hand-off (PCIe and more GPUs are slower: this errs fast).
LINK_LATENCY_S = 6e-6
# A device whose profile names no host link is taken to sit on PCIe 4.0 x16: 16 GT/s x 16 lanes,
# 128b/130b = 31.5 GB/s each way (PCI-SIG PCIe 4.0 base specification).
PCIE4_X16_BYTES_PER_S = 31.5e9


def host_link_bytes_per_s(device: HardwareProfile) -> float:
    """One-direction bandwidth between host memory and the device."""
    return device.host_link_bytes_per_s or PCIE4_X16_BYTES_PER_S


@dataclass(frozen=True)
class Throughput:
    """Predicted speeds (efficiency-scaled) beside their roofline bounds (efficiency 1)."""

    prefill_tokens: int
    batch: int
    prefill_flop: float
    prefill_seconds: float
    prefill_seconds_roofline: float
    decode_step_bytes: float
    decode_step_flop: float
    decode_step_seconds: float
    decode_step_seconds_roofline: float
    decode_bound: str  # "bandwidth", "compute", "link" or "host"
    compute_dtype: str
    efficiency_provenance: str
    comm_seconds_per_step: float = 0.0
    layout: str = "1 device"

    @property
    def ttft_seconds(self) -> float:
        return self.prefill_seconds

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.batch * self.prefill_tokens / self.prefill_seconds

    @property
    def prefill_tokens_per_s_roofline(self) -> float:
        return self.batch * self.prefill_tokens / self.prefill_seconds_roofline

    @property
    def decode_tokens_per_s_per_sequence(self) -> float:
        return 1.0 / self.decode_step_seconds

    @property
    def decode_tokens_per_s(self) -> float:
        return self.batch / self.decode_step_seconds

    @property
    def decode_tokens_per_s_roofline(self) -> float:
        return self.batch / self.decode_step_seconds_roofline

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ttft_seconds=self.ttft_seconds, prefill_tokens_per_s=self.prefill_tokens_per_s,
                 prefill_tokens_per_s_roofline=self.prefill_tokens_per_s_roofline,
                 decode_tokens_per_s_per_sequence=self.decode_tokens_per_s_per_sequence,
                 decode_tokens_per_s=self.decode_tokens_per_s, decode_tokens_per_s_roofline=self.decode_tokens_per_s_roofline,
                 provenance="predicted (analytic model x hardware-profile efficiencies)")
        return d


def efficiencies(device: HardwareProfile, dtype: str) -> tuple[float, float, str]:
    """(prefill compute efficiency, decode bandwidth efficiency, provenance) for a compute dtype."""
    eff = device.efficiency
    by_dtype = eff.by_dtype.get(dtype) if eff.by_dtype else None
    if by_dtype:
        return by_dtype[0], by_dtype[1], eff.provenance
    return eff.prefill_compute, eff.decode_bandwidth, eff.provenance


@lru_cache(maxsize=65536)
def work(engine: Engine, w: Workload, kept: int = 1) -> tuple[float, float, float, float, float]:
    """(prefill FLOP, prefill expert FLOP per expert row, prefill weight bytes, decode-step FLOP, bytes)."""
    spec, chunk = w.spec, min(w.ctx, engine.chunk_tokens(w.ctx))
    expert = (prefill_expert_flop(spec, w.ctx, w.batch) / expert_rows(spec, w.batch * chunk)
              if spec.text.enable_moe_block else 0.0)
    kv_cells = lambda layer, ctx: engine.kv_cells(spec.text, layer, ctx)  # noqa: E731
    return (prefill_flop(spec, w.ctx, w.batch, kept), expert, prefill_weight_bytes(spec, w.quant, w.file),
            decode_step_flop(spec, w.ctx, w.batch),
            decode_step_bytes(spec, w.ctx, w.batch, w.quant, w.kv_dtype, kv_cells, w.file))


def allreduce_seconds(hidden: int, layers: int, gpus: int, tokens: int, link_bytes_per_s: float,
                      steps: int = 1) -> float:
    """Two ring all-reduces of the hidden state per layer, for ``tokens`` tokens moved in ``steps`` steps:
    each all-reduce pays the link latency, then 2 (n - 1) / n of the tokens' hidden states at the
    link's one-direction bandwidth."""
    if gpus == 1:
        return 0.0
    volume_bytes = 2 * (gpus - 1) / gpus * tokens * hidden * ACTIVATION_BYTES
    return layers * 2 * (steps * LINK_LATENCY_S + volume_bytes / link_bytes_per_s)


def hop_seconds(hidden: int, gpus: int, tokens: int, link_bytes_per_s: float, steps: int = 1) -> float:
    """The hidden state of ``tokens`` tokens handed from GPU to GPU, n - 1 times per step (layer split)."""
    return (gpus - 1) * (steps * LINK_LATENCY_S + tokens * hidden * ACTIVATION_BYTES / link_bytes_per_s)


def predict(engine: Engine, w: Workload, device: HardwareProfile, gpus: int = 1, host_weight_bytes: int = 0,
            host: HardwareProfile | None = None, kept: int = 1) -> Throughput:
    """Prefill ``w.ctx`` prompt tokens for ``w.batch`` sequences, then one decode step at that length."""
    p_flop, expert_per_row, p_bytes, d_flop, d_bytes = work(engine, w, kept)
    dtype = compute_dtype(w.quant)
    peak, bw = device.flops(dtype), device.memory_bandwidth_bytes_per_s
    eff_p, eff_d, provenance = efficiencies(device, dtype)
    # small routed GEMMs run below the dense efficiency: weight their FLOPs by 1 / (m / (m + half_rows))
    p_work = p_flop + expert_per_row * device.efficiency.expert_gemm_half_rows
    prefill_s = max(p_work / (peak * eff_p), p_bytes / (bw * eff_d))
    prefill_roof = max(p_flop / peak, p_bytes / bw)
    d_bw, d_compute = d_bytes / (bw * eff_d), d_flop / (peak * eff_p)
    step_s, step_roof = max(d_bw, d_compute), max(d_bytes / bw, d_flop / peak)
    bound = "bandwidth" if d_bw >= d_compute else "compute"
    comm, layout = 0.0, "1 device"
    t = w.spec.text
    prefill_steps = -(-w.batch * w.ctx // max(1, engine.chunk_tokens(w.ctx)))  # forward passes over the prompt
    style = engine.caps.parallel
    if gpus > 1 and style is Parallel.TENSOR:
        link = device.interconnect.bandwidth_bytes_per_s
        comm = allreduce_seconds(t.hidden_size, t.num_layers, gpus, w.batch, link)
        prefill_comm = allreduce_seconds(t.hidden_size, t.num_layers, gpus, w.batch * w.ctx, link, prefill_steps)
        prefill_s, prefill_roof = prefill_s / gpus + prefill_comm, prefill_roof / gpus + prefill_comm
        step_s, step_roof = step_s / gpus + comm, step_roof / gpus + comm
        layout = f"tensor parallel over {gpus} GPUs ({device.interconnect.name})"
    elif gpus > 1 and style is Parallel.LAYER:
        link = device.interconnect.bandwidth_bytes_per_s if device.interconnect else host_link_bytes_per_s(device)
        comm = hop_seconds(t.hidden_size, gpus, w.batch, link)
        prefill_comm = hop_seconds(t.hidden_size, gpus, w.batch * w.ctx, link, prefill_steps)
        prefill_s, prefill_roof = prefill_s + prefill_comm, prefill_roof + prefill_comm
        step_s, step_roof = step_s + comm, step_roof + comm
        layout = f"layer split over {gpus} GPUs (they take turns)"
    if comm > step_s / 2:
        bound = "link"
    if host_weight_bytes and host is not None:
        total_weights = p_bytes
        share = min(1.0, host_weight_bytes / total_weights)
        host_bw = host.memory_bandwidth_bytes_per_s
        host_step = d_bytes * share / (host_bw * host.efficiency.decode_bandwidth)
        step_s = step_s * (1 - share) + host_step
        step_roof = step_roof * (1 - share) + d_bytes * share / host_bw
        micro_batches = -(-w.batch * w.ctx // max(1, engine.chunk_tokens(w.ctx)))
        upload = micro_batches * host_weight_bytes / host_link_bytes_per_s(device)
        prefill_s, prefill_roof = prefill_s + upload, prefill_roof + upload
        bound = "host" if host_step > step_s / 2 else bound
        layout += f", {host_weight_bytes / 2**30:.2f} GiB of weights in host memory"
    return Throughput(
        prefill_tokens=w.ctx, batch=w.batch, prefill_flop=p_flop, prefill_seconds=prefill_s,
        prefill_seconds_roofline=prefill_roof, decode_step_bytes=d_bytes, decode_step_flop=d_flop,
        decode_step_seconds=step_s, decode_step_seconds_roofline=step_roof, decode_bound=bound,
        compute_dtype=dtype, efficiency_provenance=provenance, comm_seconds_per_step=comm, layout=layout,
    )
