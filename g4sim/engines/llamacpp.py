"""llama.cpp allocation rules (llama-server / llama-cpp-python).

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
* Checked against a real llama.cpp (llama-cpp-python 0.3.36, ``scripts/llamacpp_check.py``): KV cells,
  layers and K/V bytes and the model buffer match its log exactly (tests/test_llamacpp_rule.py).
* The compute buffer is estimated, not read from the source (it under-estimates small models): the largest of the micro-batch's
  logits (n_ubatch x vocab x 4 B, reserved for a full micro-batch of outputs), its MLP / MoE
  intermediates, and, without flash attention, the F32 attention scores n_kv x n_ubatch x heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from g4sim.analytic.memory import MemoryTerm, weight_bytes_by_component
from g4sim.analytic.quant import get_kv_dtype, get_quant
from g4sim.analytic.tensors import model_tensors, quant_context
from g4sim.engines.base import Engine
from g4sim.spec import ModelSpec, TextSpec
from g4sim.units import MiB

CTX_PAD = 256


def pad(n: int, to: int = CTX_PAD) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class LlamaCppEngine(Engine):
    name: ClassVar[str] = "llamacpp"
    description: ClassVar[str] = "llama.cpp / llama-server: padded context, SWA cache, -ngl / --n-cpu-moe offload"
    n_ubatch: int = 512
    n_seq_max: int = 1
    kv_unified: bool = True
    flash_attn: bool = True
    swa_full: bool = False  # llama-server's default; the C API's is True
    cache_type_v: str | None = None  # None: same as the KV dtype asked for
    n_gpu_layers: int = 999
    n_cpu_moe: int = 0
    ple_location: str = "host"
    cuda_context_bytes: int = 300 * MiB  # ggml's CUDA context + cuBLAS handles (no torch)
    allocator_reserve_fraction: float = 0.0  # ggml allocates exact buffers

    # ---- KV cache ----------------------------------------------------------------
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
        k = get_kv_dtype(k_type).bytes_for(t.kv_heads(layer) * t.head_dim_of(layer))
        v_width = t.kv_heads(layer) * t.head_dim_of(layer)
        if not self.flash_attn:  # transposed V: rows padded to the widest V of any layer
            v_width = max(t.kv_heads(i) * t.head_dim_of(i) for i in t.cache_layers)
        v = get_kv_dtype(v_type).bytes_for(v_width)
        return cells * k, cells * v

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        # With one unified cache, n_ctx cells serve all sequences: callers size ctx = per-seq ctx x batch.
        v_type = self.cache_type_v or kv_dtype
        if not self.flash_attn and get_kv_dtype(v_type).block > 1:
            # llama_init_from_model: "quantized V cache requires flash_attn to be enabled"
            raise ValueError(f"llama.cpp: a quantized V cache ({v_type}) requires flash attention (flash_attn=True)")
        cells_ctx = ctx * batch if self.kv_unified else ctx
        out = []
        for kind, sliding in (("sliding", True), ("full", False)):
            layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
            total = sum(sum(self.kv_layer_bytes(t, i, cells_ctx, kv_dtype, v_type)) for i in layers)
            if not self.kv_unified:
                total *= batch
            cells = self.kv_cells(t, layers[0], cells_ctx) if layers else 0
            out.append(MemoryTerm(f"kv cache: {kind} layers", "kv_cache", total, self._kv_location(),
                                  f"{len(layers)} layers x {cells} cells (n_ctx padded to 256"
                                  + ("; SWA = pad256(min(n_ctx, n_swa x seqs + n_ubatch))" if sliding and not self.swa_full else "")
                                  + f") x K {kv_dtype} + V {v_type}" + ("" if self.flash_attn else " (V transposed, widest row)")))
        return out

    def _kv_location(self) -> str:
        return "accelerator" if self.n_gpu_layers > 0 else "host"

    # ---- weights -------------------------------------------------------------------
    def weight_terms(self, spec: ModelSpec, quant: str, *, vision: bool, audio: bool) -> list[MemoryTerm]:
        t = spec.text
        fmt, qc = get_quant(quant), quant_context(t)
        gpu_start = max(t.num_layers + 1 - self.n_gpu_layers, 0)
        output_on_gpu = self.n_gpu_layers > t.num_layers
        acc: dict[tuple[str, str], int] = {}

        def add(component: str, where: str, n: int) -> None:
            acc[(component, where)] = acc.get((component, where), 0) + n

        for x in model_tensors(spec, vision=vision, audio=audio):
            b = fmt.tensor_bytes(x, qc)
            if x.kind in ("token_embd", "ple_table"):
                add(x.component, "host", b)  # input tensors stay in host memory
                if x.kind == "token_embd" and t.tie_word_embeddings and output_on_gpu:
                    add("output (tied embedding copy)", "accelerator", b)
            elif x.layer < 0:
                add(x.component, "accelerator" if output_on_gpu else "host", b)
            else:
                on_gpu = x.layer >= gpu_start and not (x.component == "experts" and x.layer < self.n_cpu_moe)
                add(x.component, "accelerator" if on_gpu else "host", b)
        return [MemoryTerm(f"weights: {c}" + (" (host)" if where == "host" else ""), "weights", n, where,
                           f"{fmt.name} GGUF tensors; " + ("input tensor kept in host memory" if where == "host"
                                                          else "offloaded with -ngl"))
                for (c, where), n in acc.items()]

    # ---- compute buffers -----------------------------------------------------------
    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str, prefill_chunk: int | None):
        u = self.n_ubatch
        logits = u * t.vocab_size * 4
        mlp = u * 3 * max(t.mlp_intermediate(i) for i in range(t.num_layers)) * 4 + 4 * u * t.hidden_size * 4
        if t.enable_moe_block:
            mlp += u * t.top_k_experts * 3 * t.moe_intermediate_size * 4
        scores = 0 if self.flash_attn else self.n_ctx(ctx * (batch if self.kv_unified else 1)) * u * t.num_heads * 4
        work = max(logits, mlp, scores)
        which = {logits: "logits", mlp: "MLP", scores: "attention scores"}[work]
        return [MemoryTerm(f"activations: compute buffer ({which})", "activations", work, "accelerator",
                           f"estimate: max(n_ubatch {u} x vocab x 4 B, MLP intermediates, "
                           + ("flash attention: no score matrix)" if self.flash_attn else "n_kv x n_ubatch x heads x 4 B)"))]

    def overhead_terms(self, terms, *, device_kind: str) -> list[MemoryTerm]:
        if device_kind != "gpu":
            return []
        return [MemoryTerm("overhead: CUDA context", "overhead", self.cuda_context_bytes, "accelerator",
                           "ggml CUDA context + cuBLAS handles (engine setting)")]


def weights_on_device(spec: ModelSpec, quant: str) -> int:
    """All GGUF weight bytes (what llama.cpp's 'model buffer size' lines add up to)."""
    return sum(weight_bytes_by_component(spec, quant).values())
