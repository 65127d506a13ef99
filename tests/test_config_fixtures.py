"""g4sim's specs and parameter counts against the public configs, not against g4sim's own spec.

tests/data/configs/<variant>/config.json are written by transformers' Gemma4Config from the per-variant
table of transformers' conversion script (scripts/write_config_fixtures.py says which commit).  Here
g4sim's built-in variants must equal what g4sim reads from those files, and g4sim's parameter counts
must equal transformers' Gemma 4 built on the meta device from the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from g4sim.analytic import count_params
from g4sim.spec import get_variant, load_config

CONFIGS = Path(__file__).parent / "data" / "configs"
VARIANTS = ("e2b", "e4b", "26b-a4b", "31b")


@pytest.mark.parametrize("name", VARIANTS)
def test_builtin_variant_equals_the_public_config(name):
    from_file = load_config(CONFIGS / name)
    builtin = get_variant(name)
    assert from_file.text == builtin.text
    assert from_file.vision == builtin.vision and from_file.audio == builtin.audio
    assert from_file.max_context == builtin.max_context


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_counts_equal_transformers_built_from_the_public_config(name, torch):
    from transformers import Gemma4Config, Gemma4ForCausalLM, Gemma4ForConditionalGeneration

    cfg = Gemma4Config(**json.loads((CONFIGS / name / "config.json").read_text()))
    with torch.device("meta"):
        text = Gemma4ForCausalLM(cfg.text_config)
        full = Gemma4ForConditionalGeneration(cfg)
    spec = get_variant(name)
    ours_text = count_params(spec, vision=False, audio=False)
    ours_full = count_params(spec, vision=spec.vision is not None, audio=spec.audio is not None)
    assert ours_text.total == sum(p.numel() for p in text.parameters())
    assert ours_full.total == sum(p.numel() for p in full.parameters())
