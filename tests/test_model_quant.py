"""Quantized weights: stored bytes equal the analytic format's bytes, and the model still computes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from g4sim.analytic import weight_bytes_by_component  # noqa: E402
from g4sim.model import Gemma4ForCausalLM, parameter_bytes  # noqa: E402
from g4sim.model.quant import quantize_weights  # noqa: E402
from g4sim.spec import VARIANTS  # noqa: E402
from test_model_equivalence import CONFIGS  # noqa: E402


@pytest.mark.parametrize("fmt", ["int8", "int4-g128", "int4-g32"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_quantized_bytes_equal_analytic(name, fmt):
    spec = CONFIGS[name]
    model = quantize_weights(Gemma4ForCausalLM.from_spec(spec, dtype=torch.bfloat16), fmt)
    from g4sim.spec import ModelSpec

    predicted = sum(weight_bytes_by_component(ModelSpec("x", spec), fmt).values())
    # layer_scalar buffers (one element per layer) are not weights the formats price
    layer_scalars = sum(b.nbytes for n, b in model.named_buffers() if n.endswith("layer_scalar"))
    assert parameter_bytes(model) - layer_scalars == predicted


@pytest.mark.parametrize("fmt,tolerance", [("int8", 0.01), ("int4-g32", 0.1)])
def test_dequantized_weights_are_close(fmt, tolerance):
    from g4sim.model.quant import QuantTensor

    w = torch.randn(3, 64, 200, generator=torch.Generator().manual_seed(0)) * 0.02  # 200: a partial last group
    q = QuantTensor(w, fmt)
    assert ((q.weight() - w).norm() / w.norm()).item() < tolerance
    assert torch.equal(q.weight(1), q.weight()[1])  # per-expert dequantization


@pytest.mark.parametrize("fmt,min_cosine", [("int8", 0.99), ("int4-g32", 0.8)])  # small random models amplify error; broken packing gives ~0
def test_quantized_model_output_stays_aligned(fmt, min_cosine):
    spec = CONFIGS["31b-like"]
    ids = torch.randint(0, spec.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    a = Gemma4ForCausalLM.from_spec(spec)(ids, logits_to_keep=None).flatten()
    b = quantize_weights(Gemma4ForCausalLM.from_spec(spec), fmt)(ids, logits_to_keep=None).flatten()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0).item() > min_cosine


def test_real_width_layer_quantized_bytes():
    spec = VARIANTS["26b-a4b"].reduced(1)
    model = Gemma4ForCausalLM.from_spec(spec, dtype=torch.bfloat16, device="meta")
    assert model is not None  # meta construction at full width works; real quantization is covered above
