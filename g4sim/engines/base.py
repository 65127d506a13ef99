"""The engine seam: what a serving runtime loads, where it runs, what it allocates, how it is launched.

An engine is one module holding one frozen dataclass (a subclass of ``Engine``) whose fields are
that runtime's settings.  The class says, as class attributes:

* ``caps`` — the weight formats and KV dtypes it loads, the device kinds and vendors it runs on,
  how it spreads a model over several GPUs (``Parallel``) and whether it offloads to the host;
* ``options`` — the settings a user changes, each named as the engine's own CLI names it, with
  its default and the source of that default (``Option``);

and overrides what differs from the base rules:

* ``compatibility`` — a reason this combination cannot run (None when it can);
* ``budget_bytes`` — of a device's usable memory, what the engine lets a deployment use;
* ``kv_cells`` / ``kv_terms`` / ``activation_terms`` / ``overhead_terms`` / ``placement`` — its
  allocation rules, as ``MemoryTerm``s of the shared component vocabulary;
* ``launch_command`` and ``parse_command`` — the command that realises a plan, and the reverse;
* what its speed model reads: ``backend_on`` (the kernel family it runs on a device, which speed terms are
  fitted per), ``compute_dtype_on`` / ``peak_flops_on`` (the arithmetic and the cores that bound its matmuls),
  ``static_attention_cells`` (a static graph's attention span), ``host_streamed_weight_bytes``, and
  ``published_settings`` (what a published run states about it);
* ``context_limit`` / ``batch_limit`` — the longest context and most sequences it runs (searches stop there).

A workload may carry the exact weight file a user downloaded (``Workload.file``, a
``g4sim.weightfiles.WeightFile``): then ``weight_terms`` prices each of the file's tensors at its
stored bytes instead of pricing the spec in a format, ``file_kinds`` says which files an engine
loads (GGUF, safetensors checkpoints), and the launch command names the file.

Nothing outside an engine's module branches on an engine's name.  No torch import.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, fields, replace
from enum import Enum
from functools import lru_cache
from typing import Any, ClassVar

from g4sim.analytic.components import Category, Component, Location
from g4sim.analytic.memory import MemoryBreakdown, MemoryTerm, kv_layer_bytes, logits_bytes, weight_bytes_by_component
from g4sim.analytic.quant import get_kv_dtype, get_quant
from g4sim.analytic.work import compute_dtype
from g4sim.spec import ModelSpec, TextSpec
from g4sim.units import MiB
from g4sim.weightfiles import TOWERS, FileTensor, WeightFile

HF_REPOS = {  # repository names as referenced by transformers' convert_gemma4_weights.py (…-it variants)
    "e2b": "google/gemma-4-E2B-it", "e4b": "google/gemma-4-E4B-it",
    "26b-a4b": "google/gemma-4-26B-A4B-it", "31b": "google/gemma-4-31B-it",
}
FLOAT_FORMATS = frozenset({"fp32", "bf16", "fp16"})
_TOWERS = (Component.VISION_TOWER, Component.AUDIO_TOWER)
FILE_KINDS = {"gguf": "GGUF files", "safetensors": "safetensors checkpoints"}


class EngineError(ValueError):
    """A setting or combination the engine does not accept (one line, names what it does accept)."""


class Parallel(str, Enum):
    """How an engine spreads one model over several GPUs."""

    TENSOR = "tensor"  # every layer split across GPUs (Megatron style); two all-reduces per layer
    LAYER = "layer"  # consecutive layers on consecutive GPUs; GPUs take turns (pipeline at batch 1)


_ARM_VENDORS = frozenset({"raspberrypi", "qualcomm", "arm", "mediatek", "samsung"})


def backend_class(kind: str, vendor: str) -> str:
    """The family of kernels an engine runs on a device, as speed terms are fitted per class:
    cuda (NVIDIA GPUs and Jetson), rocm (AMD GPUs), metal (Apple), cpu-x86, cpu-arm."""
    if vendor == "apple":
        return "metal"
    if kind in ("gpu", "soc") and vendor == "nvidia":
        return "cuda"
    if kind == "gpu" and vendor == "amd":
        return "rocm"
    return "cpu-arm" if vendor in _ARM_VENDORS else "cpu-x86"


@dataclass(frozen=True)
class Caps:
    weight_formats: frozenset[str]
    kv_dtypes: frozenset[str]
    device_kinds: frozenset[str]  # "gpu", "cpu", "soc"
    vendors: frozenset[str] | None = None  # None: any vendor of those kinds
    parallel: Parallel | None = None
    host_offload: bool = False


@dataclass(frozen=True)
class Option:
    """A setting users change: ``field`` of the engine dataclass, spelled ``flags`` by the engine's CLI."""

    field: str
    flags: tuple[str, ...]  # the engine's own spellings; the first is what g4sim prints
    help: str
    source: str  # where the default comes from


@dataclass(frozen=True)
class Workload:
    """What is served, independent of the engine: model, context per sequence, sequences, formats.

    ``file``: the exact weight file served (its ``spec`` and ``format`` are this workload's).  A
    workload whose ``quant`` is another format (a layout that tries another format) is another file:
    it carries none and its weights are priced from the spec.
    """

    spec: ModelSpec
    ctx: int
    batch: int = 1
    quant: str = "bf16"
    kv_dtype: str = "bf16"
    vision: bool = False
    audio: bool = False
    file: WeightFile | None = None

    def __post_init__(self) -> None:
        f = self.file
        if f is None:
            return
        if f.format != self.quant:
            object.__setattr__(self, "file", None)
        elif f.spec.text is not self.spec.text and f.spec.text != self.spec.text:
            raise ValueError(f"{f.path} holds {f.spec.name}, not the workload's {self.spec.name}")


@dataclass(frozen=True)
class Parsed:
    """A user's engine command, read back: the engine with its settings and the workload fields it fixes."""

    engine: Engine
    model: str | None  # a variant name (e2b, e4b, 26b-a4b, 31b) when the file / repo name says it
    quant: str | None
    kv_dtype: str | None
    ctx: int | None
    batch: int | None
    gpus: int | None  # None: the command does not fix it (e.g. device_map='auto' takes every visible GPU)
    vision: bool | None = None
    file: WeightFile | None = None  # the weight file the command names, when it exists and g4sim read it


def activation_bytes_per_element(quant: str) -> int:
    """Activations run in fp32 for fp32 weights, else in 16-bit."""
    return 4 if get_quant(quant).name == "fp32" else 2


def model_from_name(text: str) -> str | None:
    """The Gemma 4 variant a checkpoint or file name refers to (gemma-4-26B-A4B-it-Q4_K_M.gguf -> 26b-a4b)."""
    low = text.lower().replace("_", "-")
    for key, needle in (("26b-a4b", "26b-a4b"), ("31b", "31b"), ("e2b", "e2b"), ("e4b", "e4b")):
        if needle in low:
            return key
    return None


def flag_values(argv: list[str], known: dict[str, str], switches: frozenset[str] = frozenset(),
                optional_value: frozenset[str] = frozenset(), tool: str = "") -> dict[str, Any]:
    """``{field: value}`` from an argv; ``known`` maps each flag spelling to a field ("-": accepted, ignored).

    ``--flag=value`` and ``--flag value`` both work; a flag in ``switches`` takes no value; one in
    ``optional_value`` takes the next token only if it is not another flag.  An unknown flag raises
    EngineError naming it and what g4sim understands (``tool`` names the command in the message).
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("-"):
            raise EngineError(f"unexpected argument {tok!r}")
        flag, eq, value = tok.partition("=")
        if flag not in known:
            where = f" for {tool}" if tool else ""
            raise EngineError(f"unsupported flag {flag!r}{where}; g4sim understands: "
                              f"{', '.join(sorted(k for k in known if known[k] != '-'))}")
        bare = not eq and (flag in switches or flag in optional_value
                           and (i + 1 >= len(argv) or argv[i + 1].startswith("-")))
        if bare:
            value = True
        elif not eq:
            if i + 1 >= len(argv):
                raise EngineError(f"flag {flag!r} needs a value")
            value = argv[i + 1]
            i += 1
        if known[flag] != "-":
            out[known[flag]] = value
        i += 1
    return out


def to_int(flag: str, value: Any) -> int:
    try:
        n = int(str(value))
    except ValueError:
        raise EngineError(f"{flag} {value!r} must be an integer") from None
    return n


def to_float(flag: str, value: Any) -> float:
    try:
        return float(str(value))
    except ValueError:
        raise EngineError(f"{flag} {value!r} must be a number") from None


@dataclass(frozen=True)
class Engine:
    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""
    caps: ClassVar[Caps] = Caps(frozenset(), frozenset(), frozenset())
    options: ClassVar[tuple[Option, ...]] = ()
    command_names: ClassVar[tuple[str, ...]] = ()  # executables whose command lines this engine parses
    file_kinds: ClassVar[frozenset[str]] = frozenset({"safetensors"})  # weight files it loads (FILE_KINDS)
    # Whether prefill computes KV-shared layers for every prompt token (they write no cache, so an engine
    # may run them for the kept positions only: transformers' _maybe_slice_kv_shared_inputs does).
    prefill_runs_kv_shared_layers: ClassVar[bool] = False
    # Whether this engine's measured rows are what `g4sim calibrate` fits a profile's efficiencies on (and the
    # held-out error those efficiencies carry, efficiency.bands, is this engine's band there)
    calibrates_profiles: ClassVar[bool] = False
    batch_limit: ClassVar[int] = 1 << 16  # the most sequences it serves at once (searches stop there)

    ple_location: Location = Location.ACCELERATOR
    logits_kept: int = 1  # positions whose logits are computed in prefill
    cuda_context_bytes: int = 512 * MiB  # CUDA context + cuBLAS workspace on first use (typical, torch 2.x)
    allocator_reserve_fraction: float = 0.05  # caching-allocator slack over KV + activations
    host_runtime_bytes: int = 0  # resident runtime on CPU-only devices (interpreter, libraries)

    # ---- settings ---------------------------------------------------------------------
    def with_settings(self, settings: dict[str, Any]) -> Engine:
        """A copy with ``settings`` (field -> value) applied; an unknown field names the valid ones."""
        valid = {o.field for o in self.options}
        bad = sorted(set(settings) - valid)
        if bad:
            flags = {o.field: o.flags[0] for o in type(self).options}
            raise EngineError(f"{self.name} has no setting {bad[0]!r}"
                              + (f"; its settings: {', '.join(flags[f] for f in sorted(valid))}" if valid else ""))
        return replace(self, **settings)

    def bind(self, w: Workload) -> Engine:
        """This engine with the settings a workload fixes (e.g. llama.cpp's parallel slots = its batch)."""
        return self

    def for_device(self, device) -> Engine:
        """This engine with the defaults a device decides, where the user left them unset (e.g. llama.cpp's CPU
        feature set, from the hardware profile's ``cpu_features``)."""
        return self

    def backend_on(self, device) -> str:
        """The kernel family this engine runs on ``device`` (``backend_class``), which its speed terms are fitted
        per; an engine whose setting picks its backend (LiteRT-LM's --backend) overrides it."""
        return backend_class(device.kind, device.vendor)

    @classmethod
    def published_settings(cls, row: dict[str, str]) -> dict[str, Any]:
        """The settings a published run states (a row of reports/published/runs.csv: micro-batch, flash
        attention, backend), as this engine's fields; none by default."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The user-facing settings and their values (JSON-ready)."""
        return {o.field: getattr(self, o.field) for o in self.options}

    # ---- what it can run -------------------------------------------------------------
    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        """Why ``w`` cannot run in this engine on ``gpus`` x ``device``; None when it can."""
        c = self.caps
        if device.kind not in c.device_kinds or (c.vendors is not None and device.vendor not in c.vendors):
            where = ", ".join(sorted(c.device_kinds)) + (f" ({', '.join(sorted(c.vendors))})" if c.vendors else "")
            return f"{self.name} does not run on {device.name} ({device.kind}, {device.vendor}); it runs on: {where}"
        if w.file is not None:
            if w.file.kind not in self.file_kinds:
                loads = ", ".join(FILE_KINDS[k] for k in sorted(self.file_kinds)) or "no weight file g4sim reads"
                return f"{self.name} does not load {FILE_KINDS[w.file.kind]} ({w.file.name}); it loads: {loads}"
        fmt = get_quant(w.quant).name
        if not self.loads_format(fmt, w):
            return f"{self.name} does not load {fmt} weights; it loads: {', '.join(sorted(c.weight_formats))}"
        kv = get_kv_dtype(w.kv_dtype).name
        if kv not in c.kv_dtypes:
            return f"{self.name} has no {kv} KV cache; its KV dtypes: {', '.join(sorted(c.kv_dtypes))}"
        if gpus > 1:
            if device.kind != "gpu":
                return f"{device.name} is not a GPU that several of can share one model ({device.kind})"
            if c.parallel is None:
                return f"{self.name} runs a model on one device (g4sim models no multi-GPU layout for it)"
            if c.parallel is Parallel.TENSOR and device.interconnect is None:
                return f"{device.name} has no interconnect for tensor parallelism"
        return None

    def context_limit(self, spec: ModelSpec) -> int | None:
        """The longest context per sequence this engine runs ``spec`` at, where the engine itself bounds it (searches
        stop there); None: only the model's maximum, which ``--allow-beyond-max`` lifts."""
        return None

    def loads_format(self, fmt: str, w: Workload) -> bool:
        """Whether this engine loads weights of format ``fmt`` (``w`` says whether they come as a file)."""
        return fmt in self.caps.weight_formats

    def budget_bytes(self, usable_device_bytes: int, device_memory_bytes: int) -> int:
        """Of the device's usable memory (after the OS / display / driver), what a deployment may use."""
        return usable_device_bytes

    # ---- weights -----------------------------------------------------------------------
    def placement(self, component: Component) -> Location:
        return self.ple_location if component is Component.PLE_TABLE else Location.ACCELERATOR

    def host_streamed_weight_bytes(self, memory: MemoryBreakdown) -> int:
        """Of the weights this engine keeps in host memory beside a GPU, the bytes a decode step reads there (the
        speed model streams them at the host's bandwidth): all but the input tables, read a row per token."""
        return sum(t.bytes for t in memory.terms if t.location is Location.HOST and t.category is Category.WEIGHTS
                   and t.component not in (Component.TOKEN_EMBEDDING, Component.PLE_TABLE))

    def compute_dtype_on(self, quant: str, device) -> str:
        """The arithmetic whose peak bounds this engine's matmuls for ``quant`` weights on ``device`` (a key of the
        profile's ``peak_flops``): the activations' float type unless the engine's kernels say otherwise."""
        return compute_dtype(quant)

    def static_attention_cells(self, t: TextSpec) -> int:
        """Cells every query of a prompt attends over, masked, when the engine's graphs are static (0: causal)."""
        return 0

    def runs_on_cpu(self, device) -> bool:
        """Whether this engine's matmuls run on the device's CPU cores (its backend class there is a CPU's)."""
        return self.backend_on(device).startswith("cpu")

    def peak_flops_on(self, quant: str, device) -> float:
        """The dense peak that bounds this engine's matmuls for ``quant`` weights on ``device``: the CPU cores' where
        it computes on them and the profile gives them (an SoC's ``cpu_peak_flops``), else the profile's peak."""
        dtype = self.compute_dtype_on(quant, device)
        cpu = device.cpu_flops(dtype) if self.runs_on_cpu(device) else None
        return cpu if cpu is not None else device.flops(dtype)

    def head_quant(self, t: TextSpec, quant: str) -> str | None:
        """The format this engine stores the tied embedding / LM head in as a Linear weight, where it is not
        what ``quant`` prices (None: as priced).  The speed model reads that many bytes per step."""
        return None

    def weight_terms(self, spec: ModelSpec, quant: str, *, vision: bool, audio: bool,
                     file: WeightFile | None = None) -> list[MemoryTerm]:
        """Weight bytes per component and where they live; with ``file``, the file's tensors as stored."""
        fmt = get_quant(quant)
        if file is not None:
            counts: dict[str, int] = {}
            for x in file_tensors(file, vision, audio):
                counts[x.component] = counts.get(x.component, 0) + 1
            terms = [MemoryTerm(Component(c), n, self.placement(Component(c)),
                                f"{file.label}: {counts[c]} tensors of {file.name}, bytes as stored")
                     for c, n in file.by_component(file_tensors(file, vision, audio)).items()]
            return terms + [  # towers the file does not hold (a GGUF's ship as a separate mmproj file)
                MemoryTerm(Component(c), n, self.placement(Component(c)), f"{fmt.name}: priced from the spec "
                           f"({file.name} does not hold it)")
                for c, n in weight_bytes_by_component(spec, quant, vision=vision, audio=audio).items()
                if c in missing_towers(file, vision, audio)]
        return [
            MemoryTerm(Component(name), n, self.placement(Component(name)),
                       f"{fmt.name}: sum over tensors of stored bytes"
                       + (" (towers kept 16-bit)" if Component(name) in _TOWERS else ""))
            for name, n in weight_bytes_by_component(spec, quant, vision=vision, audio=audio).items()
        ]

    # ---- KV cache ----------------------------------------------------------------------
    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        """Positions one sequence keeps for a cache-owning layer."""
        return min(ctx, t.sliding_window) if t.is_sliding(layer) else ctx

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        out = []
        for component, sliding in ((Component.KV_SLIDING, True), (Component.KV_FULL, False)):
            layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
            total = sum(kv_layer_bytes(t, i, self.kv_cells(t, i, ctx), kv_dtype, batch) for i in layers)
            cells = self.kv_cells(t, layers[0], ctx) if layers else 0
            out.append(MemoryTerm(component, total, Location.ACCELERATOR,
                                  f"{len(layers)} layers x {batch} seq x {cells} cells x 2 (K,V) x kv_heads x head_dim "
                                  f"x {kv_dtype}"))
        return out

    # ---- activations -------------------------------------------------------------------
    def chunk_tokens(self, ctx: int) -> int:
        """Prompt tokens processed in one forward pass."""
        return ctx

    def attention_workspace(self, t: TextSpec, layer: int, chunk: int, kv_len: int, batch: int, a: int) -> int:
        """Transient bytes of one attention call beyond Q/K/V (engine-specific)."""
        return 0

    def moe_workspace(self, t: TextSpec, tokens: int, a: int) -> int:
        """Transient bytes of the routed experts for ``tokens`` tokens: fp32 router scores, and per routed
        (token, expert) pair the gate/up/act intermediates and the expert's output."""
        routed = tokens * t.top_k_experts
        return tokens * t.num_experts * 4 + routed * (3 * t.moe_intermediate_size + t.hidden_size) * a

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        a = activation_bytes_per_element(quant)
        c = min(ctx, self.chunk_tokens(ctx))
        h = t.hidden_size
        hidden = 3 * batch * c * h * a  # residual, normed input, sub-layer output
        attn_peak, attn_layer = 0, 0
        for i in range(t.num_layers):
            kv_len = min(ctx, t.sliding_window - 1 + c) if t.is_sliding(i) else ctx
            hd = t.head_dim_of(i)
            qkv = batch * c * (2 * t.num_heads + 2 * t.kv_heads(i)) * hd * a  # q, rotated q, k, v of the chunk
            ws = qkv + self.attention_workspace(t, i, c, kv_len, batch, a)
            if ws > attn_peak:
                attn_peak, attn_layer = ws, i
        inter = max(t.mlp_intermediate(i) for i in range(t.num_layers))
        mlp_peak = 3 * batch * c * inter * a  # gate, up, act(gate)*up
        if t.enable_moe_block:
            mlp_peak += self.moe_workspace(t, batch * c, a)
        logits = logits_bytes(t, min(self.logits_kept, c) if self.logits_kept else c, batch)
        work = {Component.ATTENTION_WORKSPACE: attn_peak, Component.MLP_WORKSPACE: mlp_peak, Component.LOGITS: logits}
        which = max(work, key=work.get)
        terms = [
            MemoryTerm(Component.HIDDEN_STATES, hidden, Location.ACCELERATOR, f"3 x batch x chunk {c} x hidden {h} x {a} B"),
            MemoryTerm(which, work[which], Location.ACCELERATOR,
                       f"max of attention (layer {attn_layer}) {attn_peak} B, MLP {mlp_peak} B, "
                       f"logits {logits} B (fp32, {self.logits_kept or c} kept positions)"),
        ]
        if t.has_ple:
            ple = 2 * batch * c * t.num_layers * t.hidden_size_per_layer_input * a
            terms.append(MemoryTerm(Component.PLE_INPUTS, ple, Location.ACCELERATOR,
                                    "2 x batch x chunk x layers x ple_dim (lookup + projection)"))
        return terms

    # ---- overhead ----------------------------------------------------------------------
    def overhead_terms(self, terms: list[MemoryTerm], *, device_kind: str) -> list[MemoryTerm]:
        dynamic = sum(t.bytes for t in terms if t.category in (Category.KV_CACHE, Category.ACTIVATIONS)
                      and t.location is Location.ACCELERATOR)
        reserve = int(dynamic * self.allocator_reserve_fraction)
        out = [MemoryTerm(Component.ALLOCATOR_RESERVE, reserve, Location.ACCELERATOR,
                          f"{self.allocator_reserve_fraction:.0%} of KV + activations (caching allocator slack)")]
        if device_kind == "gpu":
            out.append(MemoryTerm(Component.CUDA_CONTEXT, self.cuda_context_bytes, Location.ACCELERATOR,
                                  "CUDA context + library workspaces (engine setting)"))
        elif self.host_runtime_bytes:
            out.append(MemoryTerm(Component.RUNTIME, self.host_runtime_bytes, Location.ACCELERATOR,
                                  "resident runtime (interpreter, libraries)"))
        return out

    # ---- the whole breakdown ---------------------------------------------------------------
    def memory(self, w: Workload, device_kind: str = "gpu") -> MemoryBreakdown:
        """Peak memory of serving ``w`` on one device (prefill peak, cache full)."""
        return _memory(self, w, device_kind)

    def memory_per_gpu(self, w: Workload, gpus: int, device_kind: str = "gpu") -> MemoryBreakdown:
        """What one of ``gpus`` GPUs holds under this engine's multi-GPU layout."""
        one = self.memory(w, device_kind)
        if gpus == 1:
            return one
        style = self.caps.parallel
        terms = []
        for term in one.terms:
            n = term.bytes
            if term.location is Location.ACCELERATOR:
                if term.category is Category.WEIGHTS and not (
                        style is Parallel.TENSOR and term.component in (Component.NORMS, Component.ROUTER)):
                    n = -(-n // gpus)  # norms and router are replicated under tensor parallelism
                elif term.category is Category.KV_CACHE:
                    n = _kv_share(w.spec.text, term.component, gpus, n, style)
            terms.append(replace(term, bytes=n, source=term.source + f"; {style.value} parallel over {gpus} GPUs"))
        return MemoryBreakdown(tuple(terms))

    def tensor_parallel_sizes(self, t: TextSpec, limit: int = 16) -> tuple[int, ...]:
        """GPU counts this engine can split ``t`` over (heads split evenly or KV heads replicated whole)."""
        if self.caps.parallel is None:
            return (1,)
        if self.caps.parallel is Parallel.LAYER:
            return tuple(n for n in range(1, limit + 1) if n <= t.num_layers)
        return tuple(n for n in (1, 2, 4, 8, 16) if n <= limit and t.num_heads % n == 0
                     and all(t.kv_heads(i) % n == 0 or n % t.kv_heads(i) == 0 for i in t.cache_layers))

    # ---- what the engine itself shows its user ---------------------------------------------
    def user_view(self, w: Workload, device, display_attached: bool = True) -> tuple[str, ...]:
        """Lines the engine's own tools would print about this deployment (e.g. ``ollama ps``); none by default."""
        return ()

    # ---- commands ------------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        """The shell command that realises exactly this plan (every setting it assumed)."""
        raise NotImplementedError

    @classmethod
    def recognises(cls, text: str) -> bool:
        """Whether ``text`` is a command line of this engine."""
        argv = split_command(text) if text.strip() else []
        return bool(argv) and argv[0].rsplit("/", 1)[-1] in cls.command_names

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        """Read a command line this engine's users run."""
        raise NotImplementedError


def _kv_share(t: TextSpec, component: Component, gpus: int, n: int, style: Parallel) -> int:
    if style is Parallel.LAYER:
        return -(-n // gpus)
    layers = [i for i in t.cache_layers if t.is_sliding(i) == (component is Component.KV_SLIDING)]
    if not layers:
        return n
    kvh = t.kv_heads(layers[0])  # heads split; replicated whole when there are more GPUs than heads
    return n * math.ceil(kvh / gpus) // kvh


def file_tensors(file: WeightFile, vision: bool, audio: bool) -> tuple[FileTensor, ...]:
    """The file's text tensors plus those of the towers asked for."""
    skip = {c for c, asked in zip(TOWERS, (vision, audio)) if not asked}
    return tuple(x for x in file.tensors if x.component not in skip)


def missing_towers(file: WeightFile, vision: bool, audio: bool) -> tuple[str, ...]:
    """Towers asked for that the file does not hold (priced from the spec instead)."""
    return tuple(c for c, asked in zip(TOWERS, (vision, audio)) if asked and not file.has(c))


@lru_cache(maxsize=8192)  # searches and sweeps re-price the same deployment many times
def _memory(engine: Engine, w: Workload, device_kind: str) -> MemoryBreakdown:
    if w.ctx <= 0 or w.batch <= 0:
        raise ValueError(f"ctx and batch must be positive (got ctx={w.ctx}, batch={w.batch})")
    get_quant(w.quant), get_kv_dtype(w.kv_dtype)  # validate names early
    t = w.spec.text
    terms: list[MemoryTerm] = []
    if w.file is None:
        terms += engine.weight_terms(w.spec, w.quant, vision=w.vision, audio=w.audio)
    else:
        terms += engine.weight_terms(w.spec, w.quant, vision=w.vision, audio=w.audio, file=w.file)
    terms += engine.kv_terms(t, ctx=w.ctx, batch=w.batch, kv_dtype=w.kv_dtype)
    terms += engine.activation_terms(t, ctx=w.ctx, batch=w.batch, quant=w.quant)
    terms += engine.overhead_terms(terms, device_kind=device_kind)
    return MemoryBreakdown(tuple(terms))


def join_command(parts: list[str]) -> str:
    """One command per line-continued argument group, as a user pastes it."""
    return " \\\n  ".join(parts)


def split_command(text: str) -> list[str]:
    """shlex-split a pasted command (line continuations allowed)."""
    try:
        return shlex.split(text.replace("\\\n", " "))
    except ValueError as exc:
        raise EngineError(f"cannot read the command {text!r}: {exc}") from None


def engine_fields(cls: type[Engine]) -> set[str]:
    return {f.name for f in fields(cls)}
