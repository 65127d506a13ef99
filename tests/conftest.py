"""Shared test helpers: transformers configs built from g4sim specs (the independent reference)."""

from __future__ import annotations

import pytest

from g4sim.spec import FULL, SLIDING, ModelSpec, TextSpec


def hf_text_config(t: TextSpec):
    """A transformers Gemma4TextConfig equal to ``t`` (keys as in convert_gemma4_weights.py)."""
    from transformers import Gemma4TextConfig

    return Gemma4TextConfig(
        hidden_size=t.hidden_size, num_hidden_layers=t.num_layers, layer_types=list(t.layer_types),
        sliding_window=t.sliding_window, num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
        num_global_key_value_heads=t.num_global_kv_heads, head_dim=t.head_dim, global_head_dim=t.global_head_dim,
        attention_k_eq_v=t.attention_k_eq_v, num_kv_shared_layers=t.num_kv_shared_layers,
        intermediate_size=t.intermediate_size, use_double_wide_mlp=t.use_double_wide_mlp, vocab_size=t.vocab_size,
        hidden_size_per_layer_input=t.hidden_size_per_layer_input,
        vocab_size_per_layer_input=t.vocab_size_per_layer_input, enable_moe_block=t.enable_moe_block,
        num_experts=t.num_experts or None, top_k_experts=t.top_k_experts or None,
        moe_intermediate_size=t.moe_intermediate_size or None, max_position_embeddings=t.max_position_embeddings,
        final_logit_softcapping=t.final_logit_softcapping, rms_norm_eps=t.rms_norm_eps,
        tie_word_embeddings=t.tie_word_embeddings,
        rope_parameters={
            SLIDING: {"rope_type": t.rope_sliding.rope_type, "rope_theta": t.rope_sliding.theta},
            FULL: {"rope_type": t.rope_full.rope_type, "rope_theta": t.rope_full.theta,
                   "partial_rotary_factor": t.rope_full.partial_rotary_factor},
        },
    )


def hf_config(spec: ModelSpec):
    """A transformers Gemma4Config (text + towers) equal to ``spec``."""
    from transformers import Gemma4AudioConfig, Gemma4Config, Gemma4VisionConfig

    v, a = spec.vision, spec.audio
    vision = None if v is None else Gemma4VisionConfig(
        hidden_size=v.hidden_size, intermediate_size=v.intermediate_size, num_hidden_layers=v.num_layers,
        num_attention_heads=v.num_heads, num_key_value_heads=v.num_kv_heads, head_dim=v.head_dim,
        global_head_dim=v.head_dim, patch_size=v.patch_size, pooling_kernel_size=v.pooling_kernel_size,
        position_embedding_size=v.position_embedding_size, use_clipped_linears=v.use_clipped_linears,
        standardize=v.standardize, default_output_length=v.default_output_length,
    )
    audio = None if a is None else Gemma4AudioConfig(
        hidden_size=a.hidden_size, num_hidden_layers=a.num_layers, num_attention_heads=a.num_heads,
        subsampling_conv_channels=list(a.subsampling_conv_channels), conv_kernel_size=a.conv_kernel_size,
        output_proj_dims=a.output_proj_dims, use_clipped_linears=a.use_clipped_linears,
    )
    return Gemma4Config(text_config=hf_text_config(spec.text), vision_config=vision, audio_config=audio)


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")
