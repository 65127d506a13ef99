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
* The compute buffer is estimated, not read from the source (it under-estimates small models): the
  largest of the micro-batch's logits (n_ubatch x vocab x 4 B, reserved for a full micro-batch of
  outputs), its MLP / MoE intermediates, and, without flash attention, the F32 attention scores
  n_kv x n_ubatch x heads.

Runs on every device kind (CUDA, ROCm, Metal, Vulkan, CPU).  No torch import.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from g4sim.analytic.components import Component, Location
from g4sim.analytic.memory import MemoryTerm, priced_tensors, weight_bytes_by_component
from g4sim.analytic.quant import QUANT_FORMATS, get_kv_dtype, get_quant

from g4sim.engines.base import (
    HF_REPOS, Caps, Engine, EngineError, Option, Parallel, Parsed, Workload, flag_values, join_command,
    missing_towers, model_from_name, split_command, to_int,
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


def pad(n: int, to: int = CTX_PAD) -> int:
    return -(-n // to) * to


def cache_type(flag: str, value: str) -> str:
    back = {v: k for k, v in _CACHE_TYPE.items()}
    if value not in back:
        raise EngineError(f"{flag} {value!r}; g4sim plans: {', '.join(sorted(back))}")
    return back[value]


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
    )
    command_names: ClassVar[tuple[str, ...]] = ("llama-server", "llama-cli")
    file_kinds: ClassVar[frozenset[str]] = frozenset({"gguf"})
    n_ubatch: int = 512
    n_seq_max: int = 1  # parallel slots (-np): bound to the workload's batch
    kv_unified: bool = False  # llama-server with an explicit -np (g4sim always prints -np)
    flash_attn: bool = True
    swa_full: bool = False  # llama-server's default; the C API's is True
    cache_type_v: str | None = None  # None: same as the KV dtype asked for
    n_gpu_layers: int = 999
    n_cpu_moe: int = 0
    ple_location: Location = Location.HOST
    cuda_context_bytes: int = 300 * MiB  # ggml's CUDA context + cuBLAS handles (no torch)
    allocator_reserve_fraction: float = 0.0  # ggml allocates exact buffers

    def __post_init__(self) -> None:
        for flag, v in (("-ub", self.n_ubatch), ("-np", self.n_seq_max)):
            if v < 1:
                raise EngineError(f"{flag} {v} must be a positive integer")
        if self.n_gpu_layers < 0 or self.n_cpu_moe < 0:
            raise EngineError("-ngl and --n-cpu-moe take a count of layers (0 or more)")
        if self.cache_type_v is not None and self.cache_type_v not in _CACHE_TYPE:
            raise EngineError(f"-ctv {self.cache_type_v!r}; valid: {', '.join(sorted(_CACHE_TYPE))}")

    def bind(self, w: Workload) -> LlamaCppEngine:
        return self if self.n_seq_max == w.batch else replace(self, n_seq_max=w.batch)

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
        n_ctx = self.n_ctx(ctx)
        if t.is_sliding(layer) and not self.swa_full:
            seqs = self.n_seq_max if self.kv_unified else 1
            return pad(min(n_ctx, t.sliding_window * seqs + self.n_ubatch))
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
        per_cell = _cell_bytes(t, kv_dtype, v_type, self.flash_attn)
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

    # ---- compute buffers -----------------------------------------------------------------
    def chunk_tokens(self, ctx: int) -> int:
        return self.n_ubatch

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        u = self.n_ubatch
        logits = u * t.vocab_size * 4
        mlp = u * 3 * max(t.mlp_intermediate(i) for i in range(t.num_layers)) * 4 + 4 * u * t.hidden_size * 4
        if t.enable_moe_block:
            mlp += u * t.top_k_experts * 3 * t.moe_intermediate_size * 4
        scores = 0 if self.flash_attn else self.n_ctx(ctx * (batch if self.kv_unified else 1)) * u * t.num_heads * 4
        work = max(logits, mlp, scores)
        which = {logits: "logits", mlp: "MLP", scores: "attention scores"}[work]
        return [MemoryTerm(Component.COMPUTE_BUFFER, work, Location.ACCELERATOR,
                           f"estimate ({which}): max(n_ubatch {u} x vocab x 4 B, MLP intermediates, "
                           + ("flash attention: no score matrix)" if self.flash_attn else "n_kv x n_ubatch x heads x 4 B)"))]

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
        if self.swa_full:
            parts.append("--swa-full")
        if self.kv_unified:
            parts.append("--kv-unified")
        if gpus > 1:
            parts.append("-sm layer -ts " + ",".join(["1"] * gpus))
        if w.vision:
            parts.append(f"--mmproj {mmproj}")
        return join_command(parts)

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        argv = split_command(text)
        known = {"-m": "model", "--model": "model", "-c": "ctx", "--ctx-size": "ctx", "-np": "np", "--parallel": "np",
                 "-ctk": "ctk", "--cache-type-k": "ctk", "-sm": "sm", "--split-mode": "sm", "-ts": "ts",
                 "--tensor-split": "ts", "--mmproj": "mmproj", "-b": "n_batch", "--batch-size": "n_batch"}
        for o in cls.options:
            for flag in o.flags:
                known[flag] = o.field
        switches = frozenset({"--swa-full", "--kv-unified", "-kvu"})
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
        for field in ("n_ubatch", "n_gpu_layers", "n_cpu_moe"):
            if field in v:
                settings[field] = to_int(next(o.flags[0] for o in cls.options if o.field == field), v[field])
        if "flash_attn" in v:
            if v["flash_attn"] not in ("on", "off", "auto", "1", "0"):
                raise EngineError(f"-fa {v['flash_attn']!r}; valid: on, off, auto")
            settings["flash_attn"] = v["flash_attn"] in ("on", "auto", "1")
        for field in ("swa_full", "kv_unified"):
            if field in v:
                settings[field] = True
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
def _cell_bytes(t: TextSpec, k_type: str, v_type: str, flash_attn: bool) -> dict[int, int]:
    """K + V bytes of one cell of each cache layer."""
    return {i: sum(cell_bytes(t, i, k_type, v_type, flash_attn)) for i in t.cache_layers}


@lru_cache(maxsize=64)
def _priced(spec: ModelSpec, quant: str, vision: bool, audio: bool) -> tuple[tuple[Component, str, int, int], ...]:
    """(component, kind, layer, bytes) of every GGUF tensor, priced once per file."""
    return tuple((Component(x.component), x.kind, x.layer, b) for x, b in priced_tensors(spec, quant, vision, audio))


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


@lru_cache(maxsize=1024)  # searches and sweeps re-place the same file at many contexts and offload settings
def _weight_terms(spec: ModelSpec, quant: str, vision: bool, audio: bool, n_gpu_layers: int,
                  n_cpu_moe: int, file: WeightFile | None = None) -> tuple[MemoryTerm, ...]:
    t = spec.text
    gpu_start = max(t.num_layers + 1 - n_gpu_layers, 0)
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
        elif layer < 0:
            where = gpu if output_on_gpu else host
        else:
            where = gpu if layer >= gpu_start and not (c is experts and layer < n_cpu_moe) else host
        acc[(c, where)] = acc.get((c, where), 0) + b
    what = f"{get_quant(quant).name} GGUF tensors" if file is None else f"{file.label} tensors of {file.name} (as stored)"
    return tuple(MemoryTerm(c, n, where, f"{what}; " + (
        "input tensor kept in host memory" if where is host else "offloaded with -ngl")) for (c, where), n in acc.items())


def weights_on_device(spec: ModelSpec, quant: str) -> int:
    """All GGUF weight bytes (what llama.cpp's 'model buffer size' lines add up to)."""
    return sum(weight_bytes_by_component(spec, quant).values())
