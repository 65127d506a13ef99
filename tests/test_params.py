"""Parameter counts equal transformers' Gemma 4 on the meta device, to the parameter."""

from __future__ import annotations

import re

import pytest

from conftest import hf_config, hf_text_config
from g4sim.analytic import count_params
from g4sim.spec import VARIANTS, get_variant

transformers = pytest.importorskip("transformers")


def _meta_params(model_cls, config) -> dict[str, int]:
    import torch

    with torch.device("meta"):
        model = model_cls(config)
    return {name: p.numel() for name, p in model.named_parameters()}


# Map a reference parameter name to g4sim's component name.
_COMPONENT_RULES = [
    (r"embed_tokens_per_layer\.", "ple_table"),
    (r"embed_tokens\.", "token_embedding"),
    (r"per_layer_(model_projection|projection_norm|input_gate|projection)\.", "ple_projections"),
    (r"\.experts\.", "experts"),
    (r"\.router\.", "router"),
    (r"self_attn\.(q|k|v|o)_proj|self_attn\.(q|k)_norm", "attention"),
    (r"\.mlp\.", "mlp"),
    (r"norm", "norms"),
]


def _component(name: str) -> str:
    for pattern, component in _COMPONENT_RULES:
        if re.search(pattern, name):
            return component
    raise AssertionError(f"unmapped reference parameter {name}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_text_params_equal_reference_per_component(variant):
    spec = VARIANTS[variant]
    ref = _meta_params(transformers.Gemma4ForCausalLM, hf_text_config(spec.text))
    per_component: dict[str, int] = {}
    for name, n in ref.items():
        per_component[_component(name)] = per_component.get(_component(name), 0) + n
    ours = count_params(spec, vision=False, audio=False)
    assert ours.total == sum(ref.values())
    assert {c.name: c.total for c in ours.components} == per_component


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_multimodal_params_equal_reference(variant):
    spec = VARIANTS[variant]
    ref = _meta_params(transformers.Gemma4ForConditionalGeneration, hf_config(spec))
    ours = count_params(spec)
    assert ours.total == sum(ref.values())
    towers = {
        "vision_tower": sum(n for k, n in ref.items() if ".vision_tower." in k),
        "audio_tower": sum(n for k, n in ref.items() if ".audio_tower." in k),
        "vision_projector": sum(n for k, n in ref.items() if ".embed_vision." in k),
        "audio_projector": sum(n for k, n in ref.items() if ".embed_audio." in k),
    }
    got = {c.name: c.total for c in ours.components if c.tower}
    assert got == {k: v for k, v in towers.items() if v}


def test_exact_counts_of_the_published_variants():
    # Exact figures, independently confirmed by the two reference tests above.
    expected = {  # variant: (text total, effective (no PLE), active, with towers)
        "e2b": (4_628_569_344, 2_279_759_104, 4_628_569_344, 5_104_297_504),
        "e4b": (7_463_013_376, 4_644_441_088, 7_463_013_376, 7_941_100_832),
        "26b-a4b": (25_233_141_760, 25_233_141_760, 3_822_530_560, 25_805_933_872),
        "31b": (30_697_345_280, 30_697_345_280, 30_697_345_280, 31_273_086_512),
    }
    for variant, (total, effective, active, with_towers) in expected.items():
        text = count_params(VARIANTS[variant], vision=False, audio=False)
        assert (text.total, text.effective, text.active) == (total, effective, active), variant
        assert count_params(VARIANTS[variant]).total == with_towers, variant


def test_headline_numbers():
    moe = count_params(get_variant("26b-a4b"), vision=False, audio=False)
    assert round(moe.total / 1e9, 1) == 25.2
    assert round(moe.active / 1e9, 1) == 3.8
    assert round(count_params(get_variant("31b"), vision=False, audio=False).total / 1e9, 1) == 30.7
    e2b = count_params(get_variant("e2b"), vision=False, audio=False)
    assert round(e2b.effective / 1e9, 1) == 2.3
    assert e2b["ple_table"] == 262_144 * 35 * 256


@pytest.mark.parametrize("variant,layers", [("e2b", 10), ("e4b", 12), ("26b-a4b", 6), ("31b", 6)])
def test_reduced_depth_counts_equal_reference(variant, layers):
    spec = VARIANTS[variant].reduced(layers)
    ref = _meta_params(transformers.Gemma4ForCausalLM, hf_text_config(spec.text))
    assert count_params(spec, vision=False, audio=False).total == sum(ref.values())


def test_spec_from_reference_config_roundtrip():
    """A config.json written by transformers reads back into the same spec."""
    from g4sim.spec import spec_from_config

    for spec in VARIANTS.values():
        cfg = hf_config(spec).to_dict()
        assert spec_from_config(cfg).text == spec.text
        assert spec_from_config(cfg).vision == spec.vision
