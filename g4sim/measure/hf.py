"""transformers' Gemma 4 as a measured engine: its config for a g4sim spec, and a runner for the profiler.

``hf_text_config`` maps a g4sim ``TextSpec`` onto transformers' ``Gemma4TextConfig`` key for key (the
keys as transformers' convert_gemma4_weights.py writes them), so the profiler can build transformers'
own model at any reduced depth and measure it.  The model, its cache and its attention are
transformers' (``Gemma4ForCausalLM``, ``DynamicCache``, sdpa or eager): nothing of g4sim's model runs.
torch and transformers are imported lazily.
"""

from __future__ import annotations

from typing import Any

from g4sim.spec import FULL, SLIDING, TextSpec


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


class TransformersRunner:
    """Prefill with ``logits_to_keep=1`` then greedy decode steps, as ``generate`` does, on a DynamicCache."""

    def __init__(self, t: TextSpec, dtype, device: str, attn: str, seed: int = 0):
        import torch
        from transformers import Gemma4ForCausalLM

        torch.manual_seed(seed)
        config = hf_text_config(t)
        config._attn_implementation = attn
        self.torch, self.config = torch, config
        with torch.device(device):
            self.model = Gemma4ForCausalLM(config).to(dtype).eval()
        self.cache: Any = None

    def parameter_bytes(self) -> int:
        """Parameters plus the per-layer ``layer_scalar`` buffers (counted as g4sim's model counts them)."""
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return params + sum(b.numel() * b.element_size() for n, b in self.model.named_buffers()
                            if n.endswith("layer_scalar"))

    def reserve(self, cache_tokens: int) -> None:
        """Nothing ahead of the prompt: a DynamicCache is made inside prefill and grows as it goes."""

    def prefill(self, ids, cache_tokens: int | None = None):
        """``cache_tokens`` is ignored: a DynamicCache grows as it goes (G4simRunner preallocates)."""
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.config)
        with self.torch.no_grad():
            out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].argmax(-1, keepdim=True)

    def decode(self, token):
        with self.torch.no_grad():
            out = self.model(input_ids=token, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].argmax(-1, keepdim=True)

    def kv_bytes(self) -> int:
        """Bytes of the K/V tensors the cache holds (KV-shared layers hold none)."""
        total = 0
        for layer in self.cache.layers:
            for name in ("keys", "values"):
                tensor = getattr(layer, name, None)
                if tensor is not None and hasattr(tensor, "numel"):
                    total += tensor.numel() * tensor.element_size()
        return total
