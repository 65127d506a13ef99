"""Ollama (``ollama serve`` / ``ollama run``): llama.cpp's llama-server behind Ollama's scheduler.

Read at ollama/ollama v0.33.0-rc2 (fb30760996871fa9460115c753afd2c60d4ab0f7, 2026-08-21), which
pins llama.cpp b10488 (``LLAMA_CPP_VERSION``).  Since v0.30.0 (#16031, "Remove CGO engines, use
llama-server exclusively for GGML models") Ollama has no runner of its own for GGUF models: it
starts llama.cpp's ``llama-server`` and reads its log.  The cache g4sim models is therefore
llama.cpp's (``g4sim/engines/llamacpp.py``, reused here by call), with the settings Ollama passes:

* ``llm/llama_server.go`` ``startLlamaServer``: ``-c num_ctx x OLLAMA_NUM_PARALLEL``,
  ``-np OLLAMA_NUM_PARALLEL`` (no ``--kv-unified``, so every slot has its own stream: llama.cpp's
  SWA cache keeps ``pad256(window + n_ubatch)`` cells per slot), ``--cache-type-k`` and
  ``--cache-type-v`` both ``OLLAMA_KV_CACHE_TYPE`` (unset: llama.cpp's f16), ``--flash-attn``
  from ``LlamaServerFlashAttention`` (``OLLAMA_FLASH_ATTENTION`` unset: ``auto`` wherever
  ``ml/device.go`` ``FlashAttentionSupported`` -- CPU, Metal, CUDA compute >= 6.0 but 7.2, ROCm,
  Vulkan -- i.e. on), ``-b num_batch -ub num_batch`` (``appendBatchArgs``), ``-ngl num_gpu`` only
  when ``num_gpu`` is set (``api/types.go`` ``DefaultOptions``: ``NumGPU = -1``: no ``-ngl``, and
  llama-server's ``--fit`` places the layers).
* ``server/sched.go`` ``load``: ``OLLAMA_NUM_PARALLEL`` (``envconfig/config.go``: default 1);
  ``effectiveLlamaServerContext`` = ``min(num_ctx, n_ctx_train) x parallel``; ``getRunner``:
  ``num_ctx >= 4`` and, for a model with vision (every gemma4 tag), ``num_ctx >= 2048``;
  ``llm/server.go`` ``NewLlamaServer`` caps ``num_ctx`` at the model's trained context.
* ``server/sched.go`` ``automaticGenerationBatch`` (num_batch left to Ollama):
  ``generationBatchForContext`` = 512, 1024 above 4,096 and 2048 above 32,768 tokens of
  ``num_ctx x parallel``, stepped down to 1024 / 512 while ``PredictServerVRAM`` (file size + a
  crude f16 KV) exceeds 60 % / 75 % / 80 % of free VRAM; with flash attention off on CUDA, 512.
  ``bind`` applies the context rule (it has no device); ``ps_line`` applies the VRAM rule too.
  Every printed command pins ``num_batch``, so the plan it prints is the plan it runs.
* ``llm/llama_server.go`` ``NewLlamaServerRunner`` / ``appendMMProjArgs``: a gemma4 model's
  projector (``v.*``, ``mm.*``, ``a.*`` tensors) is always passed as ``--mmproj``, so the vision
  tower (and the audio tower of E2B / E4B) load whatever the prompt; on the GPU unless
  ``shouldDisableMMProjOffload`` (``num_gpu`` 0, or set below the model's layers + 1).  A published
  run confirms it ("the vision and audio encoders (about 1 GB) are loaded onto the GPU even though
  we only send text", gemma4:e4b-it-qat on a GTX 1070, Ollama >= 0.30.5, decision log D-002).
* ``server/routes.go`` (startup): the default ``num_ctx`` is 4,096 below 23 GiB of total VRAM,
  32,768 below 47 GiB, else 262,144 (``default_num_ctx``); ``OLLAMA_CONTEXT_LENGTH`` replaces it.
  ``OLLAMA_GPU_OVERHEAD`` only lowers that VRAM total (and a log line): llama-server's placement
  never sees it, so g4sim has no setting for it.
* llama.cpp b10488 ``common/fit.cpp`` ``common_params_fit_impl`` (``num_gpu`` unset): leave
  ``fit_params_target`` free per device -- 1,024 MiB (``common/common.h``), which Ollama replaces by
  projector + 1,024 MiB (``LLAMA_ARG_FIT_TARGET``, ``extraEnvsForStart``) -- filling layers back to
  front; for a MoE model first every layer with its experts in host memory, then experts back to
  the GPU from the last layer down (the same placement as ``--n-cpu-moe``).  g4sim places whole
  layers (fit may also put part of one more layer's FFN on the GPU).
* A CPU-only load (no GPU found: no GPU backend device, so llama-server offloads nothing) is
  llama.cpp's CPU path, priced by llamacpp.py's rule by call (``memory`` -> ``_llama_memory``): no
  GPU copy of the tied output, and weight repacking's extra buffers (Component.REPACKED_WEIGHTS,
  CPU_REPACK / AMX) for the device's ``cpu_features`` (``for_device``, as ``LlamaCppEngine``).
  Ollama leaves repacking at llama-server's default, on: ``startLlamaServer`` builds its flags
  ("minimal set, let llama-server auto-detect the rest") with no ``--repack`` / ``-nr`` /
  ``--no-repack``; the environment Ollama adds (``NewLlamaServerRunner``: ``ml.GetDevicesEnv``,
  ``LLAMA_MEDIA_MARKER``; ``extraEnvsForStart``: ``LLAMA_ARG_FIT_TARGET``) sets none, and no
  ``LLAMA_ARG_REPACK`` appears in Ollama's source; llama.cpp ``common/arg.cpp`` ``--repack`` /
  ``-nr, --no-repack`` (env ``LLAMA_ARG_REPACK``) default ``no_extra_bufts = false``
  (``common/common.h``).  The build does not drop it (``llama/server/CMakePresets.json`` preset
  ``cpu``: ``GGML_CPU_ALL_VARIANTS`` on; ``GGML_CPU_REPACK`` not set, ggml/CMakeLists.txt's
  default on).  ``SetupLlamaServerCommandEnv`` starts from ``os.Environ()``, so
  ``LLAMA_ARG_REPACK=0`` given to ``ollama serve`` reaches llama-server (g4sim's ``repack``
  setting).
* ``llm/llama_server.go`` ``memoryParsingWriter`` / ``MemorySize`` and ``cmd/cmd.go``
  ``ListRunningHandler``: ``ollama ps`` SIZE is the sum of llama-server's "model / KV / compute /
  output buffer size" log lines; VRAM those of GPU backends (not ``CPU*``, ``*_Host``, BLAS).  With
  every layer offloaded and no fit overflow SIZE = VRAM (the host-resident input embeddings are
  not counted); otherwise mmap'd weights are trimmed to the file's size, and a repacked copy is
  kept ("repacked copies such as CPU_REPACK are separate real allocations and must be left
  intact"; ``llm/llama_server_test.go`` "CPU-only mmap with repack is not trimmed").  PROCESSOR is
  ``round((SIZE - VRAM) / SIZE x 100)`` "% CPU/GPU".  The projector's weights are logged by clip as
  "model size", which that regex does not match (clip.cpp as vendored at v0.24.0): not in SIZE.
  Sizes print as ``format.HumanBytes`` (10^9 bytes per GB).

What g4sim's Ollama runs: the library's gemma4 tags, each a GGUF with its projector
(``gemma4:e2b``, ``e4b``, ``26b``, ``31b`` = ``*-it-q4_K_M``; ``latest`` = e4b; ``*-it-q8_0``,
``*-it-bf16``; ``*-it-qat`` = Q4_0 with QAT weights) and ``ollama create --quantize q4_K_S`` from
a bf16 tag (``fs/ggml/type.go`` ``ParseFileType``: f32, f16, q4_K_S, q4_K_M, q8_0).  The tag list
is not in Ollama's repository: the default tags come from its docs and tests (``gemma4:e2b``,
``e4b``, ``26b``, ``31b``, ``latest``), the suffixed ones from ollama.com/library pages and public
use (``gemma4:26b-a4b-it-q8_0`` 28 GB, ``26b-a4b-it-q4_K_M`` 17.99 GB, ``e4b-it-qat`` Q4_0,
``31b-it-bf16``...); that ``latest`` is e4b is an assumption (docs/context-length.mdx shows
``gemma4:latest`` at CONTEXT 131072, the E-models' maximum).  Not modelled: the MLX runner's tags
(``*-nvfp4``, ``*-mxfp8``: ``x/mlxrunner``), cloud tags, local GGUF imports, and the MTP draft
model some newer default tags carry (llama-server ``--spec-type draft-mtp``).

Before v0.30 (v0.20.0 - v0.24.0) Ollama ran Gemma 4 in its own Go runner, with a different cache:
``model/models/gemma4/model.go`` wraps ``kvcache.NewSWAMemCache(window, 4096)`` and a causal
cache; ``kvcache/causal.go`` keeps ``parallel x 4096 + batch`` cells on sliding layers.  g4sim
models v0.30 and later only.  No torch import.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar

from g4sim.analytic.components import Category, Component, Location
from g4sim.analytic.memory import MemoryBreakdown, MemoryTerm, weight_bytes_by_component
from g4sim.analytic.quant import get_kv_dtype, get_quant
from g4sim.engines.base import Caps, Engine, EngineError, Option, Parallel, Parsed, Workload, to_int
from g4sim.engines.llamacpp import (
    _CACHE_TYPE, CPU_FEATURES, LlamaCppEngine, _llama_memory, _weight_terms, cell_bytes, ggml_compute_dtype,
)
from g4sim.spec import ModelSpec, TextSpec
from g4sim.weightfiles import WeightFile
from g4sim.units import GiB, MiB

SOURCE = "ollama/ollama v0.33.0-rc2 (fb3076099687), llama.cpp b10488"

# Library tags (module docstring): the variant's short tag and the suffix of each published format.
_SIZE = {"e2b": "e2b", "e4b": "e4b", "26b-a4b": "26b-a4b", "31b": "31b"}
_DEFAULT_TAG = {"e2b": "e2b", "e4b": "e4b", "26b": "26b-a4b", "31b": "31b", "latest": "e4b"}
_TAG_QUANT = {"q4_k_m": "q4_K_M", "q8_0": "q8_0", "bf16": "bf16", "q4_0": "qat"}
_CREATE_QUANT = {"q4_k_s": "q4_K_S"}  # `ollama create --quantize` from the bf16 tag
OLLAMA_FORMATS = frozenset(_TAG_QUANT) | frozenset(_CREATE_QUANT)
_SUFFIX_QUANT = {"q4_k_m": "q4_k_m", "q8_0": "q8_0", "bf16": "bf16", "qat": "q4_0", "q4_0": "q4_0"}
_QUANTIZE = {"q4_k_m": "q4_k_m", "q4_k": "q4_k_m", "q4_k_s": "q4_k_s", "q8_0": "q8_0"}
_TAG = re.compile(r"^(?P<size>e2b|e4b|26b(?:-a4b)?|31b)(?:-it)?(?:-(?P<suffix>[a-z0-9_]+))?$")
_MLX_RUNNER = ("nvfp4", "mxfp4", "mxfp8", "mlx")

FIT_TARGET = 1024 * MiB  # llama.cpp common/common.h fit_params_target
MMPROJ_HEADROOM = 1 * GiB  # llm/llama_server.go mmprojOffloadHeadroom

_FALSE = {"0", "f", "F", "FALSE", "false", "False"}  # Go strconv.ParseBool
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_LLAMA_TRUE = {"on", "enabled", "true", "1"}  # llama.cpp common/arg.cpp is_truthy / is_falsey (env values)
_LLAMA_FALSE = {"off", "disabled", "false", "0"}
_IGNORED_ENV = {"OLLAMA_HOST", "OLLAMA_MODELS", "OLLAMA_KEEP_ALIVE", "OLLAMA_DEBUG", "OLLAMA_ORIGINS",
                "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_MAX_QUEUE", "OLLAMA_NOPRUNE", "OLLAMA_GPU_OVERHEAD",
                "OLLAMA_SCHED_SPREAD", "OLLAMA_LOAD_TIMEOUT", "OLLAMA_NOHISTORY", "OLLAMA_NO_CLOUD"}
_DEVICE_ENV = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
_SAMPLING = {"temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n", "repeat_penalty",
             "presence_penalty", "frequency_penalty", "seed", "stop", "num_predict", "num_keep", "num_thread",
             "use_mmap", "mirostat", "mirostat_eta", "mirostat_tau", "tfs_z", "penalize_newline"}
_RUN_FLAGS = {"--verbose", "--nowordwrap", "--insecure", "--hidethinking", "--think", "--keepalive", "--format",
              "--dimensions", "--truncate"}
_RUN_VALUED = {"--keepalive", "--format", "--dimensions"}


def generation_batch_for_context(effective_ctx: int) -> int:
    """server/sched.go generationBatchForContext: num_batch for num_ctx x parallel tokens."""
    return 2048 if effective_ctx > 32768 else 1024 if effective_ctx > 4096 else 512


def effective_num_ctx(t: TextSpec, num_ctx: int) -> int:
    """The context llama-server gets per slot: at least 2048 (vision model), at most the trained context."""
    return min(max(num_ctx, 2048), t.max_position_embeddings)


def default_num_ctx(device, gpus: int = 1) -> int:
    """server/routes.go: Ollama's default num_ctx from the total VRAM it discovers (4k / 32k / 256k)."""
    if device.kind == "cpu":
        vram = 0
    elif getattr(device, "unified_memory", False):  # Metal reports its recommended working set
        vram = device.usable_memory_bytes * gpus
    else:
        vram = device.memory_bytes * gpus
    return 262144 if vram >= 47 * GiB else 32768 if vram >= 23 * GiB else 4096


def human_bytes(b: int) -> str:
    """format/bytes.go HumanBytes: decimal units, whole numbers from 10 up, else one decimal."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if b >= size:
            value = b / size
            if value >= 10 or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{b} B"


def tag_for(spec: ModelSpec, quant: str) -> str:
    """The library tag a plan pulls (the bf16 tag for formats `ollama create --quantize` makes)."""
    size = _SIZE.get(spec.name, spec.name)
    return f"gemma4:{size}-it-{_TAG_QUANT.get(get_quant(quant).name, 'bf16')}"


def parse_tag(tag: str) -> tuple[str, str]:
    """(variant, format) of a gemma4 tag; EngineError names what g4sim reads."""
    name, _, t = tag.partition(":")
    if name.rsplit("/", 1)[-1] != "gemma4" or (name.count("/") and not name.startswith("registry.ollama.ai/")):
        raise EngineError(f"{tag!r} is not a gemma4 tag of Ollama's library (g4sim reads gemma4:e2b, gemma4:e4b, "
                          "gemma4:26b, gemma4:31b and their -it-q4_K_M / -it-q8_0 / -it-bf16 / -it-qat tags)")
    t = (t or "latest").lower()
    if "cloud" in t:
        raise EngineError(f"{tag} runs on ollama.com, not on this machine")
    if any(t.endswith(s) for s in _MLX_RUNNER):
        raise EngineError(f"{tag} runs in Ollama's MLX runner (x/mlxrunner), which g4sim does not model; "
                          "plan MLX with --engine mlx")
    if t in _DEFAULT_TAG:
        return _DEFAULT_TAG[t], "q4_k_m"
    m = _TAG.match(t)
    if m is None:
        raise EngineError(f"{tag}: not a Gemma 4 variant g4sim models (gemma4:e2b, e4b, 26b, 31b)")
    model = _DEFAULT_TAG.get(m["size"], m["size"])
    suffix = m["suffix"] or "q4_k_m"
    if suffix not in _SUFFIX_QUANT:
        raise EngineError(f"{tag}: g4sim reads the -it-q4_K_M, -it-q8_0, -it-bf16 and -it-qat tags, not -{suffix}")
    return model, _SUFFIX_QUANT[suffix]


@lru_cache(maxsize=1024)
def _llama(n_ubatch: int, n_seq_max: int, flash_attn: bool, n_gpu_layers: int, n_cpu_moe: int,
           cuda_context_bytes: int, repack: bool = True, cpu_features: str | None = None,
           gpu_host_buffer: bool = True) -> LlamaCppEngine:
    """The llama-server Ollama starts (one stream per slot, the same K and V type, no --swa-full; weight
    repacking as llama-server's default unless LLAMA_ARG_REPACK says otherwise, for the device's CPU)."""
    return LlamaCppEngine(n_ubatch=n_ubatch, n_seq_max=n_seq_max, kv_unified=False, flash_attn=flash_attn,
                          swa_full=False, cache_type_v=None, n_gpu_layers=n_gpu_layers, n_cpu_moe=n_cpu_moe,
                          cuda_context_bytes=cuda_context_bytes, repack=repack, cpu_features=cpu_features,
                          gpu_host_buffer=gpu_host_buffer)


@dataclass(frozen=True)
class PsLine:
    """What ``ollama ps`` prints for a loaded model (NAME, SIZE, PROCESSOR, CONTEXT) and why."""

    name: str
    size_bytes: int
    vram_bytes: int
    context: int
    num_batch: int
    gpu_layers: int  # of the model's layers + 1 (the output), on the GPU
    n_cpu_moe: int  # layers whose experts stay in host memory
    fit: bool  # llama-server's fit placed the layers (num_gpu unset and the model did not fit whole)

    @property
    def processor(self) -> str:
        """cmd/cmd.go ListRunningHandler (Go's math.Round: halves away from zero)."""
        if self.vram_bytes == 0:
            return "100% CPU"
        if self.vram_bytes == self.size_bytes:
            return "100% GPU"
        if self.vram_bytes > self.size_bytes:
            return "Unknown"
        cpu = math.floor((self.size_bytes - self.vram_bytes) / self.size_bytes * 100 + 0.5)
        return f"{cpu}%/{100 - cpu}% CPU/GPU"

    @property
    def size(self) -> str:
        return human_bytes(self.size_bytes)

    def __str__(self) -> str:
        return f"{self.name}    {self.size}    {self.processor}    {self.context}"


@dataclass(frozen=True)
class OllamaEngine(Engine):
    name: ClassVar[str] = "ollama"
    description: ClassVar[str] = "Ollama >= 0.30: llama-server with Ollama's num_ctx x parallel, num_batch and fit"
    caps: ClassVar[Caps] = Caps(weight_formats=OLLAMA_FORMATS, kv_dtypes=frozenset(_CACHE_TYPE),
                                device_kinds=frozenset({"gpu", "cpu", "soc"}), vendors=None,
                                parallel=Parallel.LAYER, host_offload=True)
    options: ClassVar[tuple[Option, ...]] = (
        Option("flash_attn", ("OLLAMA_FLASH_ATTENTION",), "flash attention (1 on, 0 off)",
               "envconfig/config.go FlashAttention unset -> llm/llama_server.go LlamaServerFlashAttention: "
               "--flash-attn auto where ml.FlashAttentionSupported (on)"),
        Option("n_ubatch", ("num_batch",), "tokens per compute step (-b and -ub)",
               "server/sched.go automaticGenerationBatch: 512; 1024 above 4,096 and 2048 above 32,768 tokens of "
               "num_ctx x parallel, lower when VRAM is short"),
        Option("n_gpu_layers", ("num_gpu",), "layers on the GPU (-ngl)",
               "api/types.go DefaultOptions NumGPU = -1: no -ngl, llama-server's fit places them (all that fit)"),
        Option("n_cpu_moe", ("LLAMA_ARG_N_CPU_MOE",), "keep the experts of the first N layers on the host",
               "llama.cpp's env for --n-cpu-moe (common/arg.cpp), passed to llama-server with `ollama serve`'s "
               "environment (llm/llama_server.go SetupLlamaServerCommandEnv); unset: 0"),
        Option("repack", ("LLAMA_ARG_REPACK",), "CPU weight repacking (extra CPU_REPACK / AMX buffers, CPU only)",
               "llm/llama_server.go startLlamaServer passes no --repack / --no-repack: llama-server's default "
               "(common/common.h no_extra_bufts = false, on); LLAMA_ARG_REPACK=0 in `ollama serve`'s environment "
               "(passed through by SetupLlamaServerCommandEnv) turns it off"),
    )
    command_names: ClassVar[tuple[str, ...]] = ("ollama",)
    file_kinds: ClassVar[frozenset[str]] = frozenset()  # g4sim plans library tags, not local GGUF imports
    # settings that are the workload's own fields: OLLAMA_NUM_PARALLEL = --batch, num_ctx = --ctx,
    # OLLAMA_KV_CACHE_TYPE = --kv-dtype
    workload_settings: ClassVar[dict[str, str]] = {"OLLAMA_NUM_PARALLEL": "batch", "num_ctx": "ctx",
                                                   "OLLAMA_KV_CACHE_TYPE": "kv_dtype"}
    flash_attn: bool = True
    n_ubatch: int | None = None  # None: Ollama's automatic num_batch
    n_gpu_layers: int | None = None  # None: num_gpu unset (every layer when it fits; else llama-server's fit)
    n_cpu_moe: int = 0
    n_seq_max: int = 1  # OLLAMA_NUM_PARALLEL: bound to the workload's batch
    fit_placed: bool = False  # ps_line only: the layers were placed by llama-server's fit (projector stays on GPU)
    repack: bool = True  # llama-server's --repack default (LLAMA_ARG_REPACK unset)
    # The CPU feature set ggml-cpu repacks for (llamacpp.py CPU_FEATURES); None: the device's, bound by for_device
    # as LlamaCppEngine.for_device does (the profile's cpu_features), else llamacpp.DEFAULT_CPU_FEATURES.
    cpu_features: str | None = None
    gpu_host_buffer: bool = True  # False on Apple silicon (Metal): LlamaCppEngine.gpu_host_buffer, bound by for_device
    ple_location: Location = Location.HOST
    cuda_context_bytes: int = 300 * MiB  # as llama.cpp (llamacpp.py)
    allocator_reserve_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.n_ubatch is not None and self.n_ubatch < 1:
            raise EngineError(f"num_batch {self.n_ubatch} must be a positive integer")
        if self.n_gpu_layers is not None and self.n_gpu_layers < 0:
            raise EngineError(f"num_gpu {self.n_gpu_layers} must be 0 or more layers")
        if self.n_cpu_moe < 0 or self.n_seq_max < 1:
            raise EngineError("LLAMA_ARG_N_CPU_MOE takes 0 or more layers; OLLAMA_NUM_PARALLEL 1 or more")
        if self.cpu_features is not None and self.cpu_features not in CPU_FEATURES:
            raise EngineError(f"cpu_features {self.cpu_features!r}; g4sim knows: {', '.join(CPU_FEATURES)}")

    # ---- settings the workload fixes ---------------------------------------------------
    def auto_num_batch(self, t: TextSpec, ctx: int, batch: int) -> int:
        if self.n_ubatch is not None:
            return self.n_ubatch
        if not self.flash_attn:  # automaticGenerationBatch, CUDA without flash attention
            return 512
        return generation_batch_for_context(effective_num_ctx(t, ctx) * batch)

    def bind(self, w: Workload) -> OllamaEngine:
        ub = self.auto_num_batch(w.spec.text, w.ctx, w.batch)
        if (self.n_seq_max, self.n_ubatch) == (w.batch, ub):
            return self
        return replace(self, n_seq_max=w.batch, n_ubatch=ub)

    def for_device(self, device) -> OllamaEngine:
        """llama-server's CPU feature set (which weights ggml-cpu repacks) is the device's, unless it was set:
        LlamaCppEngine.for_device's rule, by call."""
        server = self._server_defaults().for_device(device)
        if (server.cpu_features, server.gpu_host_buffer) == (self.cpu_features, self.gpu_host_buffer):
            return self
        return replace(self, cpu_features=server.cpu_features, gpu_host_buffer=server.gpu_host_buffer)

    def _server_defaults(self) -> LlamaCppEngine:
        return _llama(512, 1, True, 999, 0, self.cuda_context_bytes, self.repack, self.cpu_features,
                      self.gpu_host_buffer)

    def _server(self, t: TextSpec, ctx: int, batch: int) -> LlamaCppEngine:
        ngl = 999 if self.n_gpu_layers is None else self.n_gpu_layers
        return _llama(self.auto_num_batch(t, ctx, batch), batch, self.flash_attn, ngl, self.n_cpu_moe,
                      self.cuda_context_bytes, self.repack, self.cpu_features, self.gpu_host_buffer)

    # ---- what it can run -------------------------------------------------------------
    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        if device.kind == "soc" and device.vendor not in ("apple", "nvidia"):
            return (f"ollama does not run on {device.name} ({device.kind}, {device.vendor}): Ollama ships for macOS "
                    "(Apple silicon), Linux and Windows (CPUs, NVIDIA / AMD GPUs, Jetson), not for phones")
        if device.kind == "gpu" and device.vendor not in ("nvidia", "amd"):
            return f"ollama runs on NVIDIA (CUDA) and AMD (ROCm) GPUs, not {device.name} ({device.vendor})"
        reason = super().compatibility(w, device, gpus)
        if reason is None:
            reason = LlamaCppEngine.compatibility(self._server(w.spec.text, w.ctx, w.batch), w, device, gpus)
            if reason is not None and "llama.cpp refuses" in reason:
                reason = reason.replace("(-fa on)", "(OLLAMA_FLASH_ATTENTION=1)")
        if reason is not None and "does not load" in reason and get_quant(w.quant).family == "gguf":
            reason += (" (the library's gemma4 tags and `ollama create --quantize`); other GGUF types: "
                       "--engine llamacpp")
        return reason

    # ---- weights -----------------------------------------------------------------------
    def _towers_on_gpu(self, t: TextSpec) -> bool:
        """llm/llama_server.go shouldDisableMMProjOffload: num_gpu 0, or set below the layers + 1."""
        if self.fit_placed or self.n_gpu_layers is None:
            return True
        return 0 < t.num_layers + 1 <= self.n_gpu_layers

    def weight_terms(self, spec: ModelSpec, quant: str, *, vision: bool, audio: bool,
                     file: WeightFile | None = None) -> list[MemoryTerm]:
        if file is not None:  # file_kinds is empty: compatibility() turns a given file away before pricing
            raise EngineError(f"{self.name} plans library tags, not a given weight file ({file.name})")
        ngl = 999 if self.n_gpu_layers is None else self.n_gpu_layers
        terms = list(_weight_terms(spec, quant, False, False, ngl, self.n_cpu_moe))
        towers = weight_bytes_by_component(spec, quant, vision=spec.vision is not None, audio=spec.audio is not None)
        where = Location.ACCELERATOR if self._towers_on_gpu(spec.text) else Location.HOST
        for c in (Component.VISION_TOWER, Component.AUDIO_TOWER):
            if towers.get(c.value):
                terms.append(MemoryTerm(c, towers[c.value], where,
                                        "projector F16, passed as --mmproj whatever the prompt (llm/llama_server.go); "
                                        + ("offloaded" if where is Location.ACCELERATOR else "--no-mmproj-offload")))
        return terms

    # ---- KV cache ----------------------------------------------------------------------
    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        return self._server(t, ctx, self.n_seq_max).kv_cells(t, layer, effective_num_ctx(t, ctx))

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        """llama.cpp's cells per slot; each layer's K/V on its layer's device (llama-kv-cache.cpp,
        ``dev_layer(il)`` with offload_kqv): the layers -ngl leaves on the host keep theirs there."""
        server = self._server(t, ctx, batch)
        n_ctx = effective_num_ctx(t, ctx)
        if not self.flash_attn and get_kv_dtype(kv_dtype).block > 1:
            raise EngineError(f"llama.cpp: a quantized V cache ({kv_dtype}) requires flash attention")
        ngl = 999 if self.n_gpu_layers is None else self.n_gpu_layers
        gpu_start = max(t.num_layers + 1 - ngl, 0)
        out = []
        for component, sliding in ((Component.KV_SLIDING, True), (Component.KV_FULL, False)):
            layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
            cells = server.kv_cells(t, layers[0], n_ctx) if layers else 0
            for where in (Location.ACCELERATOR, Location.HOST):
                on = [i for i in layers if (i >= gpu_start) == (where is Location.ACCELERATOR)]
                if where is Location.HOST and not on:
                    continue
                per_cell = sum(sum(cell_bytes(t, i, kv_dtype, kv_dtype, self.flash_attn)) for i in on)
                out.append(MemoryTerm(component, cells * per_cell * batch, where,
                                      f"{len(on)} layers x {batch} slots x {cells} cells (num_ctx {n_ctx} padded to "
                                      "256" + ("; SWA = pad256(min(n_ctx, window + num_batch))" if sliding else "")
                                      + f") x K+V {kv_dtype}" + ("" if where is Location.ACCELERATOR
                                                                 else "; layers left on the host by num_gpu")))
        return out

    # ---- compute buffers and overhead ----------------------------------------------------------
    def chunk_tokens(self, ctx: int) -> int:
        return self.n_ubatch or 512

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        return self._server(t, ctx, batch).activation_terms(t, ctx=effective_num_ctx(t, ctx), batch=batch, quant=quant)

    def overhead_terms(self, terms, *, device_kind: str) -> list[MemoryTerm]:
        return self._server_defaults().overhead_terms(terms, device_kind=device_kind)

    # ---- llama-server's CPU-side buffers ---------------------------------------------------------------------
    def memory(self, w: Workload, device_kind: str = "gpu") -> MemoryBreakdown:
        """Engine.memory, and on a CPU llama.cpp's CPU-only path (llamacpp.py ``_llama_memory``, by call): no
        GPU copy of the tied output, plus the extra buffers weight repacking allocates (module docstring); on
        Apple silicon the repacked copy of the weights llama-server leaves on the host (LlamaCppEngine.memory)."""
        return _llama_memory(self, w, device_kind)

    def extra_buffer_terms(self, w: Workload) -> list[MemoryTerm]:
        """The CPU_REPACK / AMX buffers of the llama-server Ollama starts (LlamaCppEngine.extra_buffer_terms)."""
        return self._server(w.spec.text, w.ctx, w.batch).extra_buffer_terms(w)

    def host_extra_buffer_terms(self, w: Workload) -> list[MemoryTerm]:
        """Its repacked copy of the weights left on the host (LlamaCppEngine.host_extra_buffer_terms: Metal)."""
        return self._server(w.spec.text, w.ctx, w.batch).host_extra_buffer_terms(w)

    # ---- what `ollama ps` shows ------------------------------------------------------------
    def user_view(self, w: Workload, device, display_attached: bool = True) -> tuple[str, ...]:
        """``ollama ps`` as it would print after ``ollama run`` of this plan (computed, not measured)."""
        ps = self.ps_line(w, device, display_attached)
        return ("ollama ps (predicted):", f"NAME  {ps.name}    SIZE  {ps.size}    PROCESSOR  {ps.processor}    "
                f"CONTEXT  {ps.context}")

    def ps_line(self, w: Workload, device, display_attached: bool = True) -> PsLine:
        """SIZE, PROCESSOR and CONTEXT of ``ollama ps`` after ``ollama run`` of this plan on one ``device``.

        With ``num_batch`` unset, Ollama's VRAM step-down applies; with ``num_gpu`` unset and the model
        too large, llama-server's fit places the layers; on a CPU the repacked copy is the device's (module
        docstring)."""
        t = w.spec.text
        gpu = device.kind != "cpu"
        free = device.usable_bytes(display_attached) if gpu else 0
        eng = self.for_device(device)
        if self.n_ubatch is None:
            eng = replace(eng, n_ubatch=self._automatic_batch(w, free))
        eng = eng.bind(w)
        fit = False
        if gpu and self.n_gpu_layers is None and self.n_cpu_moe == 0:
            eng, fit = eng._fit(w, device.kind, free)
        m = eng.memory(w, device.kind)
        drop = {Component.CUDA_CONTEXT, Component.VISION_TOWER, Component.AUDIO_TOWER}
        vram = sum(x.bytes for x in m.terms if x.location is Location.ACCELERATOR and x.component not in drop) if gpu \
            else 0
        ngl = t.num_layers + 1 if eng.n_gpu_layers is None else min(eng.n_gpu_layers, t.num_layers + 1)
        if gpu and ngl == t.num_layers + 1 and not fit:
            size = vram  # MemorySize: every layer offloaded, no overflow -> total = vram
        else:  # every buffer, mmap'd weights trimmed to the file's size; a repacked copy (CPU_REPACK) is kept
            text_file = sum(weight_bytes_by_component(w.spec, w.quant).values())
            size = text_file + sum(x.bytes for x in m.terms if (x.category is not Category.WEIGHTS
                                                                or x.component is Component.REPACKED_WEIGHTS)
                                   and x.component not in drop)
        return PsLine(tag_for(w.spec, w.quant), size, vram, effective_num_ctx(t, w.ctx), eng.n_ubatch,
                      ngl if gpu else 0, eng.n_cpu_moe, fit)

    def _automatic_batch(self, w: Workload, free: int) -> int:
        """server/sched.go automaticGenerationBatch with PredictServerVRAM (file + 2 x layers x min KV
        heads x hidden / heads x ctx x 2 B)."""
        t = w.spec.text
        if not self.flash_attn:
            return 512
        ctx = effective_num_ctx(t, w.ctx) * w.batch
        predicted = sum(weight_bytes_by_component(w.spec, w.quant).values()) + 2 * t.num_layers * min(
            t.kv_heads(i) for i in range(t.num_layers)) * (t.hidden_size // t.num_heads) * ctx * 2
        batch = generation_batch_for_context(ctx)

        def fits(b: int) -> bool:
            if free <= 0:
                return True
            threshold = free * 80 // 100
            head = 60 if b >= 2048 else 75 if b >= 1024 else 100
            surcharge = 2 * GiB if b >= 2048 else 768 * MiB if b >= 1024 else 0
            return predicted <= threshold and predicted <= free * head // 100 and surcharge <= threshold - predicted

        while batch > 512 and not fits(batch):
            batch = 1024 if batch > 1024 else 512
        return batch

    def _fit(self, w: Workload, kind: str, free: int) -> tuple[OllamaEngine, bool]:
        """common/fit.cpp: whole layers back to front (MoE: dense parts first, then experts)."""
        t = w.spec.text
        target = free - FIT_TARGET  # Ollama's target adds the projector, which the memory here includes

        def used(e: OllamaEngine) -> int:
            return e.memory(w, kind).total(Location.ACCELERATOR)

        if used(self) <= target:
            return self, False
        top = t.num_layers + 1
        if t.enable_moe_block:
            dense_only = replace(self, n_gpu_layers=top, n_cpu_moe=t.num_layers, fit_placed=True)
            if used(dense_only) <= target:
                lo, hi = 0, t.num_layers  # fewest layers whose experts stay on the host
                while lo < hi:
                    mid = (lo + hi) // 2
                    if used(replace(dense_only, n_cpu_moe=mid)) <= target:
                        hi = mid
                    else:
                        lo = mid + 1
                return replace(dense_only, n_cpu_moe=lo), True
            base = dense_only
        else:
            base = replace(self, fit_placed=True)
        lo, hi = 0, top  # most layers on the GPU
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if used(replace(base, n_gpu_layers=mid)) <= target:
                lo = mid
            else:
                hi = mid - 1
        return replace(base, n_gpu_layers=lo), True

    # ---- commands ---------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        fmt = get_quant(w.quant).name
        env = [f"OLLAMA_NUM_PARALLEL={w.batch}", f"OLLAMA_KV_CACHE_TYPE={_CACHE_TYPE[get_kv_dtype(w.kv_dtype).name]}",
               f"OLLAMA_FLASH_ATTENTION={1 if self.flash_attn else 0}"]
        if self.n_cpu_moe:
            env.append(f"LLAMA_ARG_N_CPU_MOE={self.n_cpu_moe}")
        if not self.repack:
            env.append("LLAMA_ARG_REPACK=0")
        if gpus > 1:
            var = "ROCR_VISIBLE_DEVICES" if device.vendor == "amd" else "CUDA_VISIBLE_DEVICES"
            env.append(f"{var}={','.join(str(i) for i in range(gpus))}")
        name = f"gemma4-{_SIZE.get(w.spec.name, w.spec.name)}-g4sim"
        lines = [" ".join(env) + " ollama serve &", "cat > Modelfile <<'EOF'", f"FROM {tag_for(w.spec, fmt)}",
                 f"PARAMETER num_ctx {w.ctx}",
                 f"PARAMETER num_batch {self.auto_num_batch(w.spec.text, w.ctx, w.batch)}"]
        if self.n_gpu_layers is not None:
            lines.append(f"PARAMETER num_gpu {self.n_gpu_layers}")
        quantize = f" --quantize {_CREATE_QUANT[fmt]}" if fmt in _CREATE_QUANT else ""
        lines += ["EOF", f"ollama create {name}{quantize} -f Modelfile", f"ollama run {name}"]
        return "\n".join(lines)

    def compute_dtype_on(self, quant: str, device) -> str:
        return ggml_compute_dtype(self, quant, device) or super().compute_dtype_on(quant, device)

    @classmethod
    def published_settings(cls, row: dict[str, str]) -> dict[str, Any]:
        """num_batch, where the published run states its micro-batch (Ollama's flash attention is its own choice)."""
        return {"n_ubatch": int(row["micro_batch"])} if row.get("micro_batch") else {}

    @classmethod
    def recognises(cls, text: str) -> bool:
        for line in _logical_lines(text):
            try:
                argv = shlex.split(line, comments=True)
            except ValueError:
                continue
            argv = _strip_env(argv)[1]
            if argv and argv[0].rsplit("/", 1)[-1] == "ollama":
                return True
        return False

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        env: dict[str, str] = {}
        params: dict[str, str] = {}
        created: dict[str, tuple[str | None, str | None]] = {}  # name -> (FROM tag, --quantize)
        from_tag: str | None = None
        run: str | None = None
        for line in _logical_lines(text):
            head = line.strip()
            word = head.split(None, 1)[0].upper() if head else ""
            if word == "FROM":  # a Modelfile directive (heredoc body or a pasted Modelfile)
                from_tag = head.split(None, 1)[1].strip() if len(head.split()) > 1 else None
                continue
            if word == "PARAMETER":
                parts = head.split()
                if len(parts) != 3:
                    raise EngineError(f"cannot read {head!r}: PARAMETER takes a name and a value")
                _parameter(params, parts[1].lower(), parts[2])
                continue
            if word in ("EOF", "TEMPLATE", "SYSTEM", "LICENSE", "MESSAGE", "ADAPTER", "") or head.startswith("#"):
                if word == "ADAPTER":
                    raise EngineError("g4sim does not plan Modelfile ADAPTER (LoRA) lines")
                continue
            if head.lower().startswith("/set parameter"):  # inside `ollama run`
                parts = head.split()
                if len(parts) != 4:
                    raise EngineError(f"cannot read {head!r}: /set parameter takes a name and a value")
                _parameter(params, parts[2].lower(), parts[3])
                continue
            try:
                argv = shlex.split(line, comments=True)
            except ValueError as exc:
                raise EngineError(f"cannot read the command {line!r}: {exc}") from None
            assigned, argv = _strip_env(argv)
            if not argv or argv[0].rsplit("/", 1)[-1] != "ollama":
                if argv and argv[0] in ("cat", "printf", "echo", "tee"):
                    continue  # writing the Modelfile
                if assigned and not argv:
                    env.update(assigned)
                    continue
                raise EngineError(f"g4sim reads ollama serve / create / run lines and a Modelfile, "
                                  f"not {line.strip()!r}")
            env.update(assigned)
            sub, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
            if sub == "serve":
                if args:
                    raise EngineError(f"unsupported flag {args[0]!r} for ollama serve")
            elif sub == "create":
                created.update(_create(args))
            elif sub == "run":
                run = _run(args)
            elif sub in ("pull", "ps", "stop", "list", "show"):
                continue
            else:
                raise EngineError(f"g4sim reads ollama serve / create / run, not `ollama {sub}`")
        if run is None and from_tag is None:
            raise EngineError("the command runs no model: add `ollama run gemma4:TAG`")
        quantize = None
        tag = run
        if run in created:  # `ollama create NAME -f Modelfile` then `ollama run NAME`
            tag, quantize = created[run]
            tag = tag or from_tag
        elif run is None:  # a Modelfile alone
            tag = from_tag
        if tag is None:
            raise EngineError(f"cannot tell which tag {run!r} was created from: add its Modelfile (FROM gemma4:TAG)")
        if tag.startswith((".", "/", "~")) or tag.lower().endswith(".gguf"):
            raise EngineError(f"g4sim plans Ollama's library tags, not a local file ({tag}); plan the GGUF with "
                              "llama-server (--engine llamacpp), which Ollama runs underneath")
        model, quant = parse_tag(tag)
        if quantize is not None:
            if quant not in ("bf16",):
                raise EngineError(f"ollama create --quantize quantizes an F16 / BF16 model, not {tag}")
            quant = quantize
        settings: dict[str, Any] = {}
        kv = "fp16"  # llama.cpp's default cache type when OLLAMA_KV_CACHE_TYPE is unset
        batch = 1
        ctx = None
        gpus = None
        for k, v in env.items():
            if k == "OLLAMA_NUM_PARALLEL":
                batch = to_int(k, v)
                if batch < 1:
                    raise EngineError(f"{k}={v}: give 1 or more parallel requests")
            elif k == "OLLAMA_KV_CACHE_TYPE":
                back = {t: f for f, t in _CACHE_TYPE.items()}
                if v.lower() not in back:
                    raise EngineError(f"{k}={v!r}; g4sim plans: {', '.join(sorted(back))}")
                kv = back[v.lower()]
            elif k == "OLLAMA_FLASH_ATTENTION":
                settings["flash_attn"] = v not in _FALSE  # envconfig BoolWithDefault: unparsable -> true
            elif k == "OLLAMA_CONTEXT_LENGTH":
                ctx = to_int(k, v)
            elif k == "LLAMA_ARG_N_CPU_MOE":
                settings["n_cpu_moe"] = to_int(k, v)
            elif k == "LLAMA_ARG_REPACK":  # common/arg.cpp: parse_bool_value (is_truthy / is_falsey), else refused
                if v not in _LLAMA_TRUE | _LLAMA_FALSE:
                    raise EngineError(f"{k}={v!r}: llama-server refuses it (on / off, true / false, 1 / 0)")
                settings["repack"] = v in _LLAMA_TRUE
            elif k in _DEVICE_ENV:
                gpus = len([d for d in v.split(",") if d.strip()])
            elif k not in _IGNORED_ENV:
                raise EngineError(f"g4sim does not plan {k}; it reads OLLAMA_NUM_PARALLEL, OLLAMA_KV_CACHE_TYPE, "
                                  "OLLAMA_FLASH_ATTENTION, OLLAMA_CONTEXT_LENGTH, LLAMA_ARG_N_CPU_MOE, "
                                  "LLAMA_ARG_REPACK and CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES")
        if "num_ctx" in params:
            ctx = to_int("num_ctx", params["num_ctx"])
        if "num_batch" in params:
            settings["n_ubatch"] = to_int("num_batch", params["num_batch"])
        if "num_gpu" in params:
            n = to_int("num_gpu", params["num_gpu"])
            if n >= 0:  # -1: Ollama's default (no -ngl)
                settings["n_gpu_layers"] = n
        if "main_gpu" in params:
            gpus = 1
        if ctx is not None and ctx < 1:
            raise EngineError(f"num_ctx {ctx} must be a positive number of tokens")
        return Parsed(cls(**settings), model, quant, kv, ctx, batch, gpus, None)


def _logical_lines(text: str) -> list[str]:
    return [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def _strip_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading NAME=VALUE assignments (and `env` / `sudo -E`) of a shell line."""
    env: dict[str, str] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("env", "sudo", "-E", "nohup", "exec"):
            i += 1
            continue
        name, eq, value = tok.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            env[name] = value
            i += 1
            continue
        break
    rest = [a for a in argv[i:] if a not in ("&", "&&")]
    return env, rest


def _parameter(params: dict[str, str], name: str, value: str) -> None:
    if name in ("num_ctx", "num_batch", "num_gpu", "main_gpu"):
        params[name] = value
    elif name not in _SAMPLING:
        raise EngineError(f"g4sim does not plan PARAMETER {name}; it reads num_ctx, num_batch, num_gpu "
                          "(and ignores sampling parameters)")


def _create(args: list[str]) -> dict[str, tuple[str | None, str | None]]:
    name, quantize = None, None
    i = 0
    while i < len(args):
        a = args[i]
        flag, eq, value = a.partition("=")
        if flag in ("-f", "--file", "-q", "--quantize"):
            if not eq:
                if i + 1 >= len(args):
                    raise EngineError(f"ollama create {flag} needs a value")
                value = args[i + 1]
                i += 1
            if flag in ("-q", "--quantize"):
                if value.lower() not in _QUANTIZE:
                    raise EngineError(f"ollama create --quantize {value}: Ollama makes q4_K_M, q4_K_S and q8_0")
                quantize = _QUANTIZE[value.lower()]
        elif a.startswith("-"):
            raise EngineError(f"unsupported flag {a!r} for ollama create")
        elif name is None:
            name = a
        i += 1
    if name is None:
        raise EngineError("ollama create needs a model name")
    return {name: (None, quantize)}


def _run(args: list[str]) -> str:
    model = None
    i = 0
    while i < len(args):
        a = args[i]
        flag = a.partition("=")[0]
        if a.startswith("-"):
            if flag not in _RUN_FLAGS:
                raise EngineError(f"unsupported flag {a!r} for ollama run")
            if flag in _RUN_VALUED and "=" not in a:
                i += 1
        elif model is None:
            model = a
        i += 1  # the rest is the prompt
    if model is None:
        raise EngineError("ollama run needs a model (gemma4:TAG)")
    return model
