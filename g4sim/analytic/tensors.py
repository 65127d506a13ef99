"""The weight tensors of a spec, each tagged with its component, llama.cpp-style kind and GGUF name.

Storage formats (quant.py) price tensors one by one, because GGUF mixes pick a type per tensor.
The element counts of the parameter tensors add up to ``count_params`` exactly (tested).

Each tensor carries the name llama.cpp's converter gives it in a GGUF file (``conversion/gemma.py``
Gemma4Model, ``gguf-py/gguf/tensor_mapping.py``; the names the gemma4 loader reads,
``src/models/gemma4.cpp``), so that g4sim can be compared with llama.cpp's quantizer tensor by
tensor (tests/test_llamacpp_quantize.py).  One g4sim tensor is one GGUF tensor, except the routed
experts' gate and up projections, which g4sim keeps apart (kinds ``ffn_gate`` / ``ffn_up``) and the
GGUF file stores fused as ``blk.N.ffn_gate_up_exps.weight``: both carry that name.

A converted GGUF also holds two tensors that are not parameters of the model (``parameter=False``;
they cost bytes only in GGUF formats): ``rope_freqs.weight`` (the proportional-RoPE frequency
factors the converter generates for full layers, global_head_dim / 2 floats) and, per layer,
``blk.N.layer_output_scale.weight`` (transformers' ``layer_scalar`` buffer, one float).
"""

from __future__ import annotations

from functools import lru_cache

from g4sim.analytic.params import audio_params, vision_params
from g4sim.analytic.quant import QuantContext, Tensor
from g4sim.spec import FULL, ModelSpec, TextSpec


def text_tensors(t: TextSpec) -> list[Tensor]:
    return list(_text_tensors(t))


def gguf_name(x: Tensor) -> str:
    """The GGUF tensor name of ``x`` (empty for tensors a text GGUF does not hold, e.g. towers)."""
    return x.name


@lru_cache(maxsize=256)  # every weight format prices the same tensors: list them once per spec
def _text_tensors(t: TextSpec) -> tuple[Tensor, ...]:
    h, L, out = t.hidden_size, t.num_layers, []
    out.append(Tensor("token_embedding", "token_embd", t.vocab_size, h, name="token_embd.weight"))
    if t.has_ple:
        P = t.hidden_size_per_layer_input
        out.append(Tensor("ple_table", "ple_table", t.vocab_size_per_layer_input, L * P,
                          name="per_layer_token_embd.weight"))
        out.append(Tensor("ple_projections", "other", L * P, h, name="per_layer_model_proj.weight"))
        out.append(Tensor("ple_projections", "norm", 1, P, name="per_layer_proj_norm.weight"))
    if FULL in t.layer_types:  # llama.cpp creates it with the first full layer (TENSOR_DUPLICATED after)
        out.append(Tensor("attention", "norm", 1, t.global_head_dim // 2, t.layer_types.index(FULL),
                          name="rope_freqs.weight", parameter=False))
    v_ordinal = 0
    for i in range(L):
        hd, nq, b = t.head_dim_of(i), t.num_heads, f"blk.{i}."
        out += [Tensor("attention", "attn_q", nq * hd, h, i, name=b + "attn_q.weight"),
                Tensor("attention", "attn_output", h, nq * hd, i, name=b + "attn_output.weight"),
                Tensor("attention", "norm", 1, hd, i, name=b + "attn_q_norm.weight")]
        if not t.is_kv_shared(i):
            kv = t.kv_heads(i) * hd
            out += [Tensor("attention", "attn_k", kv, h, i, name=b + "attn_k.weight"),
                    Tensor("attention", "norm", 1, hd, i, name=b + "attn_k_norm.weight")]
            if not t.k_eq_v(i):
                out.append(Tensor("attention", "attn_v", kv, h, i, ordinal=v_ordinal, name=b + "attn_v.weight"))
                v_ordinal += 1
        inter = t.mlp_intermediate(i)
        out += [Tensor("mlp", "ffn_gate", inter, h, i, name=b + "ffn_gate.weight"),
                Tensor("mlp", "ffn_up", inter, h, i, name=b + "ffn_up.weight"),
                Tensor("mlp", "ffn_down", h, inter, i, name=b + "ffn_down.weight")]
        norms = ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"]
        if t.enable_moe_block:
            E, Im = t.num_experts, t.moe_intermediate_size
            out += [Tensor("experts", "ffn_gate", Im, h, i, count=E, name=b + "ffn_gate_up_exps.weight"),
                    Tensor("experts", "ffn_up", Im, h, i, count=E, name=b + "ffn_gate_up_exps.weight"),
                    Tensor("experts", "ffn_down", h, Im, i, count=E, name=b + "ffn_down_exps.weight"),
                    Tensor("router", "router", E, h, i, name=b + "ffn_gate_inp.weight"),
                    Tensor("router", "norm", 1, h, i, name=b + "ffn_gate_inp.scale"),  # router.scale
                    Tensor("router", "norm", 1, E, i, name=b + "ffn_down_exps.scale")]  # router.per_expert_scale
            norms += ["pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2"]
        if t.has_ple:
            P = t.hidden_size_per_layer_input
            out += [Tensor("ple_projections", "other", P, h, i, name=b + "inp_gate.weight"),
                    Tensor("ple_projections", "other", h, P, i, name=b + "proj.weight")]
            norms.append("post_norm")
        out += [Tensor("norms", "norm", 1, h, i, name=b + f"{n}.weight") for n in norms]
        out.append(Tensor("norms", "norm", 1, 1, i, name=b + "layer_output_scale.weight", parameter=False))
    out.append(Tensor("norms", "norm", 1, h, name="output_norm.weight"))
    if not t.tie_word_embeddings:
        out.append(Tensor("lm_head", "token_embd", t.vocab_size, h, name="output.weight"))
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
        tied_embeddings=t.tie_word_embeddings,
    )
