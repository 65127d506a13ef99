"""llama.cpp (``llama-server``, and Ollama / LM Studio built on it): GGUF files, padded context, SWA cache.

Sources (ggml-org/llama.cpp):
* ``src/llama-context.cpp`` — the context is padded to a multiple of 256 cells; the C API default
  is ``swa_full = true`` (``llama_context_default_params``); llama-server's default is off.
* ``src/llama-kv-cache-iswa.cpp`` — the SWA cache holds
  ``GGML_PAD(min(n_ctx, n_swa * (unified ? n_seq_max : 1) + n_ubatch), 256)`` cells unless
  ``swa_full``, then ``n_ctx``; full layers hold ``n_ctx`` (shared by all sequences when unified).
* ``src/llama-kv-cache.cpp`` — K and V types are set separately (-ctk / -ctv); without flash
  attention V is stored transposed and every layer's V row takes the widest V of any layer (and a
  quantized V cache is refused: ``llama_init_from_model``);
  KV-shared layers (Gemma 3n / Gemma 4 E-models) get no cache.
* ``src/llama-model.cpp`` — the token embedding and per-layer token embeddings are input tensors
  kept in host memory; a tied output re-uses the embedding as an output tensor that is offloaded
  with the output layer (a second copy on the GPU); with ``-ngl N`` the last N of the n_layer + 1
  layers (the +1 is the output) go to the GPU: ``i_gpu_start = max(n_layer + 1 - n_gpu_layers, 0)``;
  ``--n-cpu-moe N`` keeps the expert tensors of the first N layers in host memory.
* ``common/common.h`` — defaults: ``n_ubatch = 512``, ``flash_attn_type = AUTO`` (on where the
  backend supports it), several GPUs split by layer (``split_mode = LAYER``).
* Checked against a real llama.cpp (llama-cpp-python 0.3.36, ``scripts/llamacpp_check.py``): KV cells,
  layers and K/V bytes and the model buffer match its log exactly (tests/test_llamacpp_rule.py).
* Given the exact file (``Workload.file``), every tensor is placed by the same rules at the bytes
  the file stores (``_file_priced``), and ``-m`` names that file; ``--from`` reads a ``-m`` file that
  exists on this machine (``g4sim.weightfiles``).
* ``src/llama-context.cpp`` — the micro-batch is ``min(n_ubatch, n_batch, requested n_ctx)`` (``-b``
  defaults to 2048 and caps ``-ub``); the output buffer holds ``n_vocab x n_seq_max`` F32 logits in
  host memory (``output_reserve``); the compute buffer is sized by reserving the worst-case graph
  (``sched_reserve`` -> ``graph_reserve``: ``min(n_ctx, n_ubatch)`` tokens over every KV cell, with
  ``min(n_tokens, n_outputs_max)`` logits rows: llama-server sets ``n_outputs_max`` to its ``-np``
  slots, ``tools/server/server-context.cpp`` ``server_output_limits``; the C API's default is n_batch).
  g4sim rebuilds that gemma4 graph and replays ggml-alloc on it (``compute_buffer_bytes``, below): equal
  to llama.cpp's logged CPU compute buffer on every load of tests/data/llamacpp_loader (full-width
  reduced-depth files, real loads; full-depth files, metadata-only loads), to the byte it prints.  The
  same figure is used on a GPU (not measured: CUDA's buffers may align differently).
* ``ggml/src/ggml-cpu`` — on a CPU build, weight repacking (``--repack``, the default) allocates
  extra buffers (CPU_REPACK; AMX first where present) holding a second, re-laid-out copy of the
  matrices of the types the CPU's kernels take (``CPU_FEATURES``, ``extra_buffer_terms``); measured on
  x86-avx2 only.  Component: REPACKED_WEIGHTS (its source names the buffers CPU_REPACK / AMX).
  A GPU load repacks the weights it leaves on the host (-ngl below n_layer + 1, --n-cpu-moe) only where
  the GPU backend has no host buffer type (Metal): ``host_extra_buffer_terms``; CUDA / ROCm keep them
  in CUDA_Host, or with mmap in the mapped file, unrepacked (the section "CPU extra buffers" below).

Runs on every device kind (CUDA, ROCm, Metal, Vulkan, CPU).  No torch import.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from g4sim.analytic.components import Component, Location
from g4sim.analytic.memory import MemoryBreakdown, MemoryTerm, priced_tensors, weight_bytes_by_component
from g4sim.analytic.quant import QUANT_FORMATS, get_kv_dtype, get_quant
from g4sim.analytic.tensors import quant_context, text_tensors

from g4sim.engines.base import (
    HF_REPOS, Caps, Engine, EngineError, Option, Parallel, Parsed, Workload, backend_class, flag_values,
    join_command, missing_towers, model_from_name, split_command, to_int,
)
from g4sim.spec import VARIANTS, ModelSpec, TextSpec
from g4sim.units import MiB
from g4sim.weightfiles import PLE_TABLE, TOKEN_EMBEDDING, TOWERS, WeightFile, WeightFileError, read_gguf

CTX_PAD = 256
GGUF_FORMATS = frozenset(n for n, f in QUANT_FORMATS.items() if f.family == "gguf") | {"bf16", "fp16", "fp32"}
_FILE_TYPE = {"q8_0": "Q8_0", "q6_k": "Q6_K", "q5_k_m": "Q5_K_M", "q5_0": "Q5_0", "q4_k_m": "Q4_K_M",
              "q4_k_s": "Q4_K_S", "iq4_xs": "IQ4_XS", "q4_0": "Q4_0", "q3_k_m": "Q3_K_M", "q2_k": "Q2_K",
              "bf16": "BF16", "fp16": "F16", "fp32": "F32"}
_CACHE_TYPE = {"bf16": "bf16", "fp16": "f16", "fp32": "f32", "q8_0": "q8_0", "q4_0": "q4_0"}
DEFAULT_CPU_FEATURES = "x86-avx2"  # a device whose profile names no cpu_features (measured: this project's CI machine)


@lru_cache(maxsize=4096)  # a sweep binds the same engine to the same settings tens of thousands of times
def _replaced(engine: LlamaCppEngine, changes: tuple[tuple[str, Any], ...]) -> LlamaCppEngine:
    return replace(engine, **dict(changes))


def pad(n: int, to: int = CTX_PAD) -> int:
    return -(-n // to) * to


def cache_type(flag: str, value: str) -> str:
    back = {v: k for k, v in _CACHE_TYPE.items()}
    if value not in back:
        raise EngineError(f"{flag} {value!r}; g4sim plans: {', '.join(sorted(back))}")
    return back[value]


def ggml_compute_dtype(engine: Engine, quant: str, device) -> str | None:
    """"int8" where ggml multiplies ``quant`` on the device's CPU cores: a quantized GGUF type is multiplied by
    integer dot products there -- ggml-cpu quantizes the activations to its ``vec_dot_type`` (Q8_0 for the legacy
    types and Q8_0 itself, Q8_K for the k-quants and IQ4_XS: ggml-cpu.c ``type_traits_cpu``) and runs
    ``ggml_vec_dot_<type>_q8_<0|K>`` (SDOT / I8MM on Arm, VNNI / maddubs on x86) -- so the CPU's int8 peak bounds it,
    falling back to its float peaks where it has none.  Only where the profile gives the CPU's figures
    (``cpu_flops``); None elsewhere (on GPUs g4sim keeps the 16-bit peak).  llama.cpp's and Ollama's rule."""
    if get_quant(quant).family == "gguf" and engine.runs_on_cpu(device) and device.cpu_flops("fp32") is not None:
        return "int8"
    return None


@dataclass(frozen=True)
class LlamaCppEngine(Engine):
    name: ClassVar[str] = "llamacpp"
    description: ClassVar[str] = "llama.cpp / llama-server: padded context, SWA cache, -ngl / --n-cpu-moe offload"
    caps: ClassVar[Caps] = Caps(weight_formats=GGUF_FORMATS, kv_dtypes=frozenset(_CACHE_TYPE),
                                device_kinds=frozenset({"gpu", "cpu", "soc"}), vendors=None,
                                parallel=Parallel.LAYER, host_offload=True)
    options: ClassVar[tuple[Option, ...]] = (
        Option("n_ubatch", ("-ub", "--ubatch-size"), "physical micro-batch (tokens per compute step)",
               "common/common.h n_ubatch = 512"),
        Option("flash_attn", ("-fa", "--flash-attn"), "flash attention on/off", "common/common.h: auto (on with CUDA/Metal)"),
        Option("swa_full", ("--swa-full",), "full-size SWA cache", "common/common.h swa_full = false"),
        Option("cache_type_v", ("-ctv", "--cache-type-v"), "V cache type when it differs from -ctk",
               "common/common.h cache_type_v = f16 (g4sim: the same as -ctk unless given)"),
        Option("n_gpu_layers", ("-ngl", "--n-gpu-layers", "--gpu-layers"), "layers offloaded to the GPU",
               "llama-server: all layers that exist (g4sim: 999)"),
        Option("n_cpu_moe", ("--n-cpu-moe", "-ncmoe"), "keep the experts of the first N layers on the host",
               "common/arg.cpp: 0"),
        Option("kv_unified", ("--kv-unified", "-kvu"), "one KV buffer shared by all slots",
               "common/common.h kv_unified = false; tools/server sets it (with 4 slots) when -np is not given"),
        Option("n_batch", ("-b", "--batch-size"), "logical batch (caps -ub: n_ubatch = min(n_ubatch, n_batch))",
               "common/common.h n_batch = 2048"),
        Option("repack", ("--repack", "-nr", "--no-repack"), "CPU weight repacking (extra CPU_REPACK / AMX buffers)",
               "common/common.h no_extra_bufts = false (repacking on); -nr / --no-repack turns it off"),
        Option("no_host", ("--no-host",), "bypass the GPU's host buffer type for weights left on the host",
               "common/arg.cpp --no-host (params.no_host, default false): make_cpu_buft_list then skips the host "
               "buffer type, so those weights meet the CPU extra (repack) buffer types"),
    )
    command_names: ClassVar[tuple[str, ...]] = ("llama-server", "llama-cli")
    file_kinds: ClassVar[frozenset[str]] = frozenset({"gguf"})
    # gemma4's graph builds every layer over all n_tokens and keeps the output rows only after the final
    # norm (src/models/gemma4.cpp; the reserve graph below does the same)
    prefill_runs_kv_shared_layers: ClassVar[bool] = True
    n_ubatch: int = 512
    n_seq_max: int = 1  # parallel slots (-np): bound to the workload's batch
    kv_unified: bool = False  # llama-server with an explicit -np (g4sim always prints -np)
    flash_attn: bool = True
    swa_full: bool = False  # llama-server's default; the C API's is True
    cache_type_v: str | None = None  # None: same as the KV dtype asked for
    n_gpu_layers: int = 999
    n_cpu_moe: int = 0
    n_batch: int = 2048
    repack: bool = True  # llama_model_params.use_extra_bufts (llama-server --repack, the default)
    # The CPU's features that decide which weights ggml-cpu repacks into extra buffers (CPU_FEATURES);
    # measured: x86-avx2 (this project's CI machine, a GGML_NATIVE=OFF build); the others from the source.
    # None: the device's (its profile's cpu_features, bound by for_device), else DEFAULT_CPU_FEATURES.
    cpu_features: str | None = None
    # Whether the GPU backend has a host buffer type, which make_cpu_buft_list lists before ggml-cpu's extra
    # buffer types (CUDA / ROCm: CUDA_Host), so the weights a GPU load leaves on the host are not repacked;
    # Metal has none (ggml-metal.cpp get_host_buffer_type = NULL): for_device binds False on Apple silicon.
    gpu_host_buffer: bool = True
    no_host: bool = False  # llama-server --no-host: the host buffer type is skipped even where the backend has one
    # Logits rows the worst-case graph reserves: None = llama-server's (the -np slots: tools/server
    # server_output_limits, no draft model); 0 = the C API's default (n_batch: llama-cpp-python, llama-bench).
    n_outputs_max: int | None = None
    cache_type_k: str | None = None  # the K cache type: bound from the workload's KV dtype (bind)
    ple_location: Location = Location.HOST
    cuda_context_bytes: int = 300 * MiB  # ggml's CUDA context + cuBLAS handles (no torch)
    allocator_reserve_fraction: float = 0.0  # ggml allocates exact buffers

    def __post_init__(self) -> None:
        for flag, v in (("-ub", self.n_ubatch), ("-np", self.n_seq_max), ("-b", self.n_batch)):
            if v < 1:
                raise EngineError(f"{flag} {v} must be a positive integer")
        if self.cpu_features is not None and self.cpu_features not in CPU_FEATURES:
            raise EngineError(f"cpu_features {self.cpu_features!r}; g4sim knows: {', '.join(CPU_FEATURES)}")
        if self.n_outputs_max is not None and self.n_outputs_max < 0:
            raise EngineError(f"n_outputs_max {self.n_outputs_max} must be 0 (n_batch) or more")
        if self.n_gpu_layers < 0 or self.n_cpu_moe < 0:
            raise EngineError("-ngl and --n-cpu-moe take a count of layers (0 or more)")
        if self.cache_type_v is not None and self.cache_type_v not in _CACHE_TYPE:
            raise EngineError(f"-ctv {self.cache_type_v!r}; valid: {', '.join(sorted(_CACHE_TYPE))}")

    def bind(self, w: Workload) -> LlamaCppEngine:
        """The slots (-np) are the workload's batch; the K cache type is its KV dtype (-ctk)."""
        if (self.n_seq_max, self.cache_type_k) == (w.batch, w.kv_dtype):
            return self
        return _replaced(self, (("n_seq_max", w.batch), ("cache_type_k", w.kv_dtype)))

    def for_device(self, device) -> LlamaCppEngine:
        """The CPU feature set (which weights are repacked) is the device's, unless it was set; on Apple
        silicon the GPU backend (Metal) has no host buffer type (``gpu_host_buffer``)."""
        changes = []
        if self.cpu_features is None and device.cpu_features is not None:
            changes.append(("cpu_features", device.cpu_features))
        if self.gpu_host_buffer and backend_class(device.kind, device.vendor) == "metal":
            changes.append(("gpu_host_buffer", False))
        return _replaced(self, tuple(changes)) if changes else self

    def micro_batch(self, n_ctx_total: int) -> int:
        """The micro-batch llama.cpp uses: llama_context clamps n_batch to the requested context (before it is
        padded) and n_ubatch to n_batch (src/llama-context.cpp)."""
        return min(self.n_ubatch, self.n_batch, n_ctx_total)

    def reserved_outputs(self, n_tokens: int) -> int:
        """Logits rows of the reserved graph: sched_reserve's n_outputs = min(n_tokens, n_outputs_max)."""
        cap = self.n_seq_max if self.n_outputs_max is None else self.n_outputs_max or min(self.n_batch, n_tokens)
        return min(n_tokens, cap)

    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        reason = super().compatibility(w, device, gpus)
        v_type = self.cache_type_v or w.kv_dtype
        if reason is None and not self.flash_attn and get_kv_dtype(v_type).block > 1:
            # llama_init_from_model: "quantized V cache requires flash_attn to be enabled"
            reason = f"llama.cpp refuses a quantized V cache ({v_type}) without flash attention (-fa on)"
        return reason

    # ---- KV cache ----------------------------------------------------------------------
    def n_ctx(self, ctx: int) -> int:
        return pad(ctx)

    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        """Cells per stream; ``ctx`` is the whole context with a unified cache, else one sequence's."""
        n_ctx = self.n_ctx(ctx)
        if t.is_sliding(layer) and not self.swa_full:
            seqs = self.n_seq_max if self.kv_unified else 1
            u = self.micro_batch(ctx if self.kv_unified else ctx * self.n_seq_max)
            return pad(min(n_ctx, t.sliding_window * seqs + u))
        return n_ctx

    def kv_layer_bytes(self, t: TextSpec, layer: int, ctx: int, k_type: str, v_type: str) -> tuple[int, int]:
        cells = self.kv_cells(t, layer, ctx)
        k, v = cell_bytes(t, layer, k_type, v_type, self.flash_attn)
        return cells * k, cells * v

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        # With one unified cache, n_ctx cells serve all sequences: n_ctx = per-seq ctx x batch.
        v_type = self.cache_type_v or kv_dtype
        if not self.flash_attn and get_kv_dtype(v_type).block > 1:
            raise EngineError(f"llama.cpp: a quantized V cache ({v_type}) requires flash attention (-fa on)")
        cells_ctx = ctx * batch if self.kv_unified else ctx
        per_cell = _cell_bytes_per_layer(t, kv_dtype, v_type, self.flash_attn)
        out = []
        for component, sliding in ((Component.KV_SLIDING, True), (Component.KV_FULL, False)):
            layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
            cells = self.kv_cells(t, layers[0], cells_ctx) if layers else 0  # every layer of a kind keeps as many
            total = cells * sum(per_cell[i] for i in layers) * (1 if self.kv_unified else batch)
            out.append(MemoryTerm(component, total, self._kv_location(),
                                  f"{len(layers)} layers x {cells} cells (n_ctx padded to 256"
                                  + ("; SWA = pad256(min(n_ctx, n_swa x seqs + n_ubatch))" if sliding and not self.swa_full else "")
                                  + f") x K {kv_dtype} + V {v_type}" + ("" if self.flash_attn else " (V transposed, widest row)")))
        return out

    def _kv_location(self) -> Location:
        return Location.ACCELERATOR if self.n_gpu_layers > 0 else Location.HOST

    # ---- weights -----------------------------------------------------------------------
    def weight_terms(self, spec: ModelSpec, quant: str, *, vision: bool, audio: bool,
                     file: WeightFile | None = None) -> list[MemoryTerm]:
        return list(_weight_terms(spec, quant, vision, audio, self.n_gpu_layers, self.n_cpu_moe, file))

    # ---- compute and output buffers ------------------------------------------------------
    def chunk_tokens(self, ctx: int) -> int:
        return self.n_ubatch

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        total = ctx * batch  # llama-server -c: all slots
        u = self.micro_batch(total)
        outputs = self.reserved_outputs(u)
        n_tokens = -(-u // batch) * batch  # graph_reserve rounds n_tokens up to a multiple of n_seqs
        cells_ctx = total if self.kv_unified else ctx  # cells per stream
        sliding = next((i for i in t.cache_layers if t.is_sliding(i)), None)
        full = next((i for i in t.cache_layers if not t.is_sliding(i)), None)
        kv_full = self.kv_cells(t, full, cells_ctx) if full is not None else self.n_ctx(cells_ctx)
        kv_swa = self.kv_cells(t, sliding, cells_ctx) if sliding is not None else kv_full
        k_type = self.cache_type_k or "fp16"
        v_type = self.cache_type_v or k_type
        buf = compute_buffer_bytes(t, n_tokens=n_tokens, n_outputs=outputs, kv_full=kv_full, kv_swa=kv_swa,
                                   flash_attn=self.flash_attn, k_type=k_type, v_type=v_type)
        return [
            MemoryTerm(Component.COMPUTE_BUFFER, buf, Location.ACCELERATOR,
                       f"compute buffer: ggml-alloc's placement of the worst-case graph (sched_reserve): "
                       f"{n_tokens} tokens, {outputs} logits rows, {kv_full} + {kv_swa} KV cells per stream, "
                       f"flash attention {'on' if self.flash_attn else 'off'}, K {k_type} / V {v_type}"),
            MemoryTerm(Component.LOGITS, t.vocab_size * 4 * batch, Location.HOST,
                       f"output buffer: n_vocab x {batch} slot(s) x 4 B (llama_context::output_reserve, host memory)"),
        ]

    def memory(self, w: Workload, device_kind: str = "gpu") -> MemoryBreakdown:
        """Engine.memory, plus on a CPU (a llama.cpp build without a GPU backend) the extra CPU buffers
        weight repacking allocates, and without the GPU copy of the tied output (nothing is offloaded); on a
        GPU, the extra buffers of the weights it leaves on the host where they are repacked (Metal)."""
        return _llama_memory(self, w, device_kind)

    def extra_buffer_terms(self, w: Workload) -> list[MemoryTerm]:
        """The CPU extra buffers (CPU_REPACK; AMX first where the CPU has it) of a CPU-only load."""
        if not self.repack:
            return []
        return [MemoryTerm(Component.REPACKED_WEIGHTS, n, Location.ACCELERATOR, note)
                for n, note in _extra_buffers(w.spec, w.quant, self.cpu_features or DEFAULT_CPU_FEATURES, w.file)
                if n]

    def host_extra_buffer_terms(self, w: Workload) -> list[MemoryTerm]:
        """A GPU load's CPU extra buffers: the weights it leaves on the host (-ngl, --n-cpu-moe), repacked by
        the CPU-only rule, where the GPU backend has no host buffer type (Metal; ``gpu_host_buffer``).  Host
        memory; the device's cpu_features, else DEFAULT_CPU_FEATURES.  None on CUDA / ROCm ("CPU extra
        buffers" below: make_cpu_buft_list puts CUDA_Host first)."""
        if not self.repack or (self.gpu_host_buffer and not self.no_host):
            return []
        placed = (self.n_gpu_layers, self.n_cpu_moe)
        return [MemoryTerm(Component.REPACKED_WEIGHTS, n, Location.HOST, note)
                for n, note in _extra_buffers(w.spec, w.quant, self.cpu_features or DEFAULT_CPU_FEATURES, w.file,
                                              placed) if n]

    def overhead_terms(self, terms, *, device_kind: str) -> list[MemoryTerm]:
        if device_kind != "gpu":
            return []
        return [MemoryTerm(Component.CUDA_CONTEXT, self.cuda_context_bytes, Location.ACCELERATOR,
                           "ggml CUDA context + cuBLAS handles (engine setting)")]

    # ---- commands ---------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        fmt = get_quant(w.quant).name
        gguf = f"{HF_REPOS.get(w.spec.name, w.spec.name).split('/')[-1]}-{_FILE_TYPE[fmt]}.gguf"
        mmproj = f"mmproj-{gguf.rsplit('-', 1)[0]}-F16.gguf"
        if w.file is not None:  # the exact file (the mmproj file beside it, as GGUF repositories ship it)
            gguf, mmproj = shlex.quote(w.file.path), shlex.quote(str(Path(w.file.path).with_name("mmproj-F16.gguf")))
        parts = [f"llama-server -m {gguf}", f"-c {w.ctx * w.batch}", f"-np {w.batch}",
                 f"-ngl {self.n_gpu_layers}", f"-ub {self.n_ubatch}", f"-fa {'on' if self.flash_attn else 'off'}",
                 f"-ctk {_CACHE_TYPE[w.kv_dtype]}", f"-ctv {_CACHE_TYPE[self.cache_type_v or w.kv_dtype]}"]
        if self.n_cpu_moe:
            parts.append(f"--n-cpu-moe {self.n_cpu_moe}")
        if self.n_batch != 2048:
            parts.append(f"-b {self.n_batch}")
        if not self.repack:
            parts.append("--no-repack")
        if self.no_host:
            parts.append("--no-host")
        if self.swa_full:
            parts.append("--swa-full")
        if self.kv_unified:
            parts.append("--kv-unified")
        if gpus > 1:
            parts.append("-sm layer -ts " + ",".join(["1"] * gpus))
        if w.vision:
            parts.append(f"--mmproj {mmproj}")
        return join_command(parts)

    def compute_dtype_on(self, quant: str, device) -> str:
        return ggml_compute_dtype(self, quant, device) or super().compute_dtype_on(quant, device)

    @classmethod
    def published_settings(cls, row: dict[str, str]) -> dict[str, Any]:
        """llama-bench's -ub and -fa, where the published run states them."""
        out: dict[str, Any] = {"n_ubatch": int(row["micro_batch"])} if row.get("micro_batch") else {}
        if row.get("flash_attn") in ("true", "false"):
            out["flash_attn"] = row["flash_attn"] == "true"
        return out

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        argv = split_command(text)
        known = {"-m": "model", "--model": "model", "-c": "ctx", "--ctx-size": "ctx", "-np": "np", "--parallel": "np",
                 "-ctk": "ctk", "--cache-type-k": "ctk", "-sm": "sm", "--split-mode": "sm", "-ts": "ts",
                 "--tensor-split": "ts", "--mmproj": "mmproj", "-b": "n_batch", "--batch-size": "n_batch"}
        for o in cls.options:
            for flag in o.flags:
                known[flag] = o.field
        known.update({"--repack": "repack_on", "-nr": "repack_off", "--no-repack": "repack_off", "--no-host": "no_host"})
        switches = frozenset({"--swa-full", "--kv-unified", "-kvu", "--repack", "-nr", "--no-repack", "--no-host"})
        v = flag_values(argv[1:], known, switches)
        if "model" not in v:
            raise EngineError("llama-server needs -m FILE.gguf")
        path = str(v["model"]).rsplit("/", 1)[-1]
        upper = path.upper().removesuffix(".GGUF")
        quant = next((f for f, tag in sorted(_FILE_TYPE.items(), key=lambda kv: -len(kv[1]))
                      if upper.endswith("-" + tag) or upper.endswith("." + tag) or upper.endswith("_" + tag)), None)
        file = None
        if Path(str(v["model"])).is_file():  # a file on this machine: plan exactly it
            try:
                file = read_gguf(str(v["model"]))
            except WeightFileError as exc:
                raise EngineError(str(exc)) from None
            quant = file.format
        if quant is None:
            raise EngineError(f"cannot tell the GGUF type from {path!r}; name it like gemma-4-31B-it-Q4_K_M.gguf "
                              "(types: " + ", ".join(sorted(_FILE_TYPE.values())) + ")")
        settings: dict = {}
        for field in ("n_ubatch", "n_gpu_layers", "n_cpu_moe", "n_batch"):
            if field in v:
                settings[field] = to_int(next(o.flags[0] for o in cls.options if o.field == field), v[field])
        if "flash_attn" in v:
            if v["flash_attn"] not in ("on", "off", "auto", "1", "0"):
                raise EngineError(f"-fa {v['flash_attn']!r}; valid: on, off, auto")
            settings["flash_attn"] = v["flash_attn"] in ("on", "auto", "1")
        for field in ("swa_full", "kv_unified"):
            if field in v:
                settings[field] = True
        if "repack_off" in v:
            settings["repack"] = False
        if "no_host" in v:
            settings["no_host"] = True
        kv = cache_type("-ctk", v["ctk"]) if "ctk" in v else "fp16"  # llama.cpp's default cache type is f16
        if "cache_type_v" in v:
            v_type = cache_type("-ctv", v["cache_type_v"])
            settings["cache_type_v"] = None if v_type == kv else v_type
        elif kv != "fp16":
            settings["cache_type_v"] = "fp16"  # -ctk alone leaves V at f16
        if "np" in v:
            batch = to_int("-np", v["np"])
        else:  # tools/server: "n_parallel is set to auto, using n_parallel = 4 and kv_unified = true"
            batch, settings["kv_unified"] = 4, True
        if batch < 1:
            raise EngineError(f"-np {batch} must be a positive integer (llama-server's auto, -1, is -np omitted)")
        ctx = to_int("-c", v["ctx"]) // batch if "ctx" in v else None
        gpus = len(str(v["ts"]).split(",")) if "ts" in v else (None if v.get("sm") in ("layer", "row") else 1)
        model = model_from_name(path) if file is None else (file.spec.name if file.spec.name in VARIANTS else None)
        return Parsed(cls(**settings), model, quant, kv, ctx or None, batch, gpus,
                      True if "mmproj" in v else None, file)


def cell_bytes(t: TextSpec, layer: int, k_type: str, v_type: str, flash_attn: bool) -> tuple[int, int]:
    """K and V bytes of one cell of ``layer``; without flash attention V is stored transposed and its
    rows are padded to the widest V of any layer."""
    k = get_kv_dtype(k_type).bytes_for(t.kv_heads(layer) * t.head_dim_of(layer))
    v_width = t.kv_heads(layer) * t.head_dim_of(layer)
    if not flash_attn:
        v_width = max(t.kv_heads(i) * t.head_dim_of(i) for i in t.cache_layers)
    return k, get_kv_dtype(v_type).bytes_for(v_width)


@lru_cache(maxsize=512)
def _cell_bytes_per_layer(t: TextSpec, k_type: str, v_type: str, flash_attn: bool) -> dict[int, int]:
    """K + V bytes of one cell of each cache layer."""
    return {i: sum(cell_bytes(t, i, k_type, v_type, flash_attn)) for i in t.cache_layers}


@lru_cache(maxsize=64)
def _priced(spec: ModelSpec, quant: str, vision: bool, audio: bool) -> tuple[tuple[Component, str, int, int], ...]:
    """(component, kind, layer, bytes) of every GGUF tensor, priced once per file.

    A float GGUF (F16 / BF16 / F32, as convert_hf_to_gguf.py writes it: conversion/base.py prepare_tensors)
    keeps its 1-D tensors (norms, scales, rope_freqs, layer_output_scale) and the MoE router in F32, and
    stores the two non-parameter tensors; llama_model_size counts them (tests/test_llamacpp_loader.py)."""
    fmt = get_quant(quant)
    rows = []
    for x, b in priced_tensors(spec, quant, vision, audio):
        if fmt.family == "float" and x.kind in ("norm", "router") and x.component not in TOWERS:
            b = x.numel * 4
        rows.append((Component(x.component), x.kind, x.layer, b))
    return tuple(rows)


@lru_cache(maxsize=16)
def _file_priced(file: WeightFile, spec: ModelSpec, quant: str, vision: bool,
                 audio: bool) -> tuple[tuple[Component, str, int, int], ...]:
    """(component, kind, layer, bytes) of every tensor of a given GGUF file, at its stored bytes; towers
    asked for that the file does not hold (the separate mmproj file) priced as ``_priced`` prices them."""
    kinds = {TOKEN_EMBEDDING: "token_embd", PLE_TABLE: "ple_table"}  # input tensors (host memory)
    asked = {c for c, a in zip(TOWERS, (vision, audio)) if a}
    order = list(Component)  # rows in the vocabulary's order (as the spec lists its tensors), layers ascending
    rows = sorted(((Component(x.component), kinds.get(x.component, "other"), x.layer, x.bytes) for x in file.tensors
                   if x.component not in TOWERS or x.component in asked), key=lambda r: order.index(r[0]))
    missing = {Component(c) for c in missing_towers(file, vision, audio)}
    return tuple(rows) + tuple(r for r in _priced(spec, quant, vision, audio) if r[0] in missing)


def _on_host(t: TextSpec, layer: int, experts: bool, n_gpu_layers: int, n_cpu_moe: int) -> bool:
    """Whether a weight of ``layer`` (-1: the output layer) stays in host memory: src/llama-model.cpp
    get_layer_buft_list puts layers below ``i_gpu_start`` (and the output unless -ngl > n_layer) on the CPU;
    --n-cpu-moe overrides the experts of the first N layers to the CPU (common/arg.cpp).  per_layer_model_proj
    (layer -1 here, layer 0's list in src/models/gemma4.cpp:60) lands alike: layer 0 is on the host iff the
    output is."""
    if layer < 0:
        return n_gpu_layers <= t.num_layers
    return layer < max(t.num_layers + 1 - n_gpu_layers, 0) or (experts and layer < n_cpu_moe)


@lru_cache(maxsize=1024)  # searches and sweeps re-place the same file at many contexts and offload settings
def _weight_terms(spec: ModelSpec, quant: str, vision: bool, audio: bool, n_gpu_layers: int,
                  n_cpu_moe: int, file: WeightFile | None = None) -> tuple[MemoryTerm, ...]:
    t = spec.text
    output_on_gpu = n_gpu_layers > t.num_layers
    acc: dict[tuple[Component, Location], int] = {}
    gpu, host = Location.ACCELERATOR, Location.HOST
    experts = Component.EXPERTS
    rows = _priced(spec, quant, vision, audio) if file is None else _file_priced(file, spec, quant, vision, audio)
    for c, kind, layer, b in rows:
        if kind in ("token_embd", "ple_table"):
            where = host  # input tensors stay in host memory
            if kind == "token_embd" and t.tie_word_embeddings and output_on_gpu:
                acc[(Component.OUTPUT_COPY, gpu)] = acc.get((Component.OUTPUT_COPY, gpu), 0) + b
        else:
            where = host if _on_host(t, layer, c is experts, n_gpu_layers, n_cpu_moe) else gpu
        acc[(c, where)] = acc.get((c, where), 0) + b
    what = f"{get_quant(quant).name} GGUF tensors" if file is None else f"{file.label} tensors of {file.name} (as stored)"
    return tuple(MemoryTerm(c, n, where, f"{what}; " + (
        "input tensor kept in host memory" if where is host else "offloaded with -ngl")) for (c, where), n in acc.items())


def weights_on_device(spec: ModelSpec, quant: str) -> int:
    """All GGUF weight bytes (what llama.cpp's 'model buffer size' lines add up to)."""
    return sum(weight_bytes_by_component(spec, quant).values())


# ---- the compute buffer: llama.cpp's worst-case graph, placed by ggml-alloc ---------------------------
#
# llama_context::sched_reserve (src/llama-context.cpp) builds the model's graph for one worst-case
# micro-batch -- graph_reserve(n_tokens = min(n_ctx, n_ubatch), n_seqs = n_seq_max, n_outputs =
# min(n_tokens, n_outputs_max)) over the whole KV cache (memory->init_full(): n_kv = every cell) -- and
# ggml_backend_sched_reserve sizes the compute buffer as the high-water mark of ggml-alloc placing that
# graph (ggml/src/ggml-alloc.c ggml_gallocr_alloc_graph_impl + ggml_dyn_tallocr).  There is no closed
# form: which intermediate lands where depends on the order of the nodes, on which ops may overwrite a
# parent in place and on best-fit reuse of freed blocks.  So g4sim does what llama.cpp does, on shapes
# only: it builds the gemma4 graph node for node (src/models/gemma4.cpp graph(), src/llama-graph.cpp
# build_inp_embd / build_attn (kv_iswa) / build_attn_mha / build_ffn / build_moe_ffn,
# src/llama-kv-cache.cpp cpy_k / cpy_v / get_k / get_v / build_input_*_idxs / *_rot, the order
# ggml_build_forward_expand gives them: ggml.c ggml_visit_parents_graph, sources left to right) and
# replays ggml-alloc on it.  Checked against llama.cpp's own graphs node for node and against 432 logged
# loads to the byte (tests/test_llamacpp_loader.py).

_F32, _F16, _Q4_0, _Q8_0, _I32, _I64, _BF16 = 0, 1, 2, 8, 26, 27, 30  # enum ggml_type
_TYPE_SIZE = {_F32: (1, 4), _F16: (1, 2), _Q4_0: (32, 18), _Q8_0: (32, 34), _I32: (1, 4), _I64: (1, 8),
              _BF16: (1, 2)}  # (block, bytes per block), as ggml's type traits
_GGML_CACHE_TYPE = {"fp32": _F32, "fp16": _F16, "bf16": _BF16, "q8_0": _Q8_0, "q4_0": _Q4_0}
# ggml-alloc.c ggml_op_can_inplace (GLU, MUL_MAT, GET_ROWS, CONT, FLASH_ATTN_EXT ... never)
_INPLACE = frozenset({"SCALE", "ADD", "MUL", "DIV", "UNARY", "ROPE", "RMS_NORM", "CLAMP", "SOFT_MAX"})
_ALIGN = 32  # the CPU buffer type's alignment (ggml-impl.h TENSOR_ALIGNMENT)


class _Node:
    """A ggml tensor as ggml-alloc sees it: op, type, shape, strides, sources, view root, flags."""

    __slots__ = ("op", "type", "ne", "nb", "src", "view_src", "ext", "output", "size")

    def __init__(self, op: str, typ: int, ne: tuple[int, ...], src: tuple = (), nb: tuple[int, ...] | None = None,
                 view_src: _Node | None = None, ext: bool = False) -> None:
        if len(ne) < 4:
            ne += (1,) * (4 - len(ne))
        blk, ts = _TYPE_SIZE[typ]
        if nb is None:
            row = ts * (ne[0] // blk)
            nb = (ts, row, row * ne[1], row * ne[1] * ne[2])
        self.op, self.type, self.ne, self.nb, self.src = op, typ, ne, nb, src
        self.view_src, self.ext, self.output = view_src, ext, False
        # the bytes ggml-alloc reserves: ggml_nbytes, aligned (ggml_backend_buft_get_alloc_size, aligned_offset)
        self.size = -(-(ne[0] * ne[1] * ne[2] * ne[3] * ts // blk) // _ALIGN) * _ALIGN


_EXT = _Node("NONE", _F32, (1,), ext=True)  # weights and KV caches: in their own buffers, never placed here


def _same(op: str, a: _Node, *src: _Node) -> _Node:  # ggml_dup_tensor(a): contiguous, a's type and shape
    return _Node(op, a.type, a.ne, (a,) + src)


def _view(a: _Node, ne: tuple[int, ...], nb: tuple[int, ...], op: str = "VIEW") -> _Node:
    ne = tuple(ne) + (1,) * (4 - len(ne))
    nb = list(nb)
    while len(nb) < 4:
        nb.append(nb[-1] * ne[len(nb) - 1])
    return _Node(op, a.type, ne, (a,), tuple(nb), a.view_src or a)


def _reshape(a: _Node, *ne: int) -> _Node:
    t = _Node("RESHAPE", a.type, ne, (a,))
    t.view_src = a.view_src or a
    return t


def _permute(a: _Node, axes: tuple[int, int, int, int]) -> _Node:  # ggml_permute: dim i goes to axes[i]
    ne, nb = [0] * 4, [0] * 4
    for i, j in enumerate(axes):
        ne[j], nb[j] = a.ne[i], a.nb[i]
    return _Node("PERMUTE", a.type, tuple(ne), (a,), tuple(nb), a.view_src or a)


def _mm(n_out: int, b: _Node) -> _Node:  # ggml_mul_mat(weight [., n_out], b): F32
    return _Node("MUL_MAT", _F32, (n_out,) + b.ne[1:], (_EXT, b))


def _contiguous(a: _Node) -> bool:
    blk, ts = _TYPE_SIZE[a.type]
    exp = ts * (a.ne[0] // blk)
    if a.nb[0] != ts:
        return False
    for i in range(1, 4):
        if a.ne[i] != 1 and a.nb[i] != exp:
            return False
        exp *= a.ne[i]
    return True


def _norm_mul(a: _Node) -> _Node:  # build_norm(LLM_NORM_RMS) with a weight: rms_norm, mul
    return _same("MUL", _same("RMS_NORM", a), _EXT)


def _hadamard(cur: _Node, rot: _Node) -> _Node:  # src/llama-impl.h llama_mul_mat_hadamard
    n = rot.ne[0]
    nel = cur.ne[0] * cur.ne[1] * cur.ne[2] * cur.ne[3]
    res = _reshape(cur, n, nel // n) if _contiguous(cur) else _Node("CONT", cur.type, (n, nel // n), (cur,))
    return _reshape(_Node("MUL_MAT", _F32, (n, nel // n), (rot, res)), *cur.ne)


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[_Node] = []
        self.leafs: list[_Node] = []
        self.starts: list[int] = []  # len(nodes) as each layer built begins, and after the last
        self._seen: set[_Node] = set()

    def expand(self, t: _Node) -> None:
        """ggml_build_forward_expand: sources depth first, left to right; a node after its sources.  (The
        recursion goes as deep as the nodes not yet expanded: the builder expands every layer.)"""
        if t not in self._seen:
            self._seen.add(t)
            for s in t.src:
                self.expand(s)
            (self.leafs if t.op == "NONE" else self.nodes).append(t)


def _input(typ: int, *ne: int) -> _Node:
    return _Node("NONE", typ, ne)


@lru_cache(maxsize=64)
def _layer_sigs(t: TextSpec) -> tuple[tuple[bool, int, int, bool, bool, int], ...]:
    """All the reserve graph reads of each layer: (sliding, head dim, KV heads, KV-shared, k_eq_v, FFN width)."""
    return tuple((t.is_sliding(i), t.head_dim_of(i), t.kv_heads(i), t.is_kv_shared(i), t.k_eq_v(i),
                  t.mlp_intermediate(i)) for i in range(t.num_layers))


def _reserve_graph(t: TextSpec, u: int, o: int, kv_full: int, kv_swa: int, fa: bool, k_type: int,
                   v_type: int, layers: range | tuple[int, ...]) -> _Graph:
    """gemma4's graph for n_tokens = u, n_outputs = o, over caches of kv_full / kv_swa cells per stream, with
    the decoder layers ``layers`` (all of them, or fewer for ``_shortcut``; tensor sizes stay the model's).

    Several sequences (streams) give tensors of the same bytes ([n_kv, u / n_stream, ., n_stream]), so one
    stream of u tokens places the same way (checked at 4 sequences, unified and not)."""
    g = _Graph()
    h, L = t.hidden_size, t.num_layers
    tokens, inp_embd = _input(_I32, u), _input(_F32, h, u)  # build_inp_embd: both inputs enter the graph
    embd = _Node("GET_ROWS", _F32, (h, u), (_EXT, tokens))
    g.expand(embd)
    g.expand(inp_embd)
    ple = None
    if t.has_ple:  # gemma4 build_inp_per_layer, expanded at once
        P = t.hidden_size_per_layer_input
        ple = _same("SCALE", _reshape(_Node("GET_ROWS", _F32, (P * L, u), (_EXT, _input(_I32, u))), P, L, u))
        g.expand(ple)
    inp_l = _same("SCALE", embd)  # inp_scaled
    pos = _input(_I32, u)
    v_max = max(t.kv_heads(i) * t.head_dim_of(i) for i in t.cache_layers)  # n_embd_v_gqa_max (V transposed)
    caches = {}
    for sliding in (True, False):  # build_attn_inp_kv_iswa: per cache, K/V row indices and the KQ mask
        hd = t.head_dim if sliding else t.global_head_dim
        c = {"cells": kv_swa if sliding else kv_full, "k_idxs": _input(_I64, u),
             "v_idxs": _input(_I64, u if fa else u * v_max),
             "mask": _input(_F16 if fa else _F32, kv_swa if sliding else kv_full, u), "k_rot": None, "v_rot": None}
        if _TYPE_SIZE[k_type][0] > 1 and hd % 64 == 0:  # llama_kv_cache: attn_rot_k for a quantized K cache
            nrot = 64
            while hd % (nrot * 2) == 0:
                nrot *= 2
            c["k_rot"] = _input(_F32, nrot, nrot)
        if _TYPE_SIZE[v_type][0] > 1 and hd % 64 == 0:  # attn_rot_v: 64 x 64
            c["v_rot"] = _input(_F32, 64, 64)
        caches[sliding] = c
    out_ids = _input(_I32, o)
    ple_proj = None
    if ple is not None:  # project_per_layer_inputs: built before the layers, expanded where layer 0 reads it
        P = t.hidden_size_per_layer_input
        pp = _norm_mul(_reshape(_same("SCALE", _mm(P * L, inp_l)), P, L, u))
        ple_proj = _Node("CONT", _F32, (P, u, L), (_permute(_same("SCALE", _same("ADD", pp, ple)), (0, 2, 1, 3)),))
    sigs, nh = _layer_sigs(t), t.num_heads
    for il in layers:  # a layer's nodes are read by its own and the next layer's only (inp_l)
        g.starts.append(len(g.nodes))
        sliding, hd, nkv, shared, k_eq_v, n_ff = sigs[il]
        c = caches[sliding]
        cur = _norm_mul(inp_l)
        q = _same("MUL", _same("RMS_NORM", _reshape(_mm(hd * nh, cur), hd, nh, u)), _EXT)
        q = _Node("ROPE", q.type, q.ne, (q, pos))
        k = v = None
        if not shared:
            k_mm = _mm(hd * nkv, cur)
            v_mm = k_mm if k_eq_v else _mm(hd * nkv, cur)  # no v_proj: V is K's projection
            k = _same("MUL", _same("RMS_NORM", _reshape(k_mm, hd, nkv, u)), _EXT)
            k = _Node("ROPE", k.type, k.ne, (k, pos))
            v = _same("RMS_NORM", _reshape(v_mm, hd, nkv, u))
        cur = _norm_mul(_attention(g, c, q, k, v, hd, nh, nkv, u, fa, k_type, v_max, h))
        attn_out = _same("ADD", cur, inp_l)
        if t.enable_moe_block:
            mlp = _norm_mul(_ffn(_norm_mul(attn_out), n_ff, h))
            moe_in = _norm_mul(attn_out)
            router = _mm(t.num_experts, _same("MUL", _same("SCALE", _same("RMS_NORM", attn_out)), _EXT))
            cur = _same("ADD", mlp, _norm_mul(_moe(g, t, moe_in, router, u)))
        else:
            cur = _ffn(_norm_mul(attn_out), n_ff, h)
        cur = _same("ADD", _norm_mul(cur), attn_out)
        if ple_proj is not None:
            P = t.hidden_size_per_layer_input
            pe_in = cur
            cur = _same("MUL", _same("UNARY", _mm(P, cur)), _view(ple_proj, (P, u), (4, 4 * P)))
            cur = _same("ADD", pe_in, _norm_mul(_mm(h, cur)))
        inp_l = _same("MUL", cur, _EXT)  # layer_output_scale
    g.starts.append(len(g.nodes))
    cur = _same("MUL", _same("RMS_NORM", inp_l), _EXT)
    cur.output = True  # h_nextn
    cur = _Node("GET_ROWS", _F32, (h, o), (cur, out_ids))
    cur.output = True  # result_norm
    cur = _same("SCALE", _same("UNARY", _same("SCALE", _mm(t.vocab_size, cur))))  # final logit softcap
    cur.output = True  # result_output
    g.expand(cur)
    return g


def _ffn(cur: _Node, n_ff: int, h: int) -> _Node:  # build_ffn(GELU, PAR): geglu_split(gate, up), down
    gate, up = _mm(n_ff, cur), _mm(n_ff, cur)
    return _mm(h, _Node("GLU", gate.type, gate.ne, (gate, up)))


def _moe(g: _Graph, t: TextSpec, cur: _Node, logits: _Node, u: int) -> _Node:
    """build_moe_ffn(probs_in = gemma4's router logits, softmax gating, norm_w, fused gate_up, down scale)."""
    E, k, Im, h = t.num_experts, t.top_k_experts, t.moe_intermediate_size, t.hidden_size
    probs = _same("SOFT_MAX", logits)
    order = _Node("ARGSORT", _I32, probs.ne, (probs,))
    sel = _view(order, (k, u), (4, order.nb[1]))
    w = _reshape(_Node("GET_ROWS", _F32, (1, k, u), (_reshape(probs, 1, E, u), sel)), k, u)
    w = _reshape(_same("DIV", w, _same("CLAMP", _Node("SUM_ROWS", _F32, (1, u), (w,)))), 1, k, u)
    g.expand(w)
    gu = _Node("MUL_MAT_ID", _F32, (2 * Im, k, u), (_EXT, _reshape(cur, h, 1, u), sel))
    gate, up = _view(gu, (Im, k, u), gu.nb[:3]), _view(gu, (Im, k, u), gu.nb[:3])
    ex = _Node("MUL_MAT_ID", _F32, (h, k, u), (_EXT, _Node("GLU", _F32, gate.ne, (gate, up)), sel))
    scale = _Node("GET_ROWS", _F32, (1, k, u), (_Node("REPEAT", _F32, (1, E, u), (_reshape(_EXT, 1, E, 1),)), sel))
    ex = _same("MUL", _same("MUL", ex, scale), w)
    g.expand(ex)
    views = [_view(ex, (h, u), (4, ex.nb[2])) for _ in range(k)]
    for v in views:
        g.expand(v)
    out = views[0]
    for v in views[1:]:
        out = _same("ADD", out, v)
        g.expand(out)
    return out


def _attention(g: _Graph, c: dict, q: _Node, k: _Node | None, v: _Node | None, hd: int, nh: int, nkv: int,
               u: int, fa: bool, k_type: int, v_max: int, h: int) -> _Node:
    """build_attn (kv_iswa) + build_attn_mha; K/V stores cpy_k / cpy_v; the cache views get_k / get_v."""
    cells = c["cells"]
    if c["k_rot"] is not None:
        q = _hadamard(q, c["k_rot"])
        k = _hadamard(k, c["k_rot"]) if k is not None else None
    if c["v_rot"] is not None and v is not None:
        v = _hadamard(v, c["v_rot"])
    g.expand(q)
    if k is not None:
        g.expand(k)
        g.expand(v)
        g.expand(_Node("SET_ROWS", _F16, (1,), (_view(k, (hd * nkv, u), (k.nb[0], k.nb[2])), c["k_idxs"], _EXT),
                       view_src=_EXT))
        if fa:
            vv = _view(v, (hd * nkv, u), (v.nb[0], v.nb[2]))
        else:  # V transposed: each row padded to the widest V, stored one element per row
            vv = _reshape(v, hd * nkv, u)
            if hd * nkv < v_max:
                vv = _Node("PAD", vv.type, (v_max, u), (vv,))
            vv = _reshape(vv, 1, vv.ne[0] * vv.ne[1])
        g.expand(_Node("SET_ROWS", _F16, (1,), (vv, c["v_idxs"], _EXT if fa else _reshape(_EXT, 1)), view_src=_EXT))
    qp = _permute(_view(q, q.ne, q.nb), (0, 2, 1, 3))
    kc = _permute(_view(_EXT, (hd, nkv, cells), (2, 2 * hd, 2 * hd * nkv)), (0, 2, 1, 3))
    if fa:
        vc = _permute(_view(_EXT, (hd, nkv, cells), (2, 2 * hd, 2 * hd * nkv)), (0, 2, 1, 3))
        if k_type == _F32:  # build_attn_mha: an F32 cache is cast to F16 for flash attention
            kc = _Node("CPY", _F16, kc.ne, (kc,))
            vc = _Node("CPY", _F16, vc.ne, (vc,))
        cur = _reshape(_Node("FLASH_ATTN_EXT", _F32, (hd, nh, u), (qp, kc, vc, c["mask"])), hd * nh, u)
    else:
        vc = _permute(_view(_EXT, (cells, nkv, hd), (2, 2 * cells * hd, 2 * cells)), (0, 2, 1, 3))
        kq = _Node("SOFT_MAX", _F32, (cells, u, nh), (_Node("MUL_MAT", _F32, (cells, u, nh), (kc, qp)), c["mask"]))
        kqv = _Node("MUL_MAT", _F32, (hd, u, nh), (vc, kq))
        cur = _Node("CONT", _F32, (hd * nh, u), (_permute(kqv, (0, 2, 1, 3)),))
    g.expand(cur)
    if c["v_rot"] is not None:
        cur = _hadamard(cur, c["v_rot"])
    return _mm(h, cur)


def _pad_align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _place(g: _Graph, probes: frozenset[int] = frozenset()) -> tuple[int, dict[int, tuple]]:
    """ggml_gallocr_alloc_graph_impl + ggml_dyn_tallocr on one CPU buffer: the buffer's size in bytes, and
    the allocator's state (``state`` below) before each node whose index is in ``probes``.

    Inputs (leafs) first, then every node after its parents; a node may take over a parent's block when
    its op can run in place, the parent has no other consumer and the same layout; a tensor is freed
    after its last consumer (outputs never); a block goes best-fit to the smallest free block that holds
    it, else to the end.  The buffer is the highest end reached."""
    blocks: list[list[int]] = [[0, 1 << 62]]  # free blocks [offset, size], by address; the last is the open end
    top = 0

    def alloc(size: int) -> int:
        nonlocal top
        best, best_size = len(blocks) - 1, None
        for i in range(len(blocks) - 1):
            s = blocks[i][1]
            if s >= size and (best_size is None or s <= best_size):
                best, best_size = i, s
        b = blocks[best]
        off = b[0]
        b[0] += size
        b[1] -= size
        if b[1] == 0:
            del blocks[best]
        top = max(top, off + size)
        return off

    def free(off: int, size: int) -> None:
        for i, b in enumerate(blocks):
            if b[0] + b[1] == off:
                b[1] += size
                if i < len(blocks) - 1 and b[0] + b[1] == blocks[i + 1][0]:
                    b[1] += blocks[i + 1][1]
                    del blocks[i + 1]
                return
            if off + size == b[0]:
                b[0], b[1] = off, b[1] + size
                if i > 0 and blocks[i - 1][0] + blocks[i - 1][1] == off:
                    blocks[i - 1][1] += b[1]
                    del blocks[i]
                return
        j = 0
        while j < len(blocks) and blocks[j][0] < off:
            j += 1
        blocks.insert(j, [off, size])

    children: dict[_Node, int] = {}
    views: dict[_Node, int] = {}
    addr: dict[_Node, int] = {}
    own: set[_Node] = set()  # ggml-alloc's hash_node.allocated

    def allocate(x: _Node) -> None:
        """ggml_gallocr_allocate_node, once per leaf and node.  (ggml also calls it on a node's parents
        first; here they are all placed by then: leafs come first, nodes after their sources.)"""
        if x.ext or x.view_src is not None:
            return
        if x.op in _INPLACE:
            for p in x.src:
                # only a parent ggml-alloc placed itself (never a view: views are not "allocated"), not an
                # output, same layout, with no other consumer and no view of it
                if p in own and not p.output and p.type == x.type and p.ne == x.ne and p.nb == x.nb \
                        and children[p] == 1 and not views.get(p):
                    addr[x] = addr[p]
                    own.discard(p)
                    own.add(x)
                    if p.size > x.size:  # ggml_gallocr_free_extra_space
                        free(addr[x] + x.size, p.size - x.size)
                    return
        addr[x] = alloc(x.size)
        own.add(x)

    def state(at: int) -> tuple:
        """(free blocks, {tensor: (index in nodes or None for a leaf, (owned, offset), (consumers left, views
        left))} of every tensor placed so far that holds a block or is still read), before node ``at``."""
        live = {}
        for i, x in enumerate(g.leafs + g.nodes[:at]):
            c, v, o = children.get(x, 0), views.get(x, 0), x in own
            if c or v or o:
                live[x] = (i - len(g.leafs) if i >= len(g.leafs) else None, (o, addr[x] if o else None), (c, v))
        return tuple(map(tuple, blocks)), live

    for leaf in g.leafs:
        allocate(leaf)
    for n in g.nodes:
        if n.view_src is not None:
            views[n.view_src] = views.get(n.view_src, 0) + 1
        for s in n.src:
            children[s] = children.get(s, 0) + 1
    states = {}
    for i, n in enumerate(g.nodes):
        if i in probes:
            states[i] = state(i)
        allocate(n)
        for p in n.src:
            children[p] -= 1
            if children[p] or views.get(p):
                continue
            if p.view_src is not None:
                r = p.view_src
                views[r] -= 1
                if not views[r] and not children.get(r) and r in own and not r.output:
                    free(addr[r], r.size)
                    own.discard(r)
            elif p in own and not p.output:
                free(addr[p], p.size)
                own.discard(p)
    return top, states


# ---- placing fewer layers -------------------------------------------------------------------------
#
# Gemma 4 repeats its layers (5 sliding + 1 full, ...), and ggml-alloc, replaying the same nodes from the
# same state, makes the same moves.  So a run of layers that repeats every q layers is placed with all but a
# few periods of q layers left out, and that gives the whole graph's buffer whenever the allocator is seen
# to come back to its state q layers later:
#
# * a layer's graph depends only on its ``_layer_sigs`` entry, and its nodes are read by that layer and the
#   next only; the rest (inputs, ple_proj) is shared by all layers.  So within a periodic run, the nodes
#   between two layer starts q layers apart (a period) are the same node for node -- except where a shared
#   node is expanded for the first time, which adds nodes: the checked period must have as many nodes as
#   the one after the cut;
# * the state at a layer start: the free blocks, and each live tensor's block and consumers left.  Layer
#   tensors are matched by their index from the layer start; a shared tensor (the same one at both starts)
#   must hold the same block and, if still read, have consumers after the cut (then no period frees it or
#   runs in place on it: ggml-alloc acts on a tensor only at its last consumer);
# * if the state after the checked period is the state before it, every left-out period starts from it too
#   and makes the same moves (by induction), up to the same high-water mark, and the layers after the cut
#   start from it as they would in the whole graph.
#
# The state comes back after one layer pattern of p layers once the allocator settles, or after a few
# when its blocks take turns (3 or 4 seen): q = p, 2p, 3p, 4p are tried in turn, then the whole graph.

_MAX_PATTERN = 12  # the longest layer pattern looked for
_WARM = 6  # layers placed before the checked period, for the allocator to settle (seen: up to 6)


def _run_end(sigs: tuple, i: int, p: int) -> int:
    """The end of the p-periodic run of layers from ``i``."""
    e = min(i + p, len(sigs))
    while e < len(sigs) and sigs[e] == sigs[e - p]:
        e += 1
    return e


@lru_cache(maxsize=256)
def _shortcut(sigs: tuple, m: int) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    """The layers to place, and each cut as (position in them of the checked period's first layer, period
    q = m layer patterns).  The checked period, after layer i (whose tail opens the first) and ``_WARM``
    layers of a run from i, ends at the cut; whole periods follow until the run ends, the last one kept."""
    keep: list[int] = []
    cuts = []
    i = 0
    while i < len(sigs):
        e, p = max((_run_end(sigs, i, p), -p) for p in range(1, _MAX_PATTERN + 1))  # longest, then shortest p
        q = -p * m
        cut = i + 1 + _WARM + q
        left_out = (e - cut - q) // q * q
        if left_out < q:
            keep.append(i)
            i += 1
            continue
        keep.extend(range(i, cut))
        cuts.append((len(keep) - q, q))
        i = cut + left_out
    return tuple(keep), tuple(cuts)


def _repeats(g: _Graph, states: dict[int, tuple], j: int, q: int) -> bool:
    """Whether the period of q layers from position j of ``g.starts`` (ending at a cut) leaves the allocator
    in the state it found it in, and has the nodes of the period after the cut."""
    s = g.starts
    a, b = s[j], s[j + q]
    if b - a != s[j + 2 * q] - b:
        return False
    (blocks_a, live_a), (blocks_b, live_b) = states[a], states[b]
    shared = live_a.keys() & live_b.keys()
    for x in shared:
        (_, held_a, left_a), (_, held_b, left_b) = live_a[x], live_b[x]
        if held_a != held_b or any(left_a) and not any(left_b):
            return False

    def layer(live: dict, at: int) -> dict | None:  # by index from the layer start; None if an input is freed
        out = {}
        for x, (i, held, left) in live.items():
            if x not in shared:
                if i is None:
                    return None
                out[i - at] = (held, left)
        return out

    rest = layer(live_a, a)
    return blocks_a == blocks_b and rest is not None and rest == layer(live_b, b)


@lru_cache(maxsize=4096)  # plans and searches revisit the same shapes
def compute_buffer_bytes(t: TextSpec, *, n_tokens: int, n_outputs: int, kv_full: int, kv_swa: int,
                         flash_attn: bool, k_type: str = "fp16", v_type: str = "fp16") -> int:
    """llama.cpp's CPU compute buffer (``sched_reserve: CPU compute buffer size``) for one worst-case
    micro-batch of ``n_tokens`` with ``n_outputs`` logits rows over ``kv_full`` / ``kv_swa`` cells per stream."""
    args = (t, n_tokens, n_outputs, kv_full, kv_swa, flash_attn, _GGML_CACHE_TYPE[k_type], _GGML_CACHE_TYPE[v_type])
    for m in range(1, 5):
        keep, cuts = _shortcut(_layer_sigs(t), m)
        if not cuts:
            break
        g = _reserve_graph(*args, keep)
        top, states = _place(g, frozenset(g.starts[j + d] for j, q in cuts for d in (0, q)))
        if all(_repeats(g, states, j, q) for j, q in cuts):
            return top
    return _place(_reserve_graph(*args, range(t.num_layers)))[0]


# ---- CPU extra buffers: weight repacking (CPU_REPACK) and AMX ----------------------------------------
#
# On a CPU, llama.cpp lists ggml-cpu's "extra" buffer types before the plain CPU one
# (src/llama-model.cpp make_cpu_buft_list with use_extra_bufts, llama-server's default --repack;
# ggml/src/ggml-cpu/ggml-cpu.cpp ggml_backend_cpu_get_extra_buffer_types: AMX first, then REPACK) and puts
# each weight in the first buffer type that supports the op it feeds (src/llama-model-loader.cpp
# select_weight_buft / weight_buft_supported).  Those buffers are allocated and filled with a re-laid-out
# copy of the tensor; the memory-mapped file still spans it (the CPU_Mapped buffer keeps the whole range, the
# copied pages are read once at load), so the repacked weights are held twice, up to a second copy of every
# matrix.  Input tables (token_embd, per_layer_token_embd) feed GET_ROWS and are never repacked; a tied
# output re-uses token_embd as a MUL_MAT weight and is.
#
# A GPU load (ggml-org/llama.cpp@0c1e57098, vendored by llama-cpp-python 0.3.36) gives the weights it keeps
# on the host -- layers below i_gpu_start and the output (-ngl), and --n-cpu-moe / --cpu-moe / --fit's
# experts -- the same list, cpu_buft_list (src/llama-model.cpp:1591-1596 get_layer_buft_list; 1604 the
# input layer).  The tensor overrides those flags add name ggml_backend_cpu_buffer_type() (common/common.h:
# 1206-1218 llm_ffn_exps_cpu_override / llm_add_n_cpu_ffn_overrides, used by common/arg.cpp:2760-2774;
# common/fit.cpp:577, 657), and the loader turns an override to that type into select_weight_buft over
# cpu_buft_list ("when overriding to a CPU buffer, consider the extra buffer types": src/llama-model-loader.cpp:
# 1238-1242, buft_list_cpu = cpu_buft_list: src/llama-model.cpp:1966), so they meet the extra types too.  But
# make_cpu_buft_list (src/llama-model.cpp:1078-1137) orders the list ACCEL -> the first GPU's host buffer type
# (1093-1107; skipped with no_host, llama-server --no-host) -> the extra types (1109-1126, use_extra_bufts) ->
# CPU (ggml-org/llama.cpp PR #12632).  CUDA / ROCm have a host buffer type (ggml/src/ggml-cuda/ggml-cuda.cu:
# 5143-5146, CUDA_Host) and the CUDA device takes MUL_MAT / MUL_MAT_ID of every GGUF type g4sim prices
# (ggml-cuda.cu:5215-5273), so it is picked first (select_weight_buft, src/llama-model-loader.cpp:1067-1077):
# pinned CUDA_Host without mmap, the plain mapped CPU buffer with it (1269-1277) -- never repacked.  Metal has
# none (ggml/src/ggml-metal/ggml-metal.cpp:822 get_host_buffer_type = NULL; ggml/src/ggml-backend.cpp:620-627):
# there the list, and so the per-tensor rule, is the CPU-only load's (the extra types are paired with the CPU
# device, whose supports_op asks them: ggml/src/ggml-cpu/ggml-cpu.cpp:432-440, repack.cpp:5191-5225), and the
# repacked copy is a real allocation beside the mapped file (only a device's default buffer type maps the
# file: src/llama-model.cpp:1854; any other is allocated, 1880) -- ``host_extra_buffer_terms``.  Seen: Ollama's
# llm/llama_server_test.go (fb3076099) "Metal partial offload with mmap", SmolLM2-360M Q8_0 at -ngl 20 of 33:
# CPU_REPACK 129.49 MiB = the 13 host layers' Q8_0 matrices (13 x 9,830,400 x 34/32 B); its CUDA ones log none.
#
# CPU_REPACK (ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type; size = ggml_nbytes: get_alloc_size
# unset): MUL_MAT weights (2-D) and MUL_MAT_ID experts (3-D) of these GGML types, when the rows (ne[1]) are a
# multiple of the interleave.  AMX (ggml-cpu/amx/amx.cpp extra_buffer_type::supports_op, mmq.cpp
# ggml_backend_amx_get_alloc_size): MUL_MAT only, rows a multiple of 32, the row length a multiple of the
# type's block (K-quants 256, Q4_0 / Q4_1 / Q8_0 32, F16 16); packed Q8_0 adds 4 B per 32, Q4_K / Q5_K 4 B
# per 256 and IQ4_XS 2 B per 256 (per-block compensation / scales); whatever AMX does not take falls to
# CPU_REPACK.  Measured here: x86-avx2 only (tests/data/llamacpp_loader, an AMD EPYC without AMX and a
# GGML_AVX512=OFF build); the other rows are the source's, untested.
CPU_FEATURES: dict[str, dict[str, int]] = {  # GGML type -> rows multiple for CPU_REPACK
    "x86-avx2": {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8},
    "x86-avx512": {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8, "Q2_K": 8},
    "x86-amx": {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8, "Q2_K": 8},  # plus the AMX buffer, first
    # NEON with DOTPROD (e.g. Raspberry Pi 5's Cortex-A76); with i8mm too the layouts change, not the set
    "arm-dotprod": {"Q4_0": 4, "Q4_K": 8, "Q5_K": 8, "Q6_K": 8, "IQ4_NL": 4, "MXFP4": 4, "Q8_0": 4},
    # NEON with i8mm (Apple M2+, Cortex-X4 / A720): Q4_0 4x8, Q4_K / Q5_K / Q6_K 8x8, Q8_0 4x8; IQ4_NL and MXFP4 by
    # the dotprod branch (repack.cpp at 0c1e570) -- the same types and row multiples, so the same bytes
    "arm-i8mm": {"Q4_0": 4, "Q4_K": 8, "Q5_K": 8, "Q6_K": 8, "IQ4_NL": 4, "MXFP4": 4, "Q8_0": 4},
    "none": {},  # --no-repack, or a CPU without the features (e.g. ARM without dotprod)
}
_AMX_BLOCK = {"Q4_0": 32, "Q4_1": 32, "Q8_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256, "IQ4_XS": 256, "F16": 16}
_AMX_EXTRA = {"Q8_0": (32, 4), "Q4_K": (256, 4), "Q5_K": (256, 4), "IQ4_XS": (256, 2)}  # (elements, extra bytes)
_MATMUL_KINDS = frozenset({"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "router",
                           "other"})


@lru_cache(maxsize=256)  # one table serves every feature set and placement _extra_buffers prices
def _matmul_weights(spec: ModelSpec, quant: str,
                    file: WeightFile | None) -> tuple[tuple[str, str, int, int, int, bool, int], ...]:
    """(name, GGML type, rows ne[1], row length ne[0], bytes, 3-D experts, layer) of every weight a MUL_MAT /
    MUL_MAT_ID reads, the tied output included (a second tensor on token_embd's data; layer -1, the output)."""
    t = spec.text
    fmt, qc = get_quant(quant), quant_context(t)
    shapes: dict[str, list] = {}
    for x in text_tensors(t):
        if x.kind in ("norm", "ple_table") or (x.kind == "token_embd" and x.component == "token_embedding"
                                                and not t.tie_word_embeddings):
            continue
        typ = fmt.gguf_type(x, qc) if fmt.family == "gguf" else ("F32" if x.kind == "router" else
                                                                  {"fp16": "F16", "bf16": "BF16"}.get(fmt.name, "F32"))
        e = shapes.setdefault(x.name, [typ, 0, x.cols, 0, x.component == "experts", x.layer])
        e[1] += x.rows  # the experts' gate and up are one fused tensor: their rows add
        e[3] += fmt.tensor_bytes(x, qc) if fmt.family == "gguf" else x.numel * {"F16": 2, "BF16": 2}.get(typ, 4)
    if file is not None:  # the file's own types and bytes
        stored = {x.name: x for x in file.tensors}
        for name, e in shapes.items():
            if name in stored:
                e[0], e[3] = stored[name].type.upper(), stored[name].bytes
    return tuple((name, typ, rows, cols, b, experts, layer)
                 for name, (typ, rows, cols, b, experts, layer) in shapes.items())


@lru_cache(maxsize=256)
def _extra_buffers(spec: ModelSpec, quant: str, features: str, file: WeightFile | None,
                   placed: tuple[int, int] | None = None) -> tuple[tuple[int, str], ...]:
    """(bytes, note) of the AMX and CPU_REPACK buffers a CPU-only llama.cpp allocates for these weights;
    ``placed`` (-ngl, --n-cpu-moe): a GPU load's, for the weights it leaves on the host (``_on_host``)."""
    repack_types = CPU_FEATURES[features]
    amx, repack, n_amx, n_repack, types = 0, 0, 0, 0, set()
    for _name, typ, rows, cols, b, experts, layer in _matmul_weights(spec, quant, file):
        if placed is not None and not _on_host(spec.text, layer, experts, *placed):
            continue
        if features == "x86-amx" and not experts and typ in _AMX_BLOCK and rows % 32 == 0 \
                and cols % _AMX_BLOCK[typ] == 0:
            per, extra = _AMX_EXTRA.get(typ, (1, 0))
            amx += _pad_align(b + rows * (cols // per) * extra if extra else b)
            n_amx += 1
        elif typ in repack_types and rows % repack_types[typ] == 0:
            repack += _pad_align(b)
            n_repack += 1
            types.add(typ)
    return ((amx, f"AMX extra buffer: {n_amx} MUL_MAT weights packed for AMX tiles (ggml-cpu/amx; from the source, "
                  "untested)"),
            (repack, f"CPU_REPACK extra buffer ({features}): {n_repack} {'' if placed is None else 'host-resident '}"
                     f"weights of {', '.join(sorted(types)) or '-'} re-laid out (ggml-cpu/repack.cpp), a second copy "
                     "beside the mapped file"))


@lru_cache(maxsize=4096)
def _llama_memory(engine: LlamaCppEngine, w: Workload, device_kind: str) -> MemoryBreakdown:
    """Engine.memory of a llama-server load (``engine``: llama.cpp's, or Ollama's, which starts one): on a GPU,
    plus the repacked copy of the weights left on the host where they are repacked (``host_extra_buffer_terms``);
    on a CPU, no GPU copy of the tied output and the CPU extra buffers (``extra_buffer_terms``)."""
    m = Engine.memory(engine, w, device_kind)
    if device_kind != "cpu":
        host = engine.host_extra_buffer_terms(w)
        return MemoryBreakdown(m.terms + tuple(host)) if host else m
    # a CPU-only build offloads nothing (llama_supports_gpu_offload() is false): no GPU copy of the tied output
    terms = tuple(x for x in m.terms if x.component is not Component.OUTPUT_COPY)
    return MemoryBreakdown(terms + tuple(engine.extra_buffer_terms(w)))
