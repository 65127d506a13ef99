"""Engine rules for HuggingFace transformers and for g4sim's own PyTorch runtime.

transformers (5.x) — ``cache_utils.py``: ``DynamicSlidingWindowLayer.update`` keeps the last
``sliding_window - 1`` positions of a sliding layer and returns ``cat(cache, new)`` for the call
(a transient copy of window - 1 + chunk positions); full layers keep every position; KV-shared
layers never call ``update`` and hold nothing.  ``integrations/sdpa_attention.py`` expands K/V to
all query heads with ``repeat_kv`` before ``scaled_dot_product_attention``; ``eager`` materialises
the score matrix and a float32 softmax.  ``generate`` computes logits for the last position only
(``logits_to_keep=1``).

g4sim (``g4sim.model``) — preallocated cache: a sliding layer keeps a ring buffer of
``min(ctx, sliding_window)`` positions, a full layer ``ctx`` positions, KV-shared layers nothing;
attention is one ``scaled_dot_product_attention`` call with ``enable_gqa`` (no K/V expansion) over
[ring ++ chunk] on sliding layers; prefill is chunked; only the last position's logits are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from g4sim.engines.base import Engine
from g4sim.spec import TextSpec

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


@dataclass(frozen=True)
class TransformersEngine(Engine):
    name: ClassVar[str] = "transformers"
    description: ClassVar[str] = "HuggingFace transformers generate() with DynamicCache"
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"attn_implementation {self.attn_implementation!r}; valid: {', '.join(ATTN_IMPLEMENTATIONS)}")

    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        return min(ctx, t.sliding_window - 1) if t.is_sliding(layer) else ctx

    def attention_workspace(self, t: TextSpec, layer: int, chunk: int, kv_len: int, batch: int, a: int) -> int:
        hd, nh, kvh = t.head_dim_of(layer), t.num_heads, t.kv_heads(layer)
        concat = 2 * batch * kvh * kv_len * hd * a if t.is_sliding(layer) else 0
        expanded = 2 * batch * nh * kv_len * hd * a if kvh != nh else 0  # repeat_kv
        if self.attn_implementation == "eager":
            scores = batch * nh * chunk * kv_len * (a + 4 + a)  # matmul out, fp32 softmax, cast back
            return concat + expanded + scores
        mask = batch * chunk * kv_len  # boolean 4-D mask
        return concat + expanded + mask


# Transient bytes per element when g4sim.model.quant dequantizes a weight on the fly:
# int8 `(q.float() * scale).to(dtype)` holds two fp32 copies at its peak; int4 unpacking holds the
# padded fp32 codes, their scaled copy and the shifted sum (three fp32 copies).
DEQUANT_BYTES_PER_ELEMENT = {"int": 8, "int4": 12}


@dataclass(frozen=True)
class G4simEngine(Engine):
    name: ClassVar[str] = "g4sim"
    description: ClassVar[str] = "g4sim's own PyTorch runtime (what `g4sim profile` measures)"
    cuda_context_bytes: int = 512 * 2**20

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str, prefill_chunk: int | None):
        from g4sim.analytic.memory import MemoryTerm
        from g4sim.analytic.quant import get_quant
        from g4sim.analytic.tensors import text_tensors

        terms = super().activation_terms(t, ctx=ctx, batch=batch, quant=quant, prefill_chunk=prefill_chunk)
        fmt = get_quant(quant)
        if fmt.family == "int":  # weight-only int8 / int4: one matrix (or one expert) dequantized at a time
            per = DEQUANT_BYTES_PER_ELEMENT["int4" if fmt.linear_bits == 4 else "int"]
            largest = max(x.rows * x.cols for x in text_tensors(t)
                          if x.kind.startswith(("attn_", "ffn_")))
            terms.append(MemoryTerm("activations: dequantization workspace", "activations", largest * per,
                                    "accelerator", f"largest quantized matrix {largest:,} elements x {per} B "
                                    "(fp32 copies while dequantizing on the fly)"))
        return terms

    def attention_workspace(self, t: TextSpec, layer: int, chunk: int, kv_len: int, batch: int, a: int) -> int:
        hd, kvh = t.head_dim_of(layer), t.kv_heads(layer)
        concat = 2 * batch * kvh * kv_len * hd * a if t.is_sliding(layer) else 0  # [ring ++ chunk]
        mask = batch * chunk * kv_len
        return concat + mask
