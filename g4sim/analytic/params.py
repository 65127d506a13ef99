"""Parameter accounting per component: total, active per token, and effective (without PLE).

Shapes follow transformers 5.x ``models/gemma4/modeling_gemma4.py`` (Gemma4TextAttention,
Gemma4TextMLP, Gemma4TextRouter, Gemma4TextExperts, Gemma4TextDecoderLayer, Gemma4TextModel,
Gemma4VisionModel, Gemma4AudioModel, Gemma4MultimodalEmbedder); ``tests/test_params.py`` checks
every total against that implementation on the meta device, to the parameter.

Conventions (DESIGN.md): active = everything but the routed experts, plus top_k / num_experts of
the experts; effective = total without the PLE table.  Tied lm_head adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from g4sim.spec import AudioSpec, ModelSpec, TextSpec, VisionSpec


@dataclass(frozen=True)
class ComponentParams:
    name: str
    total: int
    active: int
    ple: bool = False  # part of the per-layer-embedding table (excluded from "effective")
    tower: bool = False  # vision / audio tower or its projector


@dataclass(frozen=True)
class ParamBreakdown:
    components: tuple[ComponentParams, ...]

    @property
    def total(self) -> int:
        return sum(c.total for c in self.components)

    @property
    def active(self) -> int:
        return sum(c.active for c in self.components)

    @property
    def effective(self) -> int:
        return sum(c.total for c in self.components if not c.ple)

    def by_name(self) -> dict[str, ComponentParams]:
        return {c.name: c for c in self.components}

    def __getitem__(self, name: str) -> int:
        return self.by_name()[name].total


# ---- text decoder, per layer ---------------------------------------------

def attention_params(t: TextSpec, layer: int) -> int:
    """q/o projections and q_norm always; k/v projections and k_norm only on layers that own K/V.

    v_norm has no scale; k_eq_v full layers have no v_proj.
    """
    hd, h = t.head_dim_of(layer), t.hidden_size
    n = 2 * h * t.num_heads * hd + hd  # q_proj, o_proj, q_norm
    if not t.is_kv_shared(layer):
        kv_out = t.kv_heads(layer) * hd
        n += h * kv_out + hd  # k_proj, k_norm
        if not t.k_eq_v(layer):
            n += h * kv_out  # v_proj
        if t.attention_bias:
            n += kv_out * (1 if t.k_eq_v(layer) else 2)
    if t.attention_bias:
        n += t.num_heads * hd + h
    return n


def mlp_params(t: TextSpec, layer: int) -> int:
    """Dense gated MLP (gate, up, down); double-wide on KV-shared layers when configured."""
    return 3 * t.hidden_size * t.mlp_intermediate(layer)


def expert_params(t: TextSpec) -> int:
    """All routed experts of one MoE layer: gate_up [E, 2I, H] and down [E, H, I]."""
    return 3 * t.num_experts * t.moe_intermediate_size * t.hidden_size if t.enable_moe_block else 0


def router_params(t: TextSpec) -> int:
    """Router projection [E, H], its input scale [H] and per-expert scale [E]."""
    return (t.num_experts * t.hidden_size + t.hidden_size + t.num_experts) if t.enable_moe_block else 0


def layer_norm_params(t: TextSpec) -> int:
    """Four RMSNorms per block, three more in MoE blocks, one more with PLE."""
    n = 4 + (3 if t.enable_moe_block else 0) + (1 if t.has_ple else 0)
    return n * t.hidden_size


def ple_layer_params(t: TextSpec) -> int:
    """Per-layer gate [P, H] and projection [H, P] (the norm is counted with the norms)."""
    return 2 * t.hidden_size * t.hidden_size_per_layer_input if t.has_ple else 0


def text_components(t: TextSpec) -> list[ComponentParams]:
    L, h = t.num_layers, t.hidden_size
    attn = sum(attention_params(t, i) for i in range(L))
    mlp = sum(mlp_params(t, i) for i in range(L))
    experts = L * expert_params(t)
    experts_active = int(Fraction(experts * t.top_k_experts, t.num_experts)) if t.enable_moe_block else 0
    router = L * router_params(t)
    norms = L * layer_norm_params(t) + h  # + final norm
    comps = [ComponentParams("token_embedding", t.vocab_size * h, t.vocab_size * h)]
    if t.has_ple:
        table = t.vocab_size_per_layer_input * L * t.hidden_size_per_layer_input
        proj = h * L * t.hidden_size_per_layer_input + t.hidden_size_per_layer_input + L * ple_layer_params(t)
        comps += [ComponentParams("ple_table", table, table, ple=True), ComponentParams("ple_projections", proj, proj)]
    comps += [ComponentParams("attention", attn, attn), ComponentParams("mlp", mlp, mlp)]
    if t.enable_moe_block:
        comps += [ComponentParams("experts", experts, experts_active), ComponentParams("router", router, router)]
    comps.append(ComponentParams("norms", norms, norms))
    if not t.tie_word_embeddings:
        comps.append(ComponentParams("lm_head", t.vocab_size * h, t.vocab_size * h))
    return comps


# ---- towers --------------------------------------------------------------

def vision_params(v: VisionSpec) -> int:
    """Patch embedder (input projection + 2-D position table) and the encoder layers."""
    h = v.hidden_size
    embed = 3 * v.patch_size**2 * h + 2 * v.position_embedding_size * h
    attn = 2 * h * v.num_heads * v.head_dim + 2 * h * v.num_kv_heads * v.head_dim + 2 * v.head_dim
    layer = attn + 3 * h * v.intermediate_size + 4 * h
    return embed + v.num_layers * layer


def audio_params(a: AudioSpec) -> int:
    """Conformer: conv subsampler, macaron FFNs, relative-position attention, light conv, output projection."""
    h = a.hidden_size
    c0, c1 = a.subsampling_conv_channels
    subsample = c0 * 1 * 9 + c0 + c1 * c0 * 9 + c1 + (c0 // 4) * c1 * h
    ffn = 2 * (2 * h * 4 * h + 2 * h)  # two FFN blocks, each 2 linears + 2 norms
    attn = h // a.num_heads + 5 * h * h  # per_dim_scale, q, k, v, post, relative_k
    lconv = 2 * h * h + h * h + h * a.conv_kernel_size + 2 * h
    layer = ffn + attn + lconv + 3 * h
    return subsample + a.num_layers * layer + a.output_proj_dims * h + a.output_proj_dims


def count_params(spec: ModelSpec, *, vision: bool = True, audio: bool = True) -> ParamBreakdown:
    """Parameters of ``spec``, with its towers when asked for and present."""
    comps = text_components(spec.text)
    h = spec.text.hidden_size
    if vision and spec.vision is not None:
        n = vision_params(spec.vision)
        proj = spec.vision.hidden_size * h
        comps += [ComponentParams("vision_tower", n, n, tower=True),
                  ComponentParams("vision_projector", proj, proj, tower=True)]
    if audio and spec.audio is not None:
        n = audio_params(spec.audio)
        proj = spec.audio.output_proj_dims * h
        comps += [ComponentParams("audio_tower", n, n, tower=True),
                  ComponentParams("audio_projector", proj, proj, tower=True)]
    return ParamBreakdown(tuple(comps))
