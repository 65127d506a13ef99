"""LiteRT-LM (Google AI Edge): the ``.litertlm`` files litert-community ships, on a CPU (XNNPACK) or a GPU.

Read in the ``litert-lm`` 0.18.1 CLI wheel (``litert_lm_cli/commands/{run,benchmark,common}.py``), the
``litert-torch`` 0.10.0 exporter that writes the files (``litert_torch/generative/export_hf``) and the
runtime at zkh2016/LiteRT-LM@99811c2f (a fork of google-ai-edge/LiteRT-LM carrying Gemma 4):

* Files: litert-community ships ``gemma-4-E2B-it.litertlm`` (2,583,085,056 B as first uploaded; "2.58 GB" on
  ai.google.dev/edge/litert-lm/models/gemma-4) and ``gemma-4-E4B-it.litertlm`` ("Size (MB) 3654", LiteRT-LM
  overview) for CPU and GPU; its 31B file is for the web only ("ready for deployment on web"), and there is
  no 26B-A4B file.  Each bundles the decoder's prefill / decode graphs, an embedder and a per-layer embedder,
  both encoders and the tokenizer.  Weights: format ``litertlm`` (``g4sim.analytic.quant``: 4 bits per
  weight, the recipe being unpublished), plus the file's remaining sections where the priced tensors fall
  short of the published size.
* KV cache (exporter ``core/cache.py`` ``LiteRTLMCache.create_from_config``): one K and one V buffer per
  layer below the first KV-shared layer, ``cache_length`` cells each -- the sliding layers too, unless a
  ring buffer is asked for -- in the graph's dtype (float32: ``get_cache_dtype`` is the trace dtype unless
  ``experimental_use_fp16``), allocated at load (``runtime/executor/litert/state.cc``).  The length is the
  file's: the graphs are static, ``--max-num-tokens`` above it is clamped ("larger than what the static model
  supports ... Using model limit") and below it changes nothing -- measured, see below -- so a plan at any
  context prices the file's 4,096 cells (the exporter's default ``cache_length``, and the limit users of the
  shipped files report: litert-community/gemma-4-E4B-it-litert-lm "context window size 4096?").  The GPU
  executor keeps two banks (``kPingPong``, ``llm_litert_compiled_model_executor.cc``); the CPU one
  (``kInplace``).  ``--ringbuffers-local-attention`` sizes the sliding layers to their window, on the GPU only
  (``c/engine.cc`` sets ``GpuArtisanConfig.use_autosized_ringbuffers``).
* Prefill computes the layers that write a cache, not the KV-shared ones: a prefill signature returns no
  logits (``export.py`` ``prefill_logits``), so the KV-shared layers' outputs are unused and "the readers stay
  dead code" (``model_ext/gemma4/patch.py`` ``resolve_skip_cache_update``).  The prompt runs through fixed
  prefill signatures (``GetOptimizedPrefillWorkGroups``); the exporter's default is one of 128 tokens, whose
  attention scores span the whole static cache, masked (``attention_workspace``).
* Activations: float32 on the CPU (XNNPACK, dynamic-range fully connected), float16 on the GPU
  (``activation_data_type`` FLOAT16).  The token and per-layer embedding tables are looked up on the CPU
  from the mapped file ("large embedding tables ... need to be placed on the CPU",
  ``embedding_lookup_text.h``).
* One conversation per engine: g4sim plans batch 1.  The CLI's ``--speculative-decoding`` defaults to the
  model's own setting (MTP heads); g4sim models no speculative decoding and prints it off.
* What is resident on the CPU: XNNPACK packs the fully connected weights and the tied head once into its weight
  cache (a file beside the model, mapped; ``REPACKED_WEIGHTS`` at the file's width), and from then on the
  .litertlm's decoder section is not read; its tables are paged in a row per looked-up token.  So the CPU
  plan is the packed copy, K/V, activations and the process itself (``RUNTIME_BYTES``).  On a GPU (not
  measured) the weights are converted onto it (``convert_weights_on_gpu``) and g4sim keeps the whole file in
  host memory, its decoder pages being only advised away (``gpu_madvise_original_shared_tensors``).
* Measured (``reports/measurements/litert-lm``, ``scripts/litert/measure.sh``, this project's CPU): exports of
  a random-weight, 10-layer, E2B-width Gemma 4 confirm the K/V inputs (layers, shapes, float32), the single
  CPU bank, the prefill graph without the KV-shared layers (39 of 82 matmuls; 2.25x the unshared model's
  prefill rate), the cache file's size (1.006 / 0.506 B per weight at int8 / int4) and the clamp.  Peak RSS at
  cache lengths 4,096 and 16,384 fixes the two constants below; the 1,024-cell, unshared and int4 exports,
  held out, come within 1.4 %.  Against LiteRT-LM's own "Peak CPU Memory" for E2B on CPUs, where the OS counts
  the mapped cache (Linux, Android), g4sim is 1-12 % under (tests/test_litertlm.py).
No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from g4sim.analytic.components import Component, Location
from g4sim.analytic.memory import MemoryTerm, quant_context
from g4sim.analytic.quant import get_quant
from g4sim.analytic.tensors import text_tensors
from g4sim.engines.base import (
    Caps, Engine, EngineError, Option, Parsed, Workload, backend_class, flag_values, model_from_name, split_command,
    to_int,
)
from g4sim.spec import ModelSpec, TextSpec
from g4sim.weightfiles import WeightFile

BACKENDS = ("cpu", "gpu")
REPOS = {"e2b": "litert-community/gemma-4-E2B-it-litert-lm", "e4b": "litert-community/gemma-4-E4B-it-litert-lm"}
FILES = {"e2b": "gemma-4-E2B-it.litertlm", "e4b": "gemma-4-E4B-it.litertlm"}
# the published sizes: E2B the first upload's exact bytes (its Git LFS pointer), E4B the overview's "3654 MB"
FILE_BYTES = {"e2b": 2_583_085_056, "e4b": 3_654_000_000}
# the shipped files' static KV length (their LlmMetadata max_num_tokens), assumed 4096: the exporter's default
# cache_length, and engine_settings.cc's max_num_tokens for an empty prompt
CACHE_LENGTH = 4096
# Measured on this project's CPU (reports/measurements/litert-lm, scripts/litert/measure.sh): a 10-layer E2B-width
# export at cache lengths 4,096 and 16,384 (the calibration rows; peak VmRSS 827,196 / 1,201,000 kB) grows
# 31,150.7 B per cache cell, of which 12,288 B is K/V: the rest is 4.61 live prefill score buffers of
# [8 heads x 128 tokens, cells] float32.  What remains at 4,096 cells beyond the packed weights, K/V and g4sim's
# activations is the process itself.  Held out: the 1,024-cell, unshared and int4 exports (tests/test_litertlm.py).
PREFILL_SCORE_BUFFERS = 4.61
RUNTIME_BYTES = 139_101_571  # the 4,096-cell calibration row's peak RSS less the other terms (re-derived by the test)
PREFILL_SIGNATURE = 128  # export_hf ExportableModuleConfig.prefill_lengths default
RING_ALIGN = 32  # exporter: a ring buffer's size rounds up to a multiple of 32 (exportable_module_config.py)
_NO_FILE = {"31b": "litert-community ships Gemma 4 31B for the web only (LiteRT-LM's web runtime)",
            "26b-a4b": "litert-community ships no Gemma 4 26B-A4B .litertlm file"}
_RUN_FLAGS = {
    "--backend": "backend", "--cpu-thread-count": "cpu_thread_count", "--max-num-tokens": "max_num_tokens",
    "--ringbuffers-local-attention": "ringbuffers", "--speculative-decoding": "speculative",
    "--enable-speculative-decoding": "speculative", "--from-huggingface-repo": "repo",
    "--huggingface-token": "-", "--prompt": "-", "--attachment": "-", "--vision-backend": "-", "--audio-backend": "-",
    "--thinking": "-", "--thinking-budget": "-", "--top-k": "-", "--top-p": "-", "--temperature": "-", "--seed": "-",
    "--preset": "-", "--chat-template": "-", "--no-template": "-", "--filter-channel-content-from-kv-cache": "-",
    "--cache": "-", "--gpu-decode-steps-per-sync": "-", "--activation-data-type": "-", "--enable-ynnpack": "-",
    "--verbose": "-", "--config": "-",
    # benchmark
    "-p": "prefill_tokens", "--prefill-tokens": "prefill_tokens", "-d": "-", "--decode-tokens": "-", "--runs": "-",
    "--skip-warmup": "-",
}
_SWITCHES = frozenset({"--no-template", "--verbose", "--skip-warmup", "--filter-channel-content-from-kv-cache"})


def benchmark_max_num_tokens(prefill_tokens: int) -> int:
    """``litert-lm benchmark``'s KV length when --max-num-tokens is not given (benchmark.py, as
    engine_settings.cc): the smallest multiple of 4096 above the prompt plus 1024."""
    return ((prefill_tokens + 1023) // 4096 + 1) * 4096


def packed_bytes(t: TextSpec, quant: str) -> int:
    """The decoder's fully connected weights as the format stores them: every matrix a decode step multiplies by,
    the tied embedding once more as the output head (the lookup tables are not fully connected)."""
    fmt, qc = get_quant(quant), quant_context(t)
    return sum(fmt.tensor_bytes(x, qc) for x in text_tensors(t)
               if x.kind not in ("norm", "ple_table") and (x.kind != "token_embd" or t.tie_word_embeddings))


def default_backend(device) -> str:
    return "cpu" if device.kind == "cpu" else "gpu"


def ring_cells(window: int) -> int:
    return -(-window // RING_ALIGN) * RING_ALIGN


@dataclass(frozen=True)
class LiteRtLmEngine(Engine):
    name: ClassVar[str] = "litert-lm"
    description: ClassVar[str] = ("LiteRT-LM: litert-community's .litertlm files, fixed float32 KV buffers, CPU "
                                  "(XNNPACK) or GPU backend")
    caps: ClassVar[Caps] = Caps(weight_formats=frozenset({"litertlm"}), kv_dtypes=frozenset({"fp32"}),
                                device_kinds=frozenset({"cpu", "gpu", "soc"}))
    options: ClassVar[tuple[Option, ...]] = (
        Option("backend", ("--backend",), "cpu or gpu (LiteRT-LM's main backend)",
               "litert_lm_cli/commands/common.py --backend (the model's configured backend when not given; g4sim "
               "prints it)"),
        Option("cpu_thread_count", ("--cpu-thread-count",), "CPU threads (CPU backend)",
               "runtime/executor/llm_executor_settings.h CpuConfig.number_of_threads = 4, whatever the cores"),
        Option("ringbuffers_local_attention", ("--ringbuffers-local-attention",),
               "ring buffers for the sliding layers' cache (GPU backend)",
               "litert_lm_cli/commands/common.py: off for run, on for benchmark; c/engine.cc applies it to the GPU"),
    )
    command_names: ClassVar[tuple[str, ...]] = ("litert-lm",)
    file_kinds: ClassVar[frozenset[str]] = frozenset()  # g4sim plans the shipped files by name
    batch_limit: ClassVar[int] = 1  # one conversation per engine
    backend: str | None = None  # None: the device decides (gpu where the profile is a GPU or an SoC's, else cpu)
    cpu_thread_count: int = 4
    ringbuffers_local_attention: bool = False
    # the file's static KV length (litert-torch export_hf --cache_length; its LlmMetadata max_num_tokens): the
    # shipped files' 4,096 unless a measurement or a user's own export says otherwise (not a runtime setting)
    cache_length: int = CACHE_LENGTH

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in BACKENDS:
            raise EngineError(f"--backend {self.backend!r}; g4sim plans LiteRT-LM's: {', '.join(BACKENDS)}")
        if self.cpu_thread_count < 1:
            raise EngineError(f"--cpu-thread-count {self.cpu_thread_count} must be 1 or more")

    @property
    def gpu(self) -> bool:
        return self.backend == "gpu"

    def for_device(self, device) -> LiteRtLmEngine:
        """The backend the device's profile describes, where the user named none: its GPU on a GPU or an SoC (the
        profile's peak is the GPU's), the CPU on a CPU."""
        return self if self.backend else replace(self, backend=default_backend(device))

    # ---- what it can run ---------------------------------------------------------------
    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        reason = super().compatibility(w, device, gpus)
        if reason:
            return reason
        if self.backend is None:
            return self.for_device(device).compatibility(w, device, gpus)
        if w.spec.name not in FILES:
            return _NO_FILE.get(w.spec.name, f"litert-community ships no .litertlm file of {w.spec.name}") + \
                "; LiteRT-LM plans: " + ", ".join(FILES)
        if w.batch > self.batch_limit:
            return f"LiteRT-LM runs one conversation per engine; g4sim plans batch 1, not {w.batch}"
        if w.ctx > self.context_limit(w.spec):
            return (f"the .litertlm file holds {self.cache_length:,}-token KV buffers (the shipped files: the exporter's "
                    f"default; the runtime clamps --max-num-tokens to it); --ctx {w.ctx:,} is more")
        if self.gpu and device.kind == "cpu":
            return f"{device.name} has no GPU for LiteRT-LM's GPU backend; use --backend cpu"
        if not self.gpu and device.cpu_flops("fp32") is None:
            return (f"{device.name}'s profile gives its GPU's peak, not its CPU cores' (no cpu_peak_flops), so g4sim "
                    "cannot price LiteRT-LM's CPU backend there: use --backend gpu")
        return None

    def context_limit(self, spec: ModelSpec) -> int:
        return self.cache_length

    def backend_on(self, device) -> str:
        """LiteRT-LM's GPU backend is one implementation on every vendor (ML Drift): one class, ``gpu``."""
        if self.backend is None:
            return self.for_device(device).backend_on(device)
        if self.gpu:
            return "gpu"
        return "cpu-arm" if device.vendor == "apple" else backend_class("cpu", device.vendor)

    def runs_on_cpu(self, device) -> bool:
        return (self.backend or default_backend(device)) == "cpu"

    def compute_dtype_on(self, quant: str, device) -> str:
        """The CPU backend runs XNNPACK's dynamic-range fully connected kernels (the activations quantized to int8
        per row, int8 x int4 / int8 dot products: its qd8_f32_qc4w / qc8w GEMMs), bounded by the int8 peak; the GPU
        backend computes in float16."""
        return "fp16" if (self.backend or default_backend(device)) == "gpu" else "int8"

    @classmethod
    def published_settings(cls, row: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "gpu" if row.get("backend") == "gpu" else "cpu"}
        if row.get("threads"):
            out["cpu_thread_count"] = int(row["threads"])
        return out

    # ---- weights -----------------------------------------------------------------------
    def placement(self, component: Component) -> Location:
        # the mapped file stays in host memory; on a GPU the decoder runs from its converted copy (REPACKED_WEIGHTS)
        return Location.HOST if self.gpu else Location.ACCELERATOR

    def host_streamed_weight_bytes(self, memory) -> int:
        return 0  # a decode step reads the GPU's converted copy; the host keeps the file for the table look-ups

    def weight_terms(self, spec: ModelSpec, quant: str, *, vision: bool, audio: bool,
                     file: WeightFile | None = None) -> list[MemoryTerm]:
        """CPU: what is resident is XNNPACK's packed copy; the mapped file is paged in only for the rows looked up
        (measured: ~20 MB of a 709 MB file).  GPU (not measured): the whole file in host memory, where the tables
        are looked up, and the copy converted onto the device."""
        packed = packed_bytes(spec.text, quant)
        if not self.gpu:
            return [MemoryTerm(Component.REPACKED_WEIGHTS, packed, Location.ACCELERATOR,
                               "XNNPACK's packed copy of the decoder's fully connected weights, the tied head included, "
                               "at the file's width (its weight cache: a file beside the model, mapped; measured 1.006 / "
                               "0.506 B per weight at int8 / int4). The .litertlm stays mapped, not resident: its decoder "
                               "section is not read once the cache exists, its tables a row per looked-up token")]
        terms = super().weight_terms(spec, quant, vision=spec.vision is not None, audio=spec.audio is not None)
        rest = FILE_BYTES.get(spec.name, 0) - sum(t.bytes for t in terms)
        if rest > 0:
            terms.append(MemoryTerm(Component.FILE_SECTIONS, rest, self.placement(Component.FILE_SECTIONS),
                                    f"{FILES[spec.name]}'s published {FILE_BYTES[spec.name]:,} B less the priced "
                                    "tensors (tokenizer, graph signatures, metadata)"))
        terms.append(MemoryTerm(Component.REPACKED_WEIGHTS, packed, Location.ACCELERATOR,
                                "the GPU's converted copy of the decoder's fully connected weights, the tied head "
                                "included (convert_weights_on_gpu), at the file's width"))
        return terms

    # ---- KV cache ------------------------------------------------------------------------
    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        if self.gpu and self.ringbuffers_local_attention and t.is_sliding(layer):
            return ring_cells(t.sliding_window)
        # the file's static cache length, whatever the context: --max-num-tokens above it is clamped ("Using model
        # limit"), below it changes nothing (measured: peak RSS flat within 1 % from 1,024 to 16,384)
        return self.cache_length

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        terms = super().kv_terms(t, ctx=ctx, batch=batch, kv_dtype=kv_dtype)
        if not self.gpu:
            return terms
        return [MemoryTerm(x.component, 2 * x.bytes, x.location, x.source + " x 2 banks (GPU: kPingPong)")
                for x in terms]

    # ---- activations and overhead --------------------------------------------------------
    def chunk_tokens(self, ctx: int) -> int:
        return PREFILL_SIGNATURE

    def static_attention_cells(self, t: TextSpec) -> int:
        return self.cache_length  # the static graphs attend over the whole cache, masked (measured: speed follows it)

    def attention_workspace(self, t: TextSpec, layer: int, chunk: int, kv_len: int, batch: int, a: int) -> int:
        """The static graph's prefill attention scores over every cell of the cache, masked: PREFILL_SCORE_BUFFERS
        live [heads x signature, cache cells] float32 buffers (measured)."""
        return int(PREFILL_SCORE_BUFFERS * batch * t.num_heads * chunk * self.cache_length * 4)

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        # float32 activations on the CPU, float16 on the GPU, whatever the weights
        return super().activation_terms(t, ctx=ctx, batch=batch, quant="fp16" if self.gpu else "fp32")

    def overhead_terms(self, terms: list[MemoryTerm], *, device_kind: str) -> list[MemoryTerm]:
        # buffers are allocated once at load, at their size: no caching allocator, no CUDA context; the process itself
        return [MemoryTerm(Component.RUNTIME, RUNTIME_BYTES, Location.HOST if self.gpu else Location.ACCELERATOR,
                           "the litert-lm process beside the model's buffers: CLI, runtime libraries, tokenizer, mapped "
                           "pages (measured on x86-64 Linux, reports/measurements/litert-lm)")]

    # ---- commands ---------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        name = w.spec.name
        parts = [f"litert-lm run --from-huggingface-repo={REPOS[name]} {FILES[name]}",
                 f"--backend={self.backend}", f"--max-num-tokens={w.ctx}"]
        if not self.gpu:
            parts.append(f"--cpu-thread-count={self.cpu_thread_count}")
        if self.gpu and self.ringbuffers_local_attention:
            parts.append("--ringbuffers-local-attention=true")
        parts.append("--speculative-decoding=false")
        return " \\\n  ".join(parts)

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        argv = split_command(text)
        if len(argv) < 2 or argv[0].rsplit("/", 1)[-1] != "litert-lm" or argv[1] not in ("run", "benchmark"):
            raise EngineError("expected `litert-lm run MODEL ...` or `litert-lm benchmark MODEL ...`")
        sub, rest = argv[1], argv[2:]
        refs = [a for i, a in enumerate(rest) if not a.startswith("-") and (i == 0 or not _takes_value(rest[i - 1]))]
        flags = [a for a in rest if a not in refs]
        v = flag_values(flags, _RUN_FLAGS, _SWITCHES, tool=f"litert-lm {sub}")
        settings: dict[str, Any] = {}
        if "backend" in v:
            if v["backend"] == "npu":
                raise EngineError("g4sim plans LiteRT-LM's cpu and gpu backends, not npu")
            settings["backend"] = v["backend"]
        if "cpu_thread_count" in v:
            settings["cpu_thread_count"] = to_int("--cpu-thread-count", v["cpu_thread_count"])
        if "ringbuffers" in v:
            settings["ringbuffers_local_attention"] = _true("--ringbuffers-local-attention", v["ringbuffers"])
        elif sub == "benchmark":
            settings["ringbuffers_local_attention"] = True  # benchmark.py's default
        if "speculative" in v and _true("--speculative-decoding", v["speculative"]):
            raise EngineError("g4sim models no speculative decoding (LiteRT-LM's MTP heads); use "
                              "--speculative-decoding=false")
        names = " ".join([str(v.get("repo", "")), *refs])
        if "max_num_tokens" in v:
            ctx = to_int("--max-num-tokens", v["max_num_tokens"])
        elif sub == "benchmark":
            ctx = benchmark_max_num_tokens(to_int("--prefill-tokens", v.get("prefill_tokens", 256)))
        else:
            ctx = CACHE_LENGTH
        ctx = min(ctx, CACHE_LENGTH)  # the runtime clamps it to the shipped file's static length ("Using model limit")
        try:
            engine = cls(**settings)
        except TypeError as exc:  # pragma: no cover - settings are the dataclass's own fields
            raise EngineError(str(exc)) from None
        return Parsed(engine, model_from_name(names), "litertlm", "fp32", ctx, 1, 1, None)


def _takes_value(flag: str) -> bool:
    head = flag.split("=", 1)[0]
    return head in _RUN_FLAGS and head not in _SWITCHES and "=" not in flag


def _true(flag: str, value: Any) -> bool:
    text = str(value).lower()
    if text not in ("true", "false"):
        raise EngineError(f"{flag} {value!r}; valid: true, false")
    return text == "true"
