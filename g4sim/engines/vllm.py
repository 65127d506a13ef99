"""vLLM (V1 engine) allocation rules.

Sources (vllm-project/vllm):
* ``vllm/v1/kv_cache_interface.py`` — ``FullAttentionSpec.max_memory_usage_bytes`` =
  ``cdiv(max_model_len, block_size) * page_size_bytes``; ``SlidingWindowSpec`` =
  ``(cdiv(min(sliding_window - 1 + max_num_batched_tokens, max_model_len), block_size) + 1) * page_size``.
* ``vllm/v1/core/kv_cache_utils.py`` — layers of different page sizes are unified by enlarging the
  block size of the smaller pages (``unify_kv_cache_spec_page_size``), so every page has one size;
  here that means the full layers' blocks hold ``block_size x (sliding page / full page)`` tokens.
* ``vllm/v1/worker/gpu_worker.py`` — ``determine_available_memory``: KV budget = total memory x
  ``gpu_memory_utilization`` - (weights + peak activations of the profile run + non-torch memory),
  plus CUDA-graph capture memory.
* KV-shared layers (``kv_sharing_target_layer_name``) get no cache; vLLM keeps the PLE table on the
  GPU; nothing is saved for ``attention_k_eq_v`` (K and V are both cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from g4sim.analytic.memory import MemoryTerm, kv_bytes_per_cell
from g4sim.analytic.quant import get_kv_dtype
from g4sim.engines.base import Engine
from g4sim.spec import TextSpec
from g4sim.units import GiB, MiB


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class VllmEngine(Engine):
    name: ClassVar[str] = "vllm"
    description: ClassVar[str] = "vLLM V1: paged KV (hybrid allocator), gpu_memory_utilization budget"
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    max_num_batched_tokens: int = 2048  # online serving default with chunked prefill
    max_num_seqs: int = 256
    cuda_graph_bytes: int = 512 * MiB  # CUDA-graph capture pool (vLLM reports ~0.3-1 GiB on Hopper)
    non_torch_bytes: int = 1 * GiB  # CUDA context + NCCL + cuBLAS workspaces outside torch's allocator
    allocator_reserve_fraction: float = 0.0  # the KV pool is one preallocated tensor

    def usable_bytes(self, device_bytes: int) -> int:
        return int(device_bytes * self.gpu_memory_utilization)

    def _page_tokens(self, t: TextSpec, layer: int, kv_dtype: str) -> int:
        """Tokens per block of ``layer`` after page-size unification."""
        dt = get_kv_dtype(kv_dtype)
        pages = {kv_bytes_per_cell(t, i, dt) for i in t.cache_layers}
        largest = max(pages)
        return self.block_size * largest // kv_bytes_per_cell(t, layer, dt)

    def kv_cells_for(self, t: TextSpec, layer: int, ctx: int, kv_dtype: str) -> int:
        block = self._page_tokens(t, layer, kv_dtype)
        if t.is_sliding(layer):
            tokens = min(t.sliding_window - 1 + self.max_num_batched_tokens, ctx)
            return (cdiv(tokens, block) + 1) * block
        return cdiv(ctx, block) * block

    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        return self.kv_cells_for(t, layer, ctx, "bf16")

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        dt = get_kv_dtype(kv_dtype)
        out = []
        for kind, sliding in (("sliding", True), ("full", False)):
            layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
            total = sum(batch * self.kv_cells_for(t, i, ctx, kv_dtype) * kv_bytes_per_cell(t, i, dt) for i in layers)
            cells = self.kv_cells_for(t, layers[0], ctx, kv_dtype) if layers else 0
            rule = ("(cdiv(min(window - 1 + max_num_batched_tokens, max_model_len), block) + 1) blocks"
                    if sliding else "cdiv(max_model_len, block) blocks")
            out.append(MemoryTerm(f"kv cache: {kind} layers", "kv_cache", total, "accelerator",
                                  f"{len(layers)} layers x {batch} seq x {cells} cells ({rule}, block {self.block_size} "
                                  f"unified to one page size) x 2 (K,V) x kv_heads x head_dim x {kv_dtype}"))
        return out

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str, prefill_chunk: int | None):
        # The profile run: one forward of max_num_batched_tokens tokens, then the sampler on max_num_seqs rows.
        chunk = min(self.max_num_batched_tokens, max(ctx, 1))
        terms = Engine.activation_terms(self, t, ctx=min(ctx, self.max_num_batched_tokens), batch=1, quant=quant,
                                        prefill_chunk=chunk)
        sampler = min(self.max_num_seqs, self.max_num_batched_tokens) * t.vocab_size * 4
        terms.append(MemoryTerm("activations: sampler warm-up logits", "activations", sampler, "accelerator",
                                "min(max_num_seqs, max_num_batched_tokens) x vocab x 4 B (profile run)"))
        return terms

    def overhead_terms(self, terms, *, device_kind: str) -> list[MemoryTerm]:
        return [MemoryTerm("overhead: non-torch memory", "overhead", self.non_torch_bytes, "accelerator",
                           "CUDA context, NCCL, cuBLAS workspaces (vLLM measures this at start-up)"),
                MemoryTerm("overhead: CUDA graphs", "overhead", self.cuda_graph_bytes, "accelerator",
                           "CUDA-graph capture pool (engine setting)")]
