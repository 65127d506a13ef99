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

Where an engine has fitted speed terms for the device's backend class (``speed_classes.yaml``,
written by ``g4sim calibrate --engine`` / ``--published``), one device's phases are instead
(``EngineSpeed``): prefill = (FLOPs the engine computes / e_p[format] + expert FLOPs per row x
expert_rows_at_peak) / peak + forward passes x layers x prefill_layer_seconds; a decode step =
max(bytes / (bandwidth x e_d[format]), FLOPs / (peak x e_p)) + layers x decode_layer_seconds -- the
fixed per-layer cost is what kernel launches and thread barriers add whatever the bytes.  Every
prediction then carries the held-out error band of its class; without terms it says "uncalibrated".
No torch import.
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from g4sim.analytic.work import (
    compute_dtype, decode_step_bytes, decode_step_flop, expert_rows, prefill_expert_flop, prefill_flop,
    prefill_weight_bytes,
)
from g4sim.analytic.quant import get_quant
from g4sim.engines.base import Engine, Parallel, Workload
from g4sim.hardware import HardwareProfile, read_yaml

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
    speed_class: str = ""  # engine/backend class of this prediction
    calibrated: bool = False  # whether fitted terms of that class made it (else the profile's efficiencies)
    bands: dict = field(default_factory=dict)  # phase -> the class's held-out |error|: median, p90, n

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
                 provenance=(f"predicted (analytic work x terms fitted for {self.speed_class})" if self.calibrated
                             else f"predicted (analytic model x hardware-profile efficiencies; uncalibrated: no fitted "
                                  f"terms for {self.speed_class})"),
                 band={phase: self.band_text(phase) for phase in ("prefill", "decode")})
        return d

    def band_text(self, phase: str) -> str:
        """'held-out error for llamacpp/cuda: median 9%, p90 21%, n=14', or 'uncalibrated: ...'."""
        b = self.bands.get(phase)
        if not self.calibrated:
            return f"no error band: no fitted speed terms for {self.speed_class}"
        if not b or not b["n"]:
            return f"fitted for {self.speed_class}, no held-out rows to give an error"
        return (f"held-out error for {self.speed_class}: median {b['median']:.0%}, p90 {b['p90']:.0%}, "
                f"n={b['n']}")


SPEED_CLASSES = Path(__file__).with_name("speed_classes.yaml")


@dataclass(frozen=True)
class EngineSpeed:
    """Speed terms of one engine on one backend class, fitted by ``g4sim calibrate`` (units in the names)."""

    key: str  # "<engine>/<backend class>"
    prefill_compute: tuple[tuple[str, float], ...]  # format family -> achieved fraction of the compute peak
    decode_bandwidth: tuple[tuple[str, float], ...]  # format family -> achieved fraction of the bandwidth
    prefill_layer_seconds: float  # fixed cost per layer per forward pass over the prompt
    decode_layer_seconds: float  # fixed cost per layer per decode step
    expert_rows_at_peak: float  # extra routed-expert work: FLOP per expert row x this, at peak
    provenance: str
    bands: tuple[tuple[str, dict], ...] = ()  # phase -> {"median", "p90", "n"} of held-out |error|

    def fraction(self, which: str, family: str) -> float | None:
        """A format family's fitted fraction; else the pooled families' ("*", those with few rows); else the
        geometric mean of the fitted ones; None when the phase had no rows to fit."""
        table = dict(self.prefill_compute if which == "prefill" else self.decode_bandwidth)
        if family in table or "*" in table:
            return table.get(family, table.get("*"))
        return math.exp(sum(math.log(v) for v in table.values()) / len(table)) if table else None


def format_family(quant: str) -> str:
    """Formats whose kernels run alike: a k-quant's mixes share one (q4_k_m, q4_k_s -> q4_k); 16-bit floats one."""
    name = get_quant(quant).name
    if name in ("bf16", "fp16"):
        return "16bit"
    if name.startswith("q") and name[-2:] in ("_m", "_s", "_l") and "_k" in name:
        return name[:-2]
    return name


def engine_speed(key: str, v: dict) -> EngineSpeed:
    """One class's entry of speed_classes.yaml as terms."""
    return EngineSpeed(key, tuple(v["prefill_compute"].items()), tuple(v["decode_bandwidth"].items()),
                       v["prefill_layer_seconds"], v["decode_layer_seconds"], v["expert_rows_at_peak"],
                       v["provenance"], tuple((k, b) for k, b in (v.get("bands") or {}).items()))


@lru_cache(maxsize=1)
def speed_classes(path: Path = SPEED_CLASSES) -> dict[str, EngineSpeed]:
    """The fitted classes g4sim ships (empty where none was fitted)."""
    if not path.exists():
        return {}
    return {key: engine_speed(key, v) for key, v in (read_yaml(path, ValueError) or {}).items()}


def speed_class_of(engine: Engine, device: HardwareProfile) -> str:
    return f"{engine.name}/{engine.backend_on(device)}"


def efficiencies(device: HardwareProfile, dtype: str, quant: str = "") -> tuple[float, float, str]:
    """(prefill compute efficiency, decode bandwidth efficiency, provenance) for a weight-only format where the
    profile has that format's own (``efficiency.by_format``), else for its compute dtype."""
    eff = device.efficiency
    by_format = eff.by_format.get(quant) if eff.by_format else None
    if by_format:
        return by_format[0], by_format[1], eff.provenance
    by_dtype = eff.by_dtype.get(dtype) if eff.by_dtype else None
    if by_dtype:
        return by_dtype[0], by_dtype[1], eff.provenance
    return eff.prefill_compute, eff.decode_bandwidth, eff.provenance


@lru_cache(maxsize=65536)
def work(engine: Engine, w: Workload, kept: int = 1) -> tuple[float, float, float, float, float]:
    """(prefill FLOP, prefill expert FLOP per expert row, prefill weight bytes, decode-step FLOP, bytes)."""
    spec, chunk = w.spec, min(w.ctx, engine.chunk_tokens(w.ctx))
    shared_all = engine.prefill_runs_kv_shared_layers
    expert = (prefill_expert_flop(spec, w.ctx, w.batch, shared_all) / expert_rows(spec, w.batch * chunk)
              if spec.text.enable_moe_block else 0.0)
    kv_cells = lambda layer, ctx: engine.kv_cells(spec.text, layer, ctx)  # noqa: E731
    head = engine.head_quant(spec.text, w.quant)
    return (prefill_flop(spec, w.ctx, w.batch, kept, shared_all, engine.static_attention_cells(spec.text)), expert,
            prefill_weight_bytes(spec, w.quant, w.file, head), decode_step_flop(spec, w.ctx, w.batch),
            decode_step_bytes(spec, w.ctx, w.batch, w.quant, w.kv_dtype, kv_cells, w.file, head))


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
            host: HardwareProfile | None = None, kept: int = 1, terms: EngineSpeed | None = None) -> Throughput:
    """Prefill ``w.ctx`` prompt tokens for ``w.batch`` sequences, then one decode step at that length.
    ``terms``: speed terms to use instead of the shipped ones for this engine and backend (calibration)."""
    p_flop, expert_per_row, p_bytes, d_flop, d_bytes = work(engine, w, kept)
    dtype = compute_dtype(w.quant)
    peak, bw = engine.peak_flops_on(w.quant, device), device.memory_bandwidth_bytes_per_s
    t = w.spec.text
    prefill_steps = -(-w.batch * w.ctx // max(1, engine.chunk_tokens(w.ctx)))  # forward passes over the prompt
    terms = terms or speed_classes().get(speed_class_of(engine, device))
    if terms is not None:
        family, (profile_p, profile_d, _) = format_family(w.quant), efficiencies(device, dtype, w.quant)
        eff_p = terms.fraction("prefill", family) or profile_p  # a phase no row fitted keeps the profile's
        eff_d = terms.fraction("decode", family) or profile_d
        prefill_s = (max((p_flop / eff_p + expert_per_row * terms.expert_rows_at_peak) / peak, p_bytes / (bw * eff_d))
                     + prefill_seconds_fixed(prefill_steps, t.num_layers, terms.prefill_layer_seconds))
        fixed_step = t.num_layers * terms.decode_layer_seconds
        provenance, key, bands = terms.provenance, terms.key, dict(terms.bands)
    else:
        eff_p, eff_d, provenance = efficiencies(device, dtype, w.quant)
        # fitted on this engine's own rows (g4sim calibrate): the band those rows held out, else none
        bands = dict(device.efficiency.bands) if engine.calibrates_profiles else {}
        key = f"{engine.name} on {device.name} (profile)" if bands else speed_class_of(engine, device)
        # small routed GEMMs run below the dense efficiency: weight their FLOPs by 1 / (m / (m + half_rows))
        p_work = p_flop + expert_per_row * device.efficiency.expert_gemm_half_rows
        prefill_s = max(p_work / (peak * eff_p), p_bytes / (bw * eff_d))
        fixed_step = 0.0
    prefill_roof = max(p_flop / peak, p_bytes / bw)
    d_bw, d_compute = d_bytes / (bw * eff_d), d_flop / (peak * eff_p)
    step_s, step_roof = max(d_bw, d_compute) + fixed_step, max(d_bytes / bw, d_flop / peak)
    bound = "bandwidth" if d_bw >= d_compute else "compute"
    comm, layout = 0.0, "1 device"
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
        upload = prefill_steps * host_weight_bytes / host_link_bytes_per_s(device)  # once per micro-batch
        prefill_s, prefill_roof = prefill_s + upload, prefill_roof + upload
        bound = "host" if host_step > step_s / 2 else bound
        layout += f", {host_weight_bytes / 2**30:.2f} GiB of weights in host memory"
    return Throughput(
        prefill_tokens=w.ctx, batch=w.batch, prefill_flop=p_flop, prefill_seconds=prefill_s,
        prefill_seconds_roofline=prefill_roof, decode_step_bytes=d_bytes, decode_step_flop=d_flop,
        decode_step_seconds=step_s, decode_step_seconds_roofline=step_roof, decode_bound=bound,
        compute_dtype=dtype, efficiency_provenance=provenance, comm_seconds_per_step=comm, layout=layout,
        speed_class=key, calibrated=terms is not None or bool(bands), bands=bands,
    )


def prefill_seconds_fixed(passes: int, layers: int, layer_seconds: float) -> float:
    """What every forward pass over the prompt costs per layer whatever its work (launches, barriers)."""
    return passes * layers * layer_seconds
