"""g4sim's own PyTorch runtime (``g4sim.model``): what ``g4sim profile`` measures.

Preallocated cache: a sliding layer keeps a ring buffer of ``min(ctx, sliding_window)``
positions, a full layer ``ctx`` positions, KV-shared layers nothing; prefill attention is one
``scaled_dot_product_attention`` call with ``enable_gqa`` (no K/V expansion) over [ring ++ chunk]
on sliding layers (decode: ``decode_attention``'s fp32 matmuls); prefill is chunked; only the last position's logits are computed.  It loads
float weights and its own weight-only int8 / int4-gN, runs on one CPU or one CUDA GPU, and keeps
K/V in the model's dtype.  Its activations are priced step by step from the model's source
(``prefill_phases``): the prefill peak is the step where the most is live together, and each
profiler region's workspace (``G4simEngine.region_workspaces``) is what ``g4sim profile
--components`` measures.  No torch import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import ClassVar

from g4sim.analytic.components import Component, Location
from g4sim.analytic.memory import MemoryTerm
from g4sim.analytic.quant import get_quant
from g4sim.analytic.tensors import text_tensors
from g4sim.engines.base import (
    FLOAT_FORMATS, Caps, Engine, EngineError, Option, Parsed, Workload, activation_bytes_per_element, flag_values,
    split_command, to_int,
)
from g4sim.spec import FULL, SLIDING, TextSpec

# Transient bytes per element when g4sim.model.quant dequantizes a weight on the fly:
# int8 `(q.float() * scale).to(dtype)` holds two fp32 copies at its peak; int4 unpacking holds the
# padded fp32 codes, their scaled copy and the shifted sum (three fp32 copies).
DEQUANT_BYTES_PER_ELEMENT = {"int8": 8, "int4": 12}
# On a CPU, g4sim.model.quant multiplies through torch's packed kernels (_weight_int8pack_mm,
# _weight_int4pack_mm_for_cpu) up to these rows per matmul: no dequantized copy.  Above them it dequantizes
# one matrix into a bf16 GEMM: int8 a bf16 copy of the codes (2 B per element; measured 2.0), int4 unpacks its
# kernel layout (nibbles, fp32, bf16 and the concatenated tail: 9 B at most; measured 8.1-8.6).  The GEMM's
# output is the layer's activation, priced with it.  tests/test_model_quant.py measures both.
PACKED_MAX_ROWS = {"int8": 16, "int4": 1024}
CPU_DEQUANT_BYTES_PER_ELEMENT = {"int8": 2, "int4": 9}


def _quantized_matrices(t: TextSpec) -> list:
    """The attention and MLP / expert matrices g4sim.model.quant stores quantized."""
    return [x for x in text_tensors(t) if x.kind.startswith(("attn_", "ffn_"))]


def cpu_dequant_bytes(t: TextSpec, rows: int, bits: int, a: int) -> tuple[int, str]:
    """(bytes, why) of the transient weight copy a CPU matmul of ``rows`` rows makes (g4sim/model/quant.py)."""
    kind = "int4" if bits == 4 else "int8"
    mats = _quantized_matrices(t)
    largest = max(mats, key=lambda x: x.rows * x.cols)
    if rows <= PACKED_MAX_ROWS[kind]:
        # int4 with a partial group (704- / 2112-wide inputs): a column slice of x and a second output [rows, N]
        tail = [x for x in mats if kind == "int4" and x.cols % 128]
        extra = max((rows * (x.cols + x.rows) * a for x in tail), default=0)
        return extra, f"packed {kind} kernel at {rows} rows (<= {PACKED_MAX_ROWS[kind]}): no dequantized copy" + (
            "; partial g128 groups add an input slice and a second output" if extra else "")
    per = CPU_DEQUANT_BYTES_PER_ELEMENT[kind]
    return largest.rows * largest.cols * per, (
        f"{rows} rows > {PACKED_MAX_ROWS[kind]}: largest matrix {largest.rows * largest.cols:,} elements x {per} B "
        "dequantized for a bf16 GEMM")


# ---- g4sim's own prefill, step by step ---------------------------------------------------------------
# Every byte below is an allocation of g4sim/model/model.py in one prefill chunk, read from its source
# (the function and statement are named at each step).  Units: n tokens of the chunk, B sequences, a bytes
# per activation (2: bf16 / fp16, 4: fp32), h hidden size; "H" is one hidden-size tensor, B x n x h x a.
# tests/test_profile_components.py holds these against torch's allocator trace of the model (exact
# bytes) and against the resident-memory probe of `g4sim profile --components` (within 5 %).  What is
# left out is under 1 % of any region it belongs to at full width: the [n, 1] fp32 means of the norms,
# sdpa's logsumexp and per-thread tiles, GEMM scratch, the KV cache's slot indices.

@dataclass(frozen=True)
class Phase:
    """One step of a prefill chunk: what is live at its peak, beside weights and the KV cache."""

    step: str  # where in g4sim/model/model.py
    hidden: int  # hidden-size tensors live at the step's entry
    extra: int  # the chunk's other live tensors: cos/sin tables, sliding K/V copies, routing, gated PLE
    ple: int  # per_layer_inputs' result (live from its return to the end of the chunk)
    region: Component | None  # the profiler region the step's workspace belongs to (None: untagged)
    workspace: int  # the step's own transient bytes above its entry (the region instance's peak)
    workspace_note: str = ""

    @property
    def total(self) -> int:
        return self.hidden + self.extra + self.ple + self.workspace

    @property
    def term(self) -> Component:
        """The activation term the workspace is priced as (hidden states for norms, embeddings, untagged steps)."""
        return _TERM_OF_REGION.get(self.region, Component.HIDDEN_STATES)

    @property
    def hidden_bytes(self) -> int:
        """HIDDEN_STATES at this step: hidden-size tensors, the other live tensors, and the workspace of a
        step that works on hidden-size tensors themselves (a norm's fp32 copies, an embedding lookup)."""
        return self.hidden + self.extra + (self.workspace if self.term is Component.HIDDEN_STATES else 0)

    @property
    def hidden_note(self) -> str:
        folds = self.term is Component.HIDDEN_STATES and self.workspace
        folded = f" + {self.workspace:,} B of {self.workspace_note}" if folds else ""
        return (f"{self.hidden:,} B of hidden-size tensors + {self.extra:,} B of positions, cos/sin tables, sliding "
                f"K/V copies, routing and gated PLE{folded}")


_TERM_OF_REGION = {Component.ATTENTION: Component.ATTENTION_WORKSPACE, Component.MLP: Component.MLP_WORKSPACE,
                   Component.ROUTER: Component.MLP_WORKSPACE, Component.EXPERTS: Component.MLP_WORKSPACE,
                   Component.LOGITS: Component.LOGITS, Component.PLE_INPUTS: Component.PLE_INPUTS}


def norm_bytes(n: int, a: int, scale: bool = True) -> int:
    """``RMSNorm.forward`` on n elements: its peak above its input.  ``y = x.float()`` copies 16-bit input
    (aliases fp32); ``y.pow(2)`` lives beside it; ``y * rsqrt(...)`` and ``y * weight.float()`` each make a
    new fp32 tensor while the previous one lives: two fp32 copies at once (8n B).  Only a scale-free norm
    in fp32 stays at one (its output, 4n B)."""
    return 4 * n if a == 4 and not scale else 8 * n


def rope_table_bytes(n: int, d: int, a: int) -> int:
    """``TextModel.rope`` for n positions of head dim d: fp32 ``freqs`` [n, d/2] and ``emb`` [n, d] live to
    its end; ``emb.cos()`` / ``emb.sin()`` are fp32 and ``.to(dtype)`` copies them in 16-bit (the fp32 cos is
    freed once copied): freqs + emb + cos + fp32 sin + sin = 14 B per element either way."""
    return n * d * (2 + 4 + (a + 4 + a if a < 4 else 4 + 4))


def rope_bytes(n: int, a: int) -> int:
    """``apply_rope`` on n elements: x, ``rotated`` (the cat), ``x * cos``, ``rotated * sin`` and their sum
    are live together (the negated half is freed once concatenated)."""
    return 5 * n * a


def sdpa_mask(sliding: bool, n: int, kv_len: int, window: int) -> bool:
    """Whether ``Attention._mask`` builds an explicit boolean mask: not when every key is visible (n == 1) or
    the chunk attends only to itself causally, both within the window on sliding layers."""
    window_ok = not sliding or kv_len <= window
    return not (window_ok and (n == 1 or kv_len == n))


def attention_bytes(t: TextSpec, layer: int, n: int, kv_len: int, batch: int, a: int) -> tuple[int, str]:
    """``Attention.forward`` of one layer for n query tokens attending over kv_len keys: its peak above its
    input (the normed hidden states) and which statement reaches it."""
    hd, kvh = t.head_dim_of(layer), t.kv_heads(layer)
    q = batch * n * t.num_heads * hd * a
    steps = {"apply_rope on q (five q-sized tensors)": rope_bytes(q // a, a),  # in 16-bit, q_norm ties it:
             "q_norm (q_proj output + fp32 copies)": q + norm_bytes(q // a, a)}  # 2 + 8 B per element
    live = q  # q lives to the end of forward
    if not t.is_kv_shared(layer):
        k = batch * n * kvh * hd * a  # k_raw, v and the roped k live to the end of forward
        v_proj = 0 if t.k_eq_v(layer) else k  # v_proj's output is v_norm's argument
        steps["v_norm"] = q + k + v_proj + norm_bytes(k // a, a, scale=False)
        steps["k_norm"] = q + 2 * k + norm_bytes(k // a, a)
        steps["apply_rope on k"] = q + 2 * k + rope_bytes(k // a, a)
        live += 3 * k
        if t.is_sliding(layer):  # KVCache.update: torch.cat([ring slots, chunk]) for K, then V
            cat = batch * kvh * kv_len * hd * a
            ring = batch * kvh * (kv_len - n) * hd * a  # the gathered ring slots, freed after each cat
            steps["KVCache.update (K/V copies [ring ++ chunk])"] = live + cat + ring + cat
            live += 2 * cat
    cells = n * kv_len if sdpa_mask(t.is_sliding(layer), n, kv_len, t.sliding_window) else 0  # [n, kv_len], no batch
    if cells:
        steps["Attention._mask (bool mask + window bound)"] = live + cells * (2 if t.is_sliding(layer) else 1)
    out = batch * n * t.num_heads * hd * a
    # sdpa turns a boolean mask into an additive one of q's dtype, through a second boolean one (the allocator
    # trace of torch 2.13 on the CPU: mask, its negation, the additive mask); its output is [B, n, heads, hd]
    steps["scaled_dot_product_attention"] = live + cells * (2 + a) + out
    steps["o_proj"] = live + out + batch * n * t.hidden_size * a
    step = max(steps, key=steps.get)
    return steps[step], step


def mlp_bytes(t: TextSpec, layer: int, n: int, batch: int, a: int) -> int:
    """``MLP.forward``: gelu(gate) and up, then their product, live together (gate is freed once gelu
    returns); then the product beside down_proj's output."""
    i = t.mlp_intermediate(layer)
    return max(3 * batch * n * i * a, batch * n * (i + t.hidden_size) * a)


def router_bytes(t: TextSpec, tokens: int, a: int) -> int:
    """``Router.forward``: the scale-free fp32 norm, then two hidden-size products, the projection, the fp32
    softmax and top-k."""
    h, e, k = t.hidden_size, t.num_experts, t.top_k_experts
    return max(norm_bytes(tokens * h, a, scale=False), 2 * tokens * h * a, tokens * h * a + tokens * e * a,
               tokens * e * (a + 4), tokens * e * 4 + tokens * k * 12)


def busiest_expert_tokens(t: TextSpec, tokens: int) -> int:
    """Tokens the busiest expert of one MoE layer gets.  Every token picks top_k of num_experts; under balanced
    routing one expert's load is Binomial(tokens, k / E) and the largest of E of them lies about sqrt(2 ln E)
    standard deviations above the mean (the Gaussian extreme-value bound).  g4sim's randomly initialised
    router routes near-uniformly (its logits have std ~0.02), so this is its busiest expert; a trained
    router, more imbalanced, loads its busiest expert more."""
    p = t.top_k_experts / t.num_experts
    mean, sd = tokens * p, math.sqrt(tokens * p * (1 - p))
    return min(tokens, math.ceil(mean + sd * math.sqrt(2 * math.log(t.num_experts))))


def expert_bytes(t: TextSpec, n: int, previous: int, a: int) -> int:
    """One pass of ``Experts.forward``'s loop for an expert with n tokens, after one with ``previous``:
    the previous expert's fp32 ``y`` and gate_up output (``gate`` / ``up`` views) live until rebound.
    ``y = down(...) * weights[tok, slot, None]`` is fp32 (the routing weights are), and on 16-bit
    activations torch casts the down output to an fp32 copy first."""
    h, i = t.hidden_size, t.moe_intermediate_size
    gate_up, y_prev = 2 * i * n * a, 4 * h * previous
    return max(n * h * a + gate_up + 2 * i * previous * a + y_prev,  # x[tok], gate_up, the previous gate_up
               gate_up + 2 * i * n * a + y_prev,  # gelu(gate), gelu(gate) * up
               gate_up + i * n * a + n * h * a + y_prev,  # the product, down_proj's output
               gate_up + n * h * a + 4 * h * n * (2 if a < 4 else 1) + y_prev,  # y and the cast copy
               gate_up + 4 * h * n + (n * h * a if a < 4 else 0))  # y.to(out.dtype) for index_add_


def experts_bytes(t: TextSpec, tokens: int, a: int) -> tuple[int, int]:
    """``Experts.forward`` over ``tokens`` tokens, one expert at a time: ``out`` (zeros_like x), the sort's
    int64 ``order`` / ``token_of`` / ``slot_of`` over every routed pair, and the loop's worst pass, the
    busiest expert after one as busy.  Returns (bytes, busiest expert's tokens)."""
    busiest = busiest_expert_tokens(t, tokens)
    base = tokens * t.hidden_size * a + 3 * tokens * t.top_k_experts * 8
    return base + expert_bytes(t, busiest, busiest, a), busiest


def ple_inputs_bytes(t: TextSpec, n: int, batch: int, a: int) -> int:
    """``TextModel.per_layer_inputs``: the token lookup and its scaled copy; then token, the model
    projection and its scaled copy; then token and context beside the fp32 norm of context; then token,
    the normed context, their sum and its scaled copy."""
    u = batch * n * t.num_layers * t.hidden_size_per_layer_input
    return max(2 * u * a, 3 * u * a, 2 * u * a + norm_bytes(u, a), 4 * u * a)


def logits_region_bytes(t: TextSpec, m: int, batch: int, a: int) -> int:
    """``Gemma4ForCausalLM.logits`` for m positions: the LM head's output and its fp32 copy (one tensor in fp32);
    the final softcap runs in place on the fp32 copy."""
    v = batch * m * t.vocab_size
    return v * (a + 4) if a < 4 else 4 * v


@lru_cache(maxsize=4096)  # activation_terms and region_workspaces of one workload share it; searches repeat
def prefill_phases(t: TextSpec, *, chunk: int, ctx: int, batch: int, a: int, kept: int | None,
                   lookup: int = 0) -> tuple[Phase, ...]:
    """Every step of one prefill chunk of ``chunk`` tokens (``TextModel.forward`` and
    ``Gemma4ForCausalLM.logits``), in order: hidden-size tensors live at the step, the chunk's other
    live tensors, PLE inputs, and the step's own peak.  ``kept``: positions whose logits are computed (None:
    all); KV-shared layers run for those only.  Chunks after the first attend over the window's last
    positions (sliding) or the whole prefix (full): kv_len is the last chunk's, as the base rule has it.
    ``lookup``: bytes per element of an embedding lookup's temporary beside its result (an int8 table's fp32
    rows, ``QuantEmbedding``; 0 for a 16/32-bit table)."""
    c, h, B = chunk, t.hidden_size, batch
    m = c if kept is None else min(kept, c)
    H = B * c * h * a
    out: list[Phase] = []
    add = lambda step, hidden, extra, ple, region, ws, note="": out.append(  # noqa: E731
        Phase(step, hidden, extra, ple, region, ws, note))
    # TextModel.forward: x = self.embed_tokens(ids) * scale (the lookup, then its scaled copy beside it)
    add("embed_tokens", 0, 0, 0, Component.TOKEN_EMBEDDING, H + B * c * h * lookup,
        "the lookup" + (" (int8 rows x fp32 scales, then cast)" if lookup else ""))
    add("embedding scale", 2 * H, 0, 0, None, 0)
    ple = 0
    if t.has_ple:
        ws = ple_inputs_bytes(t, c, B, a)
        add("per_layer_inputs", H, 0, 0, Component.PLE_INPUTS, ws, "lookup, projection, fp32 norm")
        ple = B * c * t.num_layers * t.hidden_size_per_layer_input * a
    tables = 8 * c  # positions (int64); then self.rope(kind, ...) per layer type: cos and sin [chunk, head_dim]
    for kind in (SLIDING, FULL):
        if kind in t.layer_types:
            d = t.head_dim_of(t.layer_types.index(kind))
            add(f"rope ({kind})", H, tables, ple, Component.ATTENTION, rope_table_bytes(c, d, a), "cos/sin tables")
            tables += 2 * c * d * a
    shared = {SLIDING: 0, FULL: 0}  # shared[kind] = (keys, values, kv_pos) of the last owner of each type
    for i in range(t.num_layers):
        n = c if not t.is_kv_shared(i) else m  # x, positions, ple and ropes are sliced to the kept positions
        Hn = B * n * h * a
        kv_len = min(ctx, t.sliding_window - 1 + c) if t.is_sliding(i) else ctx
        norm = norm_bytes(B * n * h, a)
        sliced = H - Hn if i == t.first_kv_shared_layer else 0  # the first shared layer's x is a view of the chunk's
        extra = tables + sum(shared.values()) + sliced
        tag = f"layer {i}"
        add(f"{tag} input_layernorm", Hn, extra, ple, Component.NORMS, norm, "a norm's fp32 copies")
        attn, where = attention_bytes(t, i, n, kv_len, B, a)
        add(f"{tag} self_attn", 2 * Hn, extra, ple, Component.ATTENTION, attn, where)
        if not t.is_kv_shared(i):  # KVCache.update: sliding layers' K/V are [ring ++ chunk] copies, full layers'
            kind = SLIDING if t.is_sliding(i) else FULL  # views of the cache; kv_pos is int64 either way
            copies = 2 * B * t.kv_heads(i) * kv_len * t.head_dim_of(i) * a if kind == SLIDING else 0
            shared[kind] = copies + 8 * kv_len
        extra = tables + sum(shared.values()) + sliced
        # DecoderLayer.forward: the caller's x (the layer input) lives through the layer; so do residual and y
        add(f"{tag} post_attention_layernorm", 2 * Hn, extra, ple, Component.NORMS, norm, "a norm's fp32 copies")
        add(f"{tag} residual add", 3 * Hn, extra, ple, None, 0)
        add(f"{tag} pre_feedforward_layernorm", 2 * Hn, extra, ple, Component.NORMS, norm, "a norm's fp32 copies")
        add(f"{tag} mlp", 3 * Hn, extra, ple, Component.MLP, mlp_bytes(t, i, n, B, a),
            "gelu(gate), up and their product")
        if t.enable_moe_block:
            tokens = B * n
            routing = tokens * t.top_k_experts * 12  # fp32 weights and int64 index
            add(f"{tag} router", 3 * Hn, extra, ple, Component.ROUTER, router_bytes(t, tokens, a),
                "the router's fp32 norm")
            extra += routing
            add(f"{tag} pre_feedforward_layernorm_2", 3 * Hn, extra, ple, Component.NORMS, norm,
                "a norm's fp32 copies")
            ws, busiest = experts_bytes(t, tokens, a)
            add(f"{tag} experts", 4 * Hn, extra, ple, Component.EXPERTS, ws,
                f"out, the sort, the busiest expert's {busiest} tokens after one as busy")
            add(f"{tag} post_feedforward_layernorm_1", 4 * Hn, extra, ple, Component.NORMS, norm,
                "a norm's fp32 copies")
            add(f"{tag} post_feedforward_layernorm_2", 5 * Hn, extra, ple, Component.NORMS, norm,
                "a norm's fp32 copies")
            add(f"{tag} branch sum", 7 * Hn, extra, ple, None, 0)  # x, residual, y, routed, both normed, the sum
            add(f"{tag} post_feedforward_layernorm", 4 * Hn, extra, ple, Component.NORMS, norm,
                "a norm's fp32 copies")
            live = 5 * Hn  # x, residual, routed, y, x = residual + normed y
        else:
            add(f"{tag} post_feedforward_layernorm", 3 * Hn, extra, ple, Component.NORMS, norm,
                "a norm's fp32 copies")
            live = 4 * Hn  # x, residual, y, x = residual + normed y
        add(f"{tag} residual add", live + Hn, extra, ple, None, 0)
        if t.has_ple:
            p = t.hidden_size_per_layer_input
            gated = B * n * p * a
            add(f"{tag} per_layer_input_gate", live, extra, ple, Component.PLE_PROJECTIONS, gated, "the gate's output")
            add(f"{tag} gelu x PLE input", live, extra + 2 * gated, ple, None, 0)
            extra += gated
            add(f"{tag} per_layer_projection", live, extra, ple, Component.PLE_PROJECTIONS, Hn,
                "the projection's output")
            add(f"{tag} post_per_layer_input_norm", live + Hn, extra, ple, Component.PLE_PROJECTIONS, norm,
                "a norm's fp32 copies")
            add(f"{tag} PLE residual add", live + 2 * Hn, extra, ple, None, 0)
        add(f"{tag} layer scalar", live + Hn, extra, ple, None, 0)  # x * layer_scalar beside the layer's tensors
    # TextModel.forward's end: self.norm(x[:, -keep:]) (a view: x's storage, ple and the tables still live);
    # then, all of that freed, Gemma4ForCausalLM.logits on torch.cat(pieces) beside pieces
    Hm = B * m * h * a
    last = Hm if t.num_kv_shared_layers else H
    add("final norm", last, tables + sum(shared.values()), ple, Component.NORMS, norm_bytes(B * m * h, a),
        "a norm's fp32 copies")
    add("logits", 2 * Hm, 0, 0, Component.LOGITS, logits_region_bytes(t, m, B, a),
        "the LM head's output and its fp32 copy (the softcap in place)")
    return tuple(out)


@dataclass(frozen=True)
class G4simEngine(Engine):
    name: ClassVar[str] = "g4sim"
    description: ClassVar[str] = "g4sim's own PyTorch runtime (what `g4sim profile` measures)"
    caps: ClassVar[Caps] = Caps(weight_formats=FLOAT_FORMATS | {"int8", "int4-g128"}, kv_dtypes=FLOAT_FORMATS,
                                device_kinds=frozenset({"cpu", "gpu"}), vendors=None)
    options: ClassVar[tuple[Option, ...]] = (
        Option("prefill_chunk", ("--chunk",), "prompt tokens per forward pass",
               "g4sim profile --chunk (default: whole prompt; g4sim plans 4096)"),
    )
    command_names: ClassVar[tuple[str, ...]] = ("g4sim",)
    calibrates_profiles: ClassVar[bool] = True  # g4sim calibrate fits profiles on `g4sim profile` rows
    prefill_chunk: int | None = 4096
    packed_cpu_kernels: bool = False  # bound by ``memory`` on a CPU: int8 / int4 through torch's packed kernels

    def memory(self, w: Workload, device_kind: str = "gpu"):
        """On a CPU the weight-only formats run through packed kernels (``cpu_dequant_bytes``), elsewhere they
        dequantize a matrix per step (``DEQUANT_BYTES_PER_ELEMENT``)."""
        cpu = device_kind == "cpu" and get_quant(w.quant).family == "int"
        return super().memory(w, device_kind) if cpu == self.packed_cpu_kernels else \
            replace(self, packed_cpu_kernels=cpu).memory(w, device_kind)

    def head_quant(self, t: TextSpec, quant: str) -> str | None:
        """g4sim.model.quant stores the tied embedding int8 per row in both weight-only formats (the LM head)."""
        return "int8" if get_quant(quant).family == "int" and t.tie_word_embeddings else None

    def weight_terms(self, spec, quant: str, *, vision: bool, audio: bool, file=None) -> list[MemoryTerm]:
        terms = super().weight_terms(spec, quant, vision=vision, audio=audio, file=file)
        head = self.head_quant(spec.text, quant)
        if head is None or file is not None:
            return terms
        table = next(x for x in text_tensors(spec.text) if x.component == "token_embedding")
        return [replace(term, bytes=get_quant(head).linear_bytes(table),
                        source=f"{head} per row (g4sim.model.quant.QuantEmbedding: the tied LM head, "
                               "looked up row by row)")
                if term.component is Component.TOKEN_EMBEDDING else term for term in terms]

    def __post_init__(self) -> None:
        if self.prefill_chunk is not None and self.prefill_chunk < 1:
            raise EngineError(f"--chunk {self.prefill_chunk} must be a positive number of tokens")

    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        fmt = get_quant(w.quant)
        if fmt.name.startswith("int4-g"):  # any group size quantizes
            w = Workload(w.spec, w.ctx, w.batch, "int4-g128", w.kv_dtype, w.vision, w.audio)
        reason = super().compatibility(w, device, gpus)
        if reason is None and device.kind == "gpu" and device.vendor != "nvidia":
            reason = f"g4sim's runtime runs on CPUs and CUDA GPUs, not on {device.name}"
        dtype = "bf16" if fmt.family == "int" else fmt.name  # quantized weights compute in bf16
        if reason is None and w.kv_dtype != dtype:
            reason = f"g4sim's cache takes the model's dtype ({dtype}), not {w.kv_dtype}"
        return reason

    def chunk_tokens(self, ctx: int) -> int:
        return self.prefill_chunk or ctx

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        """The prefill peak of activations: the step of ``prefill_phases`` where the most is live together,
        as hidden states (and the chunk's other live tensors), PLE inputs and that step's workspace."""
        phases = self.prefill_phases(t, ctx=ctx, batch=batch, quant=quant)
        peak = max(phases, key=lambda p: p.total)
        terms = [MemoryTerm(Component.HIDDEN_STATES, peak.hidden_bytes, Location.ACCELERATOR,
                            f"live at the prefill peak ({peak.step}): {peak.hidden_note}")]
        if peak.term is not Component.HIDDEN_STATES and peak.workspace:
            terms.append(MemoryTerm(peak.term, peak.workspace, Location.ACCELERATOR,
                                    f"{peak.step}: {peak.region.value} region's peak ({peak.workspace_note}); the "
                                    f"largest of {len(phases)} prefill steps' live bytes, not the largest workspace"))
        if peak.ple:
            terms.append(MemoryTerm(Component.PLE_INPUTS, peak.ple, Location.ACCELERATOR,
                                    "batch x chunk x layers x ple_dim x a B (per_layer_inputs' result, live through "
                                    "every layer)"))
        fmt = get_quant(quant)
        if fmt.family == "int" and self.packed_cpu_kernels:
            rows = batch * min(ctx, self.chunk_tokens(ctx))
            nbytes, why = cpu_dequant_bytes(t, rows, fmt.linear_bits, activation_bytes_per_element(quant))
            terms.append(MemoryTerm(Component.DEQUANT_WORKSPACE, nbytes, Location.ACCELERATOR, why))
        elif fmt.family == "int":  # weight-only int8 / int4: one matrix (or one expert) dequantized at a time
            per = DEQUANT_BYTES_PER_ELEMENT["int4" if fmt.linear_bits == 4 else "int8"]
            largest = max(x.rows * x.cols for x in _quantized_matrices(t))
            terms.append(MemoryTerm(Component.DEQUANT_WORKSPACE, largest * per, Location.ACCELERATOR,
                                    f"largest quantized matrix {largest:,} elements x {per} B "
                                    "(fp32 copies while dequantizing on the fly)"))
        return terms

    def region_workspaces(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> dict[Component, int]:
        """Per profiler region (``g4sim.measure.components``: the Component a region is tagged with), the
        rule's worst prefill peak of one instance above the memory at its entry: what ``g4sim profile
        --components`` measures as ``prefill_peak_bytes.<region>``."""
        out: dict[Component, int] = {}
        for p in self.prefill_phases(t, ctx=ctx, batch=batch, quant=quant):
            if p.region is not None:
                out[p.region] = max(out.get(p.region, 0), p.workspace)
        return out

    def prefill_phases(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> tuple[Phase, ...]:
        """Every step of one prefill chunk of g4sim's model, in order, with what is live at its peak."""
        return prefill_phases(t, chunk=min(ctx, self.chunk_tokens(ctx)), ctx=ctx, batch=batch,
                              a=activation_bytes_per_element(quant),
                              kept=min(self.logits_kept, ctx) if self.logits_kept else None,
                              lookup=4 if self.head_quant(t, quant) else 0)

    # ---- commands ---------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        fmt = get_quant(w.quant)
        parts = [f"g4sim profile --model {w.spec.name} --ctx {w.ctx} --batch {w.batch}",
                 f"--device {'cuda' if device.kind == 'gpu' else 'cpu'}",
                 f"--dtype {'bf16' if fmt.family == 'int' else fmt.name}"]
        if fmt.family == "int":
            parts.append(f"--quant {fmt.name}")
        if self.prefill_chunk:
            parts.append(f"--chunk {self.prefill_chunk}")
        return " ".join(parts)

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        argv = split_command(text)
        if argv[1:2] != ["profile"]:
            raise EngineError("only `g4sim profile ...` command lines describe a deployment of g4sim's runtime")
        known = {"--model": "model", "-m": "model", "--ctx": "ctx", "-c": "ctx", "--batch": "batch",
                 "--device": "device", "--dtype": "dtype", "--quant": "quant", "--chunk": "chunk"}
        v = flag_values(argv[2:], known)
        dtype = v.get("dtype", "bf16")
        quant = v.get("quant") or dtype
        chunk = to_int("--chunk", v["chunk"]) if "chunk" in v else None
        ctx = to_int("--ctx", v["ctx"]) if "ctx" in v else None
        return Parsed(cls(prefill_chunk=chunk), v.get("model"), quant, dtype, ctx,
                      to_int("--batch", v.get("batch", 1)), 1)
