"""Towers: full multimodal models instantiate with the analytic parameter count; images become soft tokens."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from g4sim.analytic import count_params  # noqa: E402
from g4sim.model import count_parameters  # noqa: E402
from g4sim.model.towers import Gemma4ForConditionalGeneration, image_size_for_budget  # noqa: E402
from g4sim.spec import VARIANTS, ModelSpec, VisionSpec  # noqa: E402
from test_model_equivalence import CONFIGS  # noqa: E402


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_multimodal_meta_model_has_the_analytic_parameter_count(variant):
    spec = VARIANTS[variant]
    model = Gemma4ForConditionalGeneration.from_spec(spec, device="meta")
    assert count_parameters(model) == count_params(spec).total
    towers = {c.name: c.total for c in count_params(spec).components if c.tower}
    assert count_parameters(model.model.vision_tower) == towers["vision_tower"]
    if spec.audio is not None:
        assert count_parameters(model.model.audio_tower) == towers["audio_tower"]


@pytest.mark.parametrize("budget", [70, 280, 560, 1120])
def test_soft_token_budget(budget):
    v = VARIANTS["31b"].vision
    h, w = image_size_for_budget(v, 768, 1024, budget)
    cells = (h // 48) * (w // 48)
    assert cells <= budget and cells >= 0.8 * budget
    assert h % 48 == 0 and w % 48 == 0


def test_vision_forward_makes_soft_tokens_in_text_width():
    v = VisionSpec(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=4, head_dim=8,
                   position_embedding_size=64)
    spec = ModelSpec("tiny-mm", CONFIGS["31b-like"], vision=v)
    model = Gemma4ForConditionalGeneration.from_spec(spec)
    h, w = image_size_for_budget(v, 300, 400, 70)
    tokens = model.model.image_soft_tokens(torch.rand(2, 3, h, w))
    assert tokens.shape == (2, (h // 48) * (w // 48), spec.text.hidden_size)
    assert torch.isfinite(tokens).all()
    with pytest.raises(ValueError, match="outside 70..1120"):
        image_size_for_budget(v, 300, 400, 2000)
