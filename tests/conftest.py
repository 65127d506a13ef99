"""Shared test helpers: transformers configs built from g4sim specs (the independent reference)."""

from __future__ import annotations

import pytest

from g4sim.measure.hf import hf_text_config  # noqa: F401  (re-exported for the tests)
from g4sim.spec import ModelSpec


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
