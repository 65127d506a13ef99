"""Write the four Gemma 4 config.json fixtures with transformers' own config classes.

The constructor arguments are the per-variant table of transformers' conversion script
(huggingface/transformers, src/transformers/models/gemma4/convert_gemma4_weights.py, ``_VARIANTS``,
commit 0f3f0632a38798af2adf264adc752130ecc5fa66): the facts the released checkpoints were converted
with, written here as data.  ``Gemma4Config(...).to_dict()`` fills every other key with transformers'
defaults, exactly as ``save_pretrained`` writes a config.json.  Nothing here comes from g4sim's spec:
tests/test_config_fixtures.py checks g4sim against these files.

Run: python scripts/write_config_fixtures.py   (writes tests/data/configs/<variant>/config.json)
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import Gemma4AudioConfig, Gemma4Config, Gemma4TextConfig, Gemma4VisionConfig

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "configs"
ROPE = {"full_attention": {"rope_theta": 1_000_000.0, "rope_type": "proportional", "partial_rotary_factor": 0.25},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}
DEFAULT_LAYERS = ["sliding_attention"] * 5 + ["full_attention"]
E2B_LAYERS = ["sliding_attention"] * 4 + ["full_attention"]
ON_DEVICE_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=16, num_attention_heads=12,
                        num_key_value_heads=12, head_dim=64, global_head_dim=64, default_output_length=280,
                        pooling_kernel_size=3, use_clipped_linears=True)
LARGE_VISION = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                    num_key_value_heads=16, head_dim=72, global_head_dim=72, default_output_length=280,
                    pooling_kernel_size=3, use_clipped_linears=False, standardize=True)
TEXT = {
    "e2b": dict(hidden_size=1536, hidden_size_per_layer_input=256, intermediate_size=4 * 1536, num_hidden_layers=35,
                layer_types=E2B_LAYERS * 7, num_attention_heads=8, num_key_value_heads=1,
                num_global_key_value_heads=None, attention_k_eq_v=False, use_bidirectional_attention=None,
                num_kv_shared_layers=20, use_double_wide_mlp=True, final_logit_softcapping=30.0),
    "e4b": dict(hidden_size=2560, hidden_size_per_layer_input=256, intermediate_size=4 * 2560, num_hidden_layers=42,
                layer_types=DEFAULT_LAYERS * 7, num_attention_heads=8, num_key_value_heads=2,
                num_global_key_value_heads=None, global_head_dim=512, attention_k_eq_v=False,
                use_bidirectional_attention=None, num_kv_shared_layers=18, final_logit_softcapping=30.0),
    "31b": dict(hidden_size=5376, hidden_size_per_layer_input=0, intermediate_size=4 * 5376, num_hidden_layers=60,
                layer_types=DEFAULT_LAYERS * 10, num_attention_heads=32, num_key_value_heads=16,
                num_global_key_value_heads=4, attention_k_eq_v=True, use_bidirectional_attention="vision",
                num_kv_shared_layers=0, sliding_window=1024, final_logit_softcapping=30.0,
                max_position_embeddings=262_144),
    "26b-a4b": dict(hidden_size=2816, hidden_size_per_layer_input=0, intermediate_size=2112, num_hidden_layers=30,
                    layer_types=DEFAULT_LAYERS * 5, num_attention_heads=16, num_key_value_heads=8,
                    num_global_key_value_heads=2, attention_k_eq_v=True, use_bidirectional_attention="vision",
                    num_kv_shared_layers=0, enable_moe_block=True, num_experts=128, moe_intermediate_size=704,
                    top_k_experts=8, sliding_window=1024, final_logit_softcapping=30.0,
                    max_position_embeddings=262_144),
}


def config(name: str) -> Gemma4Config:
    on_device = name in ("e2b", "e4b")
    return Gemma4Config(
        text_config=Gemma4TextConfig(**TEXT[name], rope_parameters=ROPE),
        vision_config=Gemma4VisionConfig(**(ON_DEVICE_VISION if on_device else LARGE_VISION)),
        audio_config=Gemma4AudioConfig() if on_device else None,
        vision_soft_tokens_per_image=280,
    )


def main() -> None:
    for name in TEXT:
        path = OUT / name / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config(name).to_dict(), indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
