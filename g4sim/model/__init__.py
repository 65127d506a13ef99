"""g4sim's own PyTorch implementation of Gemma 4 (imports torch; never loaded by `g4sim plan`).

Public API:
    Gemma4ForCausalLM.from_spec(spec, dtype=, device=, seed=)   random weights (meta / cpu / cuda)
    Gemma4ForCausalLM.from_pretrained(dir, dtype=, device=)     HF checkpoint directory (safetensors)
    model(ids, cache=None, start=0, logits_to_keep=1, prefill_chunk=None) -> fp32 logits
    model.new_cache(batch, max_context) -> KVCache (.nbytes() = bytes allocated)
    generate(model, prompt_ids, max_new_tokens, ...)            greedy / sampling decode loop
    quantize_weights(model, "int8" | "int4-g128")               weight-only quantized linears
"""

from g4sim.model.cache import KVCache
from g4sim.model.checkpoint import CheckpointError
from g4sim.model.model import Gemma4ForCausalLM, count_parameters, parameter_bytes

__all__ = ["CheckpointError", "Gemma4ForCausalLM", "KVCache", "count_parameters", "parameter_bytes"]
