"""The model's cache and parameters against the analytic side: bytes allocated equal bytes predicted."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from g4sim.engines import estimate_memory
from g4sim.analytic import count_params, kv_layer_bytes  # noqa: E402
from g4sim.engines import get_engine  # noqa: E402
from g4sim.model import CheckpointError, Gemma4ForCausalLM, KVCache, count_parameters  # noqa: E402
from g4sim.spec import VARIANTS  # noqa: E402


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_full_size_meta_model_has_the_analytic_parameter_count(variant):
    spec = VARIANTS[variant]
    model = Gemma4ForCausalLM.from_spec(spec, device="meta")
    assert count_parameters(model) == count_params(spec, vision=False, audio=False).total


@pytest.mark.parametrize("variant,layers", [("e2b", 10), ("e4b", 12), ("26b-a4b", 6), ("31b", 6)])
@pytest.mark.parametrize("ctx_factor", [0.5, 1, 3])
def test_cache_bytes_equal_analytic_kv_bytes(variant, layers, ctx_factor):
    spec = VARIANTS[variant].reduced(layers)
    ctx = int(spec.text.sliding_window * ctx_factor)
    cache = KVCache(spec.text, batch=2, max_context=ctx, dtype=torch.bfloat16, device="meta")
    engine = get_engine("g4sim")
    for layer in range(spec.text.num_layers):
        predicted = kv_layer_bytes(spec.text, layer, engine.kv_cells(spec.text, layer, ctx), "bf16", batch=2)
        assert cache.nbytes(layer) == predicted
    memory = estimate_memory(spec, ctx=ctx, batch=2, engine=engine)
    assert cache.nbytes() == memory.by_category()["kv_cache"]


def test_checkpoint_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Gemma4ForCausalLM.from_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma4_text", "num_hidden_layers": 2,
                                                      "hidden_size": 32, "intermediate_size": 64,
                                                      "num_attention_heads": 2, "num_key_value_heads": 1,
                                                      "head_dim": 16, "global_head_dim": 16, "vocab_size": 64,
                                                      "hidden_size_per_layer_input": 0}))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        Gemma4ForCausalLM.from_pretrained(tmp_path)
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(64, 16)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model.embed_tokens.weight: checkpoint shape \(64, 16\)"):
        Gemma4ForCausalLM.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="not Gemma 4"):
        Gemma4ForCausalLM.from_pretrained(tmp_path)
