"""Work per phase, engine-free: FLOPs and bytes moved by prefill and by one decode step.

Units are in the names: flop, bytes.  FLOP counts (2 per multiply-add): every matmul weight an
active token touches — attention and MLP projections, the top-k share of the experts, router, PLE
projections — plus attention scores and values (sliding layers attend to at most the window),
plus the tied LM head for each position whose logits are kept.  Embedding-table lookups cost no
FLOPs.  KV-shared layers run only for the kept positions in prefill (they write no cache;
transformers' ``_maybe_slice_kv_shared_inputs`` and g4sim's model both skip them) unless the engine
runs them for every prompt token (``shared_all``: llama.cpp's gemma4 graph builds every layer over
all n_tokens and selects the output rows only after the final norm, ``src/models/gemma4.cpp``).

Bytes per decode step: every weight read once (the tied embedding once more as the LM head), the
experts the batch actually touches — ``E (1 - (1 - k/E)^B)`` per layer for B tokens choosing k of E
uniformly and independently (the probability an expert is missed by one token is 1 - k/E) — one
embedding / PLE row per sequence, and the KV cache each layer reads (shared layers re-read theirs).
How many cells a layer's cache holds is the engine's rule, passed in as ``kv_cells(layer, ctx)``.
Weight bytes are priced from the spec in a format, or, given the exact weight file
(``g4sim.weightfiles.WeightFile``, passed as ``file``), read from its tensors as stored.
No torch import.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from g4sim.analytic.memory import kv_bytes_per_cell, priced_tensors
from g4sim.analytic.quant import get_kv_dtype, get_quant
from g4sim.analytic.tensors import text_tensors
from g4sim.spec import ModelSpec, TextSpec

_MATMUL_KINDS = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "router", "other"}


def compute_dtype(quant: str) -> str:
    """Weight-only formats compute in 16-bit activations; fp32 weights compute in fp32."""
    name = get_quant(quant).name
    return {"fp32": "fp32", "fp16": "fp16", "fp8": "fp8"}.get(name, "bf16")


def expected_distinct_experts(num_experts: int, top_k: int, tokens: int) -> float:
    """Expected number of experts hit by ``tokens`` tokens each routing to top_k of num_experts (uniform)."""
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


@lru_cache(maxsize=256)
def _layer_matmul_params(t: TextSpec) -> dict[int, tuple[int, int]]:
    """Per layer: (dense matmul params, routed-expert params of ONE expert)."""
    out: dict[int, list[int]] = {i: [0, 0] for i in range(t.num_layers)}
    for x in text_tensors(t):
        if x.layer < 0 or x.kind not in _MATMUL_KINDS:
            continue
        if x.component == "experts":
            out[x.layer][1] += x.rows * x.cols
        else:
            out[x.layer][0] += x.numel
    return {i: (d, e) for i, (d, e) in out.items()}


def _attention_flop(t: TextSpec, layer: int, kv_len: float) -> float:
    return 4.0 * t.num_heads * t.head_dim_of(layer) * kv_len  # QK^T and PV, per query token


def _sum_kv_len(t: TextSpec, layer: int, start: int, n: int) -> float:
    """Sum over query positions start..start+n-1 of the keys attended (causal, window on sliding layers)."""
    def causal(m: int) -> float:  # sum_{p=0}^{m-1} (p + 1)
        return m * (m + 1) / 2

    if not t.is_sliding(layer):
        return causal(start + n) - causal(start)
    w = t.sliding_window

    def capped(m: int) -> float:  # sum_{p=0}^{m-1} min(p + 1, w)
        return causal(min(m, w)) + max(0, m - w) * w

    return capped(start + n) - capped(start)


def _layer_tokens(t: TextSpec, layer: int, ctx: int, kept: int, shared_all: bool) -> int:
    """Prompt tokens a layer computes: all of them, or only the kept ones on a KV-shared layer the engine skips."""
    return kept if t.is_kv_shared(layer) and not shared_all else ctx


@lru_cache(maxsize=65536)  # pure in its arguments; a sweep asks the same (model, context) for every format
def prefill_expert_flop(spec: ModelSpec, ctx: int, batch: int = 1, shared_all: bool = False) -> float:
    """The part of prefill_flop spent in routed-expert GEMMs."""
    t = spec.text
    per_layer = _layer_matmul_params(t)
    return sum(batch * 2.0 * t.top_k_experts * per_layer[i][1] * _layer_tokens(t, i, ctx, 1, shared_all)
               for i in range(t.num_layers))


def expert_rows(spec: ModelSpec, tokens: int) -> float:
    """Rows each routed-expert GEMM sees when ``tokens`` tokens are processed together."""
    t = spec.text
    return tokens * t.top_k_experts / t.num_experts if t.enable_moe_block else float("inf")


@lru_cache(maxsize=65536)  # pure in its arguments; a sweep asks the same (model, context) for every format
def prefill_flop(spec: ModelSpec, ctx: int, batch: int = 1, kept: int = 1, shared_all: bool = False,
                 static_cells: int = 0) -> float:
    """``static_cells`` > 0: every query attends over that many cells, masked (a static graph's fixed cache, as
    LiteRT-LM's), instead of the positions before it (causal, window-capped on sliding layers)."""
    t = spec.text
    per_layer = _layer_matmul_params(t)
    flop = 0.0
    for i in range(t.num_layers):
        dense, one_expert = per_layer[i]
        tokens = _layer_tokens(t, i, ctx, kept, shared_all)
        matmul = dense + t.top_k_experts * one_expert
        attn = tokens * static_cells if static_cells else _sum_kv_len(t, i, ctx - tokens, tokens)
        flop += batch * (2.0 * matmul * tokens + 4.0 * t.num_heads * t.head_dim_of(i) * attn)
    if t.has_ple:  # the model-level PLE projection runs for every prompt token
        flop += batch * 2.0 * t.hidden_size * t.num_layers * t.hidden_size_per_layer_input * ctx
    return flop + batch * 2.0 * t.hidden_size * t.vocab_size * kept


@lru_cache(maxsize=256)
def _weight_bytes_by_layer(spec: ModelSpec, quant: str, file=None,
                           head_quant: str | None = None) -> tuple[dict[int, tuple[int, int]], int, int]:
    """(per layer: dense bytes, bytes of ONE expert), LM-head bytes, global non-table bytes.

    ``file``: a ``g4sim.weightfiles.WeightFile`` whose text tensors' stored bytes replace the
    spec's priced ones (tower tensors are not read per step; the PLE table is read a row per token).
    ``head_quant``: the format an engine stores the tied embedding / LM head in as a Linear weight, when
    it is not what ``quant`` prices (``Engine.head_quant``).
    """
    if file is not None:
        return _file_bytes_by_layer(spec, file)
    per_layer: dict[int, list[int]] = {i: [0, 0] for i in range(spec.text.num_layers)}
    lm_head = glob = 0
    for x, b in priced_tensors(spec, quant):
        if x.kind == "token_embd":
            # tied: the whole table is read as the LM head every step
            lm_head += get_quant(head_quant).linear_bytes(x) if head_quant else b
        elif x.kind == "ple_table":
            continue  # one row per token, counted separately
        elif x.layer < 0:
            glob += b
        elif x.component == "experts":
            per_layer[x.layer][1] += b // spec.text.num_experts
        else:
            per_layer[x.layer][0] += b
    return {i: (d, e) for i, (d, e) in per_layer.items()}, lm_head, glob


def _file_bytes_by_layer(spec: ModelSpec, file) -> tuple[dict[int, tuple[int, int]], int, int]:
    t = spec.text
    per_layer: dict[int, list[int]] = {i: [0, 0] for i in range(t.num_layers)}
    lm_head = glob = 0
    for _name, component, layer, _type, b in file.tensors:
        if component in ("vision_tower", "audio_tower", "ple_table"):
            continue
        if component in ("token_embedding", "lm_head"):
            if component == "lm_head" or t.tie_word_embeddings:
                lm_head += b  # the output head is read whole every step (the tied embedding, or lm_head)
        elif layer < 0:
            glob += b
        elif component == "experts":
            per_layer[layer][1] += b // t.num_experts
        else:
            per_layer[layer][0] += b
    return {i: (d, e) for i, (d, e) in per_layer.items()}, lm_head, glob


def decode_step_bytes(spec: ModelSpec, ctx: int, batch: int, quant: str, kv_dtype: str,
                      kv_cells: Callable[[int, int], int], file=None, head_quant: str | None = None) -> float:
    """Bytes moved by one decode step of ``batch`` sequences whose caches hold ``ctx`` positions
    (``file``: the exact weight file, whose stored bytes are read; ``head_quant``: see _weight_bytes_by_layer)."""
    t = spec.text
    dense, one_expert, lm_head, glob = _step_weight_bytes(spec, quant, file, head_quant)
    experts_hit = expected_distinct_experts(t.num_experts, t.top_k_experts, batch) if t.enable_moe_block else 0.0
    weights = glob + lm_head + dense + experts_hit * one_expert
    row = get_quant(quant).high_precision_bytes if get_quant(quant).family != "gguf" else 2
    rows = batch * t.hidden_size * row
    if t.has_ple:
        rows += batch * t.num_layers * t.hidden_size_per_layer_input * row
    # an engine's cells depend on a layer only through its type (every Engine.kv_cells): one call per type
    kv = sum(batch * kv_cells(layer, ctx) * nbytes for layer, nbytes in _kv_bytes_per_cell_by_type(t, kv_dtype))
    return weights + rows + kv


@lru_cache(maxsize=512)
def _step_weight_bytes(spec: ModelSpec, quant: str, file, head_quant: str | None) -> tuple[int, int, int, int]:
    """(dense bytes of every layer, bytes of one expert of every layer, LM head, global) read by a decode step."""
    per_layer, lm_head, glob = _weight_bytes_by_layer(spec, quant, file, head_quant)
    return sum(d for d, _ in per_layer.values()), sum(e for _, e in per_layer.values()), lm_head, glob


@lru_cache(maxsize=256)
def _kv_bytes_per_cell_by_type(t: TextSpec, kv_dtype: str) -> tuple[tuple[int, int], ...]:
    """Per layer type: (a cache-owning layer of that type, bytes of one cell summed over every layer that reads
    a cache of that type): each layer reads its source layer's cache (KV-shared layers: an earlier layer's)."""
    dt = get_kv_dtype(kv_dtype)
    by_type: dict[bool, list[int]] = {}
    for i in range(t.num_layers):
        src = t.kv_source_layer(i)
        entry = by_type.setdefault(t.is_sliding(src), [src, 0])
        entry[1] += kv_bytes_per_cell(t, src, dt)
    return tuple((layer, nbytes) for layer, nbytes in by_type.values())


@lru_cache(maxsize=256)
def _decode_flop_per_token(t: TextSpec) -> tuple[float, tuple[tuple[bool, float], ...]]:
    """(matmul FLOPs of one token over every layer, per layer type: attention FLOPs per key summed over its
    layers).  Every term is a whole number below 2**53, so grouping changes no bit of the sum."""
    per_layer = _layer_matmul_params(t)
    matmul, per_key = 0.0, {}
    for i in range(t.num_layers):
        dense, one_expert = per_layer[i]
        matmul += 2.0 * (dense + t.top_k_experts * one_expert)
        per_key[t.is_sliding(i)] = per_key.get(t.is_sliding(i), 0.0) + _attention_flop(t, i, 1)
    return matmul, tuple(per_key.items())


def decode_step_flop(spec: ModelSpec, ctx: int, batch: int) -> float:
    t = spec.text
    matmul, per_key = _decode_flop_per_token(t)
    attention = sum(f * (min(ctx, t.sliding_window) if sliding else ctx) for sliding, f in per_key)
    flop = batch * (matmul + attention)
    if t.has_ple:
        flop += batch * 2.0 * t.hidden_size * t.num_layers * t.hidden_size_per_layer_input
    return flop + batch * 2.0 * t.hidden_size * t.vocab_size


def prefill_weight_bytes(spec: ModelSpec, quant: str, file=None, head_quant: str | None = None) -> float:
    per_layer, lm_head, glob = _weight_bytes_by_layer(spec, quant, file, head_quant)
    return glob + lm_head + sum(d + spec.text.num_experts * e for d, e in per_layer.values())
