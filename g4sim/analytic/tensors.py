"""The weight tensors of a spec, each tagged with its component and llama.cpp-style kind.

Storage formats (quant.py) price tensors one by one, because GGUF mixes pick a type per tensor.
The element counts add up to ``count_params`` exactly (tested).
"""

from __future__ import annotations

from functools import lru_cache

from g4sim.analytic.params import audio_params, vision_params
from g4sim.analytic.quant import QuantContext, Tensor
from g4sim.spec import ModelSpec, TextSpec


def text_tensors(t: TextSpec) -> list[Tensor]:
    return list(_text_tensors(t))


@lru_cache(maxsize=256)  # every weight format prices the same tensors: list them once per spec
def _text_tensors(t: TextSpec) -> tuple[Tensor, ...]:
    h, out = t.hidden_size, []
    out.append(Tensor("token_embedding", "token_embd", t.vocab_size, h))
    if t.has_ple:
        P, L = t.hidden_size_per_layer_input, t.num_layers
        out.append(Tensor("ple_table", "ple_table", t.vocab_size_per_layer_input, L * P))
        out.append(Tensor("ple_projections", "other", L * P, h))
        out.append(Tensor("ple_projections", "norm", 1, P))
    v_ordinal = 0
    for i in range(t.num_layers):
        hd, nq = t.head_dim_of(i), t.num_heads
        out += [Tensor("attention", "attn_q", nq * hd, h, i), Tensor("attention", "attn_output", h, nq * hd, i),
                Tensor("attention", "norm", 1, hd, i)]
        if not t.is_kv_shared(i):
            kv = t.kv_heads(i) * hd
            out += [Tensor("attention", "attn_k", kv, h, i), Tensor("attention", "norm", 1, hd, i)]
            if not t.k_eq_v(i):
                out.append(Tensor("attention", "attn_v", kv, h, i, ordinal=v_ordinal))
                v_ordinal += 1
        inter = t.mlp_intermediate(i)
        out += [Tensor("mlp", "ffn_gate", inter, h, i), Tensor("mlp", "ffn_up", inter, h, i),
                Tensor("mlp", "ffn_down", h, inter, i)]
        if t.enable_moe_block:
            E, Im = t.num_experts, t.moe_intermediate_size
            out += [Tensor("experts", "ffn_gate", Im, h, i, count=E), Tensor("experts", "ffn_up", Im, h, i, count=E),
                    Tensor("experts", "ffn_down", h, Im, i, count=E),
                    Tensor("router", "router", E, h, i), Tensor("router", "norm", 1, h + E, i)]
        if t.has_ple:
            P = t.hidden_size_per_layer_input
            out += [Tensor("ple_projections", "other", P, h, i), Tensor("ple_projections", "other", h, P, i)]
        n_norms = 4 + (3 if t.enable_moe_block else 0) + (1 if t.has_ple else 0)
        out.append(Tensor("norms", "norm", n_norms, h, i))
    out.append(Tensor("norms", "norm", 1, h))
    if not t.tie_word_embeddings:
        out.append(Tensor("lm_head", "token_embd", t.vocab_size, h))
    return tuple(out)


def model_tensors(spec: ModelSpec, *, vision: bool = False, audio: bool = False) -> list[Tensor]:
    """Text tensors plus, when asked for, each tower as one block (towers are stored unquantized)."""
    out = text_tensors(spec.text)
    h = spec.text.hidden_size
    if vision and spec.vision is not None:
        out += [Tensor("vision_tower", "other", 1, vision_params(spec.vision)),
                Tensor("vision_tower", "other", spec.vision.hidden_size, h)]
    if audio and spec.audio is not None:
        out += [Tensor("audio_tower", "other", 1, audio_params(spec.audio)),
                Tensor("audio_tower", "other", spec.audio.output_proj_dims, h)]
    return out


@lru_cache(maxsize=256)
def quant_context(t: TextSpec) -> QuantContext:
    tensors = text_tensors(t)
    return QuantContext(
        n_layers=t.num_layers,
        n_attn_v=sum(1 for x in tensors if x.kind == "attn_v"),
        n_ffn_down=sum(1 for x in tensors if x.kind == "ffn_down"),
        n_gqa=t.num_heads // t.kv_heads(0),
        n_expert=t.num_experts if t.enable_moe_block else 0,
    )
