"""Load HF-format Gemma 4 checkpoints (config.json + safetensors, single or sharded) into g4sim's model.

The model is built on the meta device, then each tensor is read from the memory-mapped
safetensors file and assigned in place, so the weights are never held twice.  Multimodal
checkpoints (``model.language_model.`` prefix) load their text decoder; tower weights are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from g4sim.spec import SpecError, load_config

_PREFIXES = ("model.language_model.", "language_model.model.", "model.")


class CheckpointError(ValueError):
    """A checkpoint directory g4sim cannot load; the message names the file or tensor."""


def _shards(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [f for f in files if not (directory / f).is_file()]
        if missing:
            raise CheckpointError(f"{directory}: shard {missing[0]} named in model.safetensors.index.json is missing")
        return [directory / f for f in files]
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    raise CheckpointError(f"{directory}: no model.safetensors or model.safetensors.index.json")


def _text_key(name: str) -> str | None:
    """HF key -> g4sim key ('model.…' / 'lm_head.weight'); None for tower / projector weights."""
    if name == "lm_head.weight":
        return name
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if rest.startswith(("vision_tower.", "audio_tower.", "embed_vision.", "embed_audio.")):
                return None
            return "model." + rest
    return None


def load_causal_lm(cls, path, *, dtype: torch.dtype | None = None, device: str = "cpu"):
    from safetensors import safe_open

    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    try:
        spec = load_config(directory)
    except SpecError as exc:
        raise CheckpointError(str(exc)) from exc
    arch = (spec.raw_config.get("architectures") or ["Gemma4ForCausalLM"])[0]
    if arch not in ("Gemma4ForCausalLM", "Gemma4ForConditionalGeneration"):
        raise CheckpointError(f"{directory}: architecture {arch!r} is not Gemma 4; valid: Gemma4ForCausalLM, "
                              "Gemma4ForConditionalGeneration")
    with torch.device("meta"):
        model = cls(spec.text)
    expected = dict(model.state_dict())
    loaded: dict[str, torch.Tensor] = {}
    for shard in _shards(directory):
        with safe_open(str(shard), framework="pt", device=str(device)) as f:
            for name in f.keys():
                key = _text_key(name)
                if key is None or key not in expected:
                    continue
                tensor = f.get_tensor(name)
                want = expected[key]
                if tuple(tensor.shape) != tuple(want.shape):
                    raise CheckpointError(f"tensor {name}: checkpoint shape {tuple(tensor.shape)}, "
                                          f"the config implies {tuple(want.shape)}")
                target = dtype if (dtype is not None and tensor.is_floating_point()) else tensor.dtype
                loaded[key] = tensor.to(target)
    if spec.text.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    missing = [k for k in expected if k not in loaded]
    if missing:
        raise CheckpointError(f"{directory}: tensor {missing[0]} is missing from the checkpoint "
                              f"({len(missing)} missing in all)")
    model.load_state_dict(loaded, assign=True, strict=False)
    # non-persistent buffers (rope frequencies) were created on meta: rebuild them on the real device
    from g4sim.model.model import rope_inv_freq

    t = spec.text
    for kind, layer_type in (("sliding", "sliding_attention"), ("full", "full_attention")):
        if layer_type in t.layer_types:
            layer = t.layer_types.index(layer_type)
            setattr(model.model, f"inv_freq_{kind}", rope_inv_freq(t.rope(layer), t.head_dim_of(layer)).to(device))
    return model.eval()
