"""The exact architecture of a Gemma 4 variant, as frozen dataclasses.

This module owns *what the model is*: the four published variants, their vision
and audio towers, reduced-depth copies for profiling, and specs built from any
HF-style ``config.json``.  Everything downstream (analytic memory, the PyTorch
model, engines) reads these specs and nothing else.

Source of truth: HuggingFace transformers 5.x, ``models/gemma4/`` —
``configuration_gemma4.py`` (field defaults, KV-sharing rule) and the per-variant
table ``_VARIANTS`` in ``convert_gemma4_weights.py``.  No torch import here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

SLIDING: Literal["sliding_attention"] = "sliding_attention"
FULL: Literal["full_attention"] = "full_attention"
LayerType = Literal["sliding_attention", "full_attention"]


class SpecError(ValueError):
    """A config that does not describe a valid Gemma 4 model."""


@dataclass(frozen=True)
class RopeSpec:
    theta: float
    partial_rotary_factor: float = 1.0
    rope_type: str = "default"


@dataclass(frozen=True)
class TextSpec:
    """The text decoder.  Per-layer facts come from the methods, not from fields."""

    def __hash__(self) -> int:  # searches and sweeps hash specs millions of times: compute it once
        try:
            return self.__dict__["_hash"]
        except KeyError:
            h = hash(tuple(getattr(self, f.name) for f in fields(self) if (f.compare if f.hash is None else f.hash)))
            object.__setattr__(self, "_hash", h)
            return h

    hidden_size: int
    num_layers: int
    layer_types: tuple[LayerType, ...]
    sliding_window: int
    num_heads: int
    num_kv_heads: int  # sliding layers (and full layers unless num_global_kv_heads is set)
    num_global_kv_heads: int | None  # full layers, only when attention_k_eq_v
    head_dim: int  # sliding layers
    global_head_dim: int  # full layers
    attention_k_eq_v: bool
    num_kv_shared_layers: int
    intermediate_size: int
    use_double_wide_mlp: bool
    vocab_size: int = 262_144
    hidden_size_per_layer_input: int = 0  # PLE width per layer; 0 = no PLE
    vocab_size_per_layer_input: int = 262_144
    enable_moe_block: bool = False
    num_experts: int = 0
    top_k_experts: int = 0
    moe_intermediate_size: int = 0
    max_position_embeddings: int = 131_072
    final_logit_softcapping: float | None = 30.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    hidden_activation: str = "gelu_pytorch_tanh"
    rope_sliding: RopeSpec = RopeSpec(theta=10_000.0)
    rope_full: RopeSpec = RopeSpec(theta=1_000_000.0, partial_rotary_factor=0.25, rope_type="proportional")

    def __post_init__(self) -> None:
        if len(self.layer_types) != self.num_layers:
            raise SpecError(f"layer_types has {len(self.layer_types)} entries, num_hidden_layers is {self.num_layers}")
        bad = sorted(set(self.layer_types) - {SLIDING, FULL})
        if bad:
            raise SpecError(f"unknown layer type {bad[0]!r}; valid: {SLIDING!r}, {FULL!r}")
        if not 0 <= self.num_kv_shared_layers < self.num_layers:
            raise SpecError(f"num_kv_shared_layers={self.num_kv_shared_layers} must be in [0, {self.num_layers})")
        if self.num_kv_shared_layers:
            producers = set(self.layer_types[: self.first_kv_shared_layer])
            if producers != set(self.layer_types):
                raise SpecError("KV-shared layers need a non-shared layer of each of their types before them")
        for layer in range(self.num_layers):
            if self.num_heads % self.kv_heads(layer):
                raise SpecError(f"layer {layer}: {self.num_heads} query heads not divisible by {self.kv_heads(layer)} KV heads")
        if self.enable_moe_block and not (self.num_experts and self.top_k_experts and self.moe_intermediate_size):
            raise SpecError("enable_moe_block needs num_experts, top_k_experts and moe_intermediate_size")

    # ---- per-layer facts -------------------------------------------------
    def is_sliding(self, layer: int) -> bool:
        return self.layer_types[layer] == SLIDING

    def head_dim_of(self, layer: int) -> int:
        return self.head_dim if self.is_sliding(layer) else self.global_head_dim

    def kv_heads(self, layer: int) -> int:
        if not self.is_sliding(layer) and self.attention_k_eq_v and self.num_global_kv_heads:
            return self.num_global_kv_heads
        return self.num_kv_heads

    def k_eq_v(self, layer: int) -> bool:
        """Full layers of k_eq_v variants have no v_proj: V is derived from K."""
        return self.attention_k_eq_v and not self.is_sliding(layer)

    @property
    def first_kv_shared_layer(self) -> int:
        return self.num_layers - self.num_kv_shared_layers

    def is_kv_shared(self, layer: int) -> bool:
        """True for layers that compute no K/V and keep no cache of their own."""
        return layer >= self.first_kv_shared_layer

    def kv_source_layer(self, layer: int) -> int:
        """The layer whose K/V this layer attends to: itself, or the last non-shared layer of its type."""
        if not self.is_kv_shared(layer):
            return layer
        kind = self.layer_types[layer]
        return max(i for i in range(self.first_kv_shared_layer) if self.layer_types[i] == kind)

    def mlp_intermediate(self, layer: int) -> int:
        wide = self.use_double_wide_mlp and self.is_kv_shared(layer)
        return self.intermediate_size * (2 if wide else 1)

    def rope(self, layer: int) -> RopeSpec:
        return self.rope_sliding if self.is_sliding(layer) else self.rope_full

    @property
    def has_ple(self) -> bool:
        return self.hidden_size_per_layer_input > 0

    @property
    def cache_layers(self) -> tuple[int, ...]:
        """Layers that own a KV cache."""
        return tuple(range(self.first_kv_shared_layer))

    @property
    def period(self) -> int:
        """Length of the repeating layer pattern (5 for E2B, 6 for the others)."""
        first_full = self.layer_types.index(FULL) if FULL in self.layer_types else self.num_layers - 1
        return first_full + 1

    def reduced(self, num_layers: int, num_kv_shared_layers: int | None = None) -> TextSpec:
        """The first ``num_layers`` layers at full width.

        By default the KV-shared tail keeps the variant's proportion, rounded to whole
        periods so every shared layer still has a producer of its type.  Fewer layers than
        one period keep the sliding prefix and close with one full layer, so both layer
        types are still present (a "sampled" copy: layers 0..n-2 and a full layer).
        """
        if not 1 <= num_layers <= self.num_layers:
            raise SpecError(f"num_layers={num_layers} must be in [1, {self.num_layers}]")
        if num_layers < self.period and num_layers > 1:
            types = self.layer_types[: num_layers - 1] + (FULL,)
            return replace(self, num_layers=num_layers, layer_types=types, num_kv_shared_layers=0)
        if num_kv_shared_layers is None:
            share = self.num_kv_shared_layers * num_layers / self.num_layers
            periods = round(share / self.period)
            num_kv_shared_layers = periods * self.period if num_layers - periods * self.period >= self.period else 0
        return replace(
            self,
            num_layers=num_layers,
            layer_types=self.layer_types[:num_layers],
            num_kv_shared_layers=num_kv_shared_layers,
        )


@dataclass(frozen=True)
class VisionSpec:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    patch_size: int = 16
    pooling_kernel_size: int = 3
    position_embedding_size: int = 10 * 1024
    use_clipped_linears: bool = False
    standardize: bool = False
    default_output_length: int = 280  # soft tokens per image
    rms_norm_eps: float = 1e-6


@dataclass(frozen=True)
class AudioSpec:
    hidden_size: int = 1024
    num_layers: int = 12
    num_heads: int = 8
    subsampling_conv_channels: tuple[int, ...] = (128, 32)
    conv_kernel_size: int = 5
    attention_chunk_size: int = 12
    attention_context_left: int = 13
    attention_context_right: int = 0
    use_clipped_linears: bool = True
    output_proj_dims: int = 1536
    rms_norm_eps: float = 1e-6


@dataclass(frozen=True)
class ModelSpec:
    """A whole model: the text decoder plus optional towers."""

    __hash__ = TextSpec.__hash__

    name: str
    text: TextSpec
    vision: VisionSpec | None = None
    audio: AudioSpec | None = None
    vision_soft_tokens_per_image: int = 280
    raw_config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def max_context(self) -> int:
        return self.text.max_position_embeddings

    def reduced(self, num_layers: int, num_kv_shared_layers: int | None = None) -> ModelSpec:
        return replace(
            self,
            name=f"{self.name}[{num_layers}L]",
            text=self.text.reduced(num_layers, num_kv_shared_layers),
        )

    def text_only(self) -> ModelSpec:
        return replace(self, vision=None, audio=None)


# ---- the published variants ----------------------------------------------

_ON_DEVICE_VISION = VisionSpec(
    hidden_size=768, intermediate_size=3072, num_layers=16, num_heads=12, num_kv_heads=12, head_dim=64,
    use_clipped_linears=True,
)
_LARGE_VISION = VisionSpec(
    hidden_size=1152, intermediate_size=4304, num_layers=27, num_heads=16, num_kv_heads=16, head_dim=72,
    standardize=True,
)
_PATTERN_4S1F: tuple[LayerType, ...] = (SLIDING,) * 4 + (FULL,)
_PATTERN_5S1F: tuple[LayerType, ...] = (SLIDING,) * 5 + (FULL,)

VARIANTS: dict[str, ModelSpec] = {
    "e2b": ModelSpec(
        name="e2b",
        text=TextSpec(
            hidden_size=1536, num_layers=35, layer_types=_PATTERN_4S1F * 7, sliding_window=512,
            num_heads=8, num_kv_heads=1, num_global_kv_heads=None, head_dim=256, global_head_dim=512,
            attention_k_eq_v=False, num_kv_shared_layers=20, intermediate_size=6144, use_double_wide_mlp=True,
            hidden_size_per_layer_input=256, max_position_embeddings=131_072,
        ),
        vision=_ON_DEVICE_VISION,
        audio=AudioSpec(),
    ),
    "e4b": ModelSpec(
        name="e4b",
        text=TextSpec(
            hidden_size=2560, num_layers=42, layer_types=_PATTERN_5S1F * 7, sliding_window=512,
            num_heads=8, num_kv_heads=2, num_global_kv_heads=None, head_dim=256, global_head_dim=512,
            attention_k_eq_v=False, num_kv_shared_layers=18, intermediate_size=10240, use_double_wide_mlp=False,
            hidden_size_per_layer_input=256, max_position_embeddings=131_072,
        ),
        vision=_ON_DEVICE_VISION,
        audio=AudioSpec(),
    ),
    "26b-a4b": ModelSpec(
        name="26b-a4b",
        text=TextSpec(
            hidden_size=2816, num_layers=30, layer_types=_PATTERN_5S1F * 5, sliding_window=1024,
            num_heads=16, num_kv_heads=8, num_global_kv_heads=2, head_dim=256, global_head_dim=512,
            attention_k_eq_v=True, num_kv_shared_layers=0, intermediate_size=2112, use_double_wide_mlp=False,
            enable_moe_block=True, num_experts=128, top_k_experts=8, moe_intermediate_size=704,
            max_position_embeddings=262_144,
        ),
        vision=_LARGE_VISION,
    ),
    "31b": ModelSpec(
        name="31b",
        text=TextSpec(
            hidden_size=5376, num_layers=60, layer_types=_PATTERN_5S1F * 10, sliding_window=1024,
            num_heads=32, num_kv_heads=16, num_global_kv_heads=4, head_dim=256, global_head_dim=512,
            attention_k_eq_v=True, num_kv_shared_layers=0, intermediate_size=21504, use_double_wide_mlp=False,
            max_position_embeddings=262_144,
        ),
        vision=_LARGE_VISION,
    ),
}

# Names users type, mapped to the canonical key.
ALIASES: dict[str, str] = {
    "gemma-4-e2b": "e2b", "gemma-4-e4b": "e4b", "gemma-4-26b-a4b": "26b-a4b", "gemma-4-31b": "31b",
    "26b": "26b-a4b", "26b-moe": "26b-a4b", "31b-dense": "31b",
}


def get_variant(name: str) -> ModelSpec:
    """Look up a published variant by name (case-insensitive, aliases allowed)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in VARIANTS:
        raise KeyError(name)
    return VARIANTS[key]


# ---- specs from HF config.json -------------------------------------------

_TEXT_DEFAULTS: dict[str, Any] = {  # Gemma4TextConfig defaults (configuration_gemma4.py)
    "vocab_size": 262_144, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 30,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "global_head_dim": 512,
    "num_global_key_value_heads": None, "max_position_embeddings": 131_072, "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True, "attention_bias": False, "sliding_window": 512, "final_logit_softcapping": None,
    "vocab_size_per_layer_input": 262_144, "hidden_size_per_layer_input": 256, "attention_k_eq_v": False,
    "num_kv_shared_layers": 0, "enable_moe_block": False, "use_double_wide_mlp": False, "num_experts": None,
    "top_k_experts": None, "moe_intermediate_size": None, "hidden_activation": "gelu_pytorch_tanh",
}


def _rope(params: dict[str, Any] | None, default: RopeSpec) -> RopeSpec:
    if not params:
        return default
    if not isinstance(params, dict):
        raise SpecError(f"config key rope_parameters entries must be objects, got {params!r}")
    values = {"rope_theta": params.get("rope_theta", default.theta),
              "partial_rotary_factor": params.get("partial_rotary_factor", 1.0)}
    return RopeSpec(
        theta=_float(values, "rope_theta"),
        partial_rotary_factor=_float(values, "partial_rotary_factor", hi=1.0),
        rope_type=str(params.get("rope_type", default.rope_type)),
    )


# Keys a config.json must state (transformers writes all of them; a hand-written file that leaves one
# out would otherwise take a reference default — hidden_size_per_layer_input=256 alone adds a
# multi-GiB per-layer-embedding table).  Bounds: what g4sim can plan, with room above Gemma 4's
# largest variant (60 layers, hidden 5376), and small enough that a plan stays well under a second.
_REQUIRED_TEXT_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                       "intermediate_size", "vocab_size", "hidden_size_per_layer_input")
MAX_LAYERS = 512
_BOUNDS: dict[str, tuple[int, int]] = {  # config key -> [lo, hi]
    "hidden_size": (1, 65_536), "num_hidden_layers": (1, MAX_LAYERS), "num_attention_heads": (1, 1024),
    "num_key_value_heads": (1, 1024), "num_global_key_value_heads": (1, 1024), "head_dim": (1, 4096),
    "global_head_dim": (1, 4096), "intermediate_size": (1, 1_048_576), "vocab_size": (1, 4_194_304),
    "vocab_size_per_layer_input": (1, 4_194_304), "hidden_size_per_layer_input": (0, 65_536),
    "sliding_window": (1, 16_777_216), "max_position_embeddings": (1, 16_777_216), "num_kv_shared_layers": (0, 511),
    "num_experts": (1, 4096), "top_k_experts": (1, 4096), "moe_intermediate_size": (1, 1_048_576),
}


def _int(c: dict[str, Any], key: str) -> int:
    """``c[key]`` as a bounded integer; a float with a fraction, a bool or a string is refused by name."""
    value = c[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        raise SpecError(f"config key {key} = {value!r} must be a whole number")
    lo, hi = _BOUNDS[key]
    if not lo <= value <= hi:
        raise SpecError(f"config key {key} = {int(value):,} is out of range; g4sim plans {lo:,}..{hi:,}")
    return int(value)


def _bool(c: dict[str, Any], key: str) -> bool:
    value = c[key]
    if not isinstance(value, bool):
        raise SpecError(f"config key {key} = {value!r} must be true or false")
    return value


def _float(c: dict[str, Any], key: str, *, optional: bool = False, lo: float = 0.0, hi: float = 1e12) -> float | None:
    value = c.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not lo < value <= hi:
        raise SpecError(f"config key {key} = {value!r} must be a number in ({lo:g}, {hi:g}]"
                        + (" or null" if optional else ""))
    return float(value)


def text_spec_from_config(cfg: dict[str, Any]) -> TextSpec:
    """A TextSpec from a ``Gemma4TextConfig``-shaped dict.

    The keys in ``_REQUIRED_TEXT_KEYS`` must be present; other missing keys take the reference
    defaults (configuration_gemma4.py).  Every size is bounded (``_BOUNDS``); a bad value is a
    one-line SpecError naming the key and what is accepted.
    """
    if not isinstance(cfg, dict):
        raise SpecError(f"the text config must be a JSON object, got {type(cfg).__name__}")
    missing = [k for k in _REQUIRED_TEXT_KEYS if k not in cfg]
    if missing:
        raise SpecError(f"config is missing {', '.join(missing)} (a Gemma 4 config.json states them; "
                        "hidden_size_per_layer_input is 0 for variants without per-layer embeddings)")
    c = {**_TEXT_DEFAULTS, **{k: v for k, v in cfg.items() if v is not None or k == "num_global_key_value_heads"}}
    n = _int(c, "num_hidden_layers")
    layer_types = c.get("layer_types") or [SLIDING if (i + 1) % 6 else FULL for i in range(n)]
    if not isinstance(layer_types, list) or not all(isinstance(x, str) for x in layer_types):
        raise SpecError(f"config key layer_types must be a list of {SLIDING!r} / {FULL!r}")
    layer_types = list(layer_types)
    if layer_types and layer_types[-1] != FULL:  # the reference forces the last layer to full attention
        layer_types[-1] = FULL
    rope = c.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise SpecError("config key rope_parameters must be an object")
    # Newer transformers serialise the full-layer overrides as per_layer_config
    # ({"5": {"head_dim": 512, "num_key_value_heads": 2}, ...}) instead of global_* keys.
    per_layer = c.get("per_layer_config") or {}
    if not isinstance(per_layer, dict):
        raise SpecError("config key per_layer_config must be an object")
    for idx, override in per_layer.items():
        if not str(idx).isdigit() or not isinstance(override, dict):
            raise SpecError(f"config key per_layer_config: entry {idx!r} must map a layer number to an object")
        if int(idx) < len(layer_types) and layer_types[int(idx)] == FULL:
            c["global_head_dim"] = override.get("head_dim", c["global_head_dim"])
            if "num_key_value_heads" in override:
                c["num_global_key_value_heads"] = override["num_key_value_heads"]
    if c.get("use_bidirectional_attention") == "all":
        raise SpecError("use_bidirectional_attention='all' (encoder-style Gemma 4) is not a decoder g4sim can plan")
    moe = _bool(c, "enable_moe_block")
    optional = lambda key: _int(c, key) if c[key] else 0  # noqa: E731 — absent / null / 0 mean "not used"
    try:
        spec = TextSpec(
            hidden_size=_int(c, "hidden_size"), num_layers=n, layer_types=tuple(layer_types),
            sliding_window=_int(c, "sliding_window"), num_heads=_int(c, "num_attention_heads"),
            num_kv_heads=_int(c, "num_key_value_heads"),
            num_global_kv_heads=_int(c, "num_global_key_value_heads") if c["num_global_key_value_heads"] else None,
            head_dim=_int(c, "head_dim"), global_head_dim=_int(c, "global_head_dim"),
            attention_k_eq_v=_bool(c, "attention_k_eq_v"), num_kv_shared_layers=_int(c, "num_kv_shared_layers"),
            intermediate_size=_int(c, "intermediate_size"), use_double_wide_mlp=_bool(c, "use_double_wide_mlp"),
            vocab_size=_int(c, "vocab_size"), hidden_size_per_layer_input=optional("hidden_size_per_layer_input"),
            vocab_size_per_layer_input=_int(c, "vocab_size_per_layer_input"),
            enable_moe_block=moe, num_experts=_int(c, "num_experts") if moe else optional("num_experts"),
            top_k_experts=_int(c, "top_k_experts") if moe else optional("top_k_experts"),
            moe_intermediate_size=_int(c, "moe_intermediate_size") if moe else optional("moe_intermediate_size"),
            max_position_embeddings=_int(c, "max_position_embeddings"),
            final_logit_softcapping=_float(c, "final_logit_softcapping", optional=True),
            rms_norm_eps=_float(c, "rms_norm_eps", hi=1.0),
            tie_word_embeddings=_bool(c, "tie_word_embeddings"), attention_bias=_bool(c, "attention_bias"),
            hidden_activation=str(c["hidden_activation"]),
            rope_sliding=_rope(rope.get(SLIDING), TextSpec.rope_sliding),
            rope_full=_rope(rope.get(FULL), TextSpec.rope_full),
        )
    except (TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"bad text config value: {exc}") from exc
    if spec.enable_moe_block and spec.top_k_experts > spec.num_experts:
        raise SpecError(f"config key top_k_experts = {spec.top_k_experts} is more than num_experts = {spec.num_experts}")
    return spec


def _positive_ints(kind: str, cfg: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = cfg.get(key)
        if value is None:
            continue
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value != int(value) or not 1 <= value <= 1 << 20):
            raise SpecError(f"{kind} config key {key} = {value!r} must be a whole number in 1..{1 << 20:,}")


def _vision_from_config(cfg: dict[str, Any]) -> VisionSpec:
    if not isinstance(cfg, dict):
        raise SpecError("vision_config must be a JSON object")
    _positive_ints("vision", cfg, ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                   "num_key_value_heads", "head_dim", "patch_size", "pooling_kernel_size",
                                   "position_embedding_size", "default_output_length"))
    return VisionSpec(
        hidden_size=int(cfg.get("hidden_size", 768)), intermediate_size=int(cfg.get("intermediate_size", 3072)),
        num_layers=int(cfg.get("num_hidden_layers", 16)), num_heads=int(cfg.get("num_attention_heads", 12)),
        num_kv_heads=int(cfg.get("num_key_value_heads", 12)), head_dim=int(cfg.get("head_dim", 64)),
        patch_size=int(cfg.get("patch_size", 16)), pooling_kernel_size=int(cfg.get("pooling_kernel_size", 3)),
        position_embedding_size=int(cfg.get("position_embedding_size", 10 * 1024)),
        use_clipped_linears=bool(cfg.get("use_clipped_linears", False)),
        standardize=bool(cfg.get("standardize", False)),
        default_output_length=int(cfg.get("default_output_length", 280)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
    )


def _audio_from_config(cfg: dict[str, Any]) -> AudioSpec:
    if not isinstance(cfg, dict):
        raise SpecError("audio_config must be a JSON object")
    _positive_ints("audio", cfg, ("hidden_size", "num_hidden_layers", "num_attention_heads", "conv_kernel_size",
                                  "attention_chunk_size", "output_proj_dims"))
    d = AudioSpec()
    return AudioSpec(
        hidden_size=int(cfg.get("hidden_size", d.hidden_size)), num_layers=int(cfg.get("num_hidden_layers", d.num_layers)),
        num_heads=int(cfg.get("num_attention_heads", d.num_heads)),
        subsampling_conv_channels=tuple(cfg.get("subsampling_conv_channels", d.subsampling_conv_channels)),
        conv_kernel_size=int(cfg.get("conv_kernel_size", d.conv_kernel_size)),
        attention_chunk_size=int(cfg.get("attention_chunk_size", d.attention_chunk_size)),
        attention_context_left=int(cfg.get("attention_context_left", d.attention_context_left)),
        attention_context_right=int(cfg.get("attention_context_right", d.attention_context_right)),
        use_clipped_linears=bool(cfg.get("use_clipped_linears", d.use_clipped_linears)),
        output_proj_dims=int(cfg.get("output_proj_dims", d.output_proj_dims)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", d.rms_norm_eps)),
    )


def spec_from_config(cfg: dict[str, Any], name: str = "custom") -> ModelSpec:
    """A ModelSpec from a full multimodal ``Gemma4Config`` dict or a bare text config dict."""
    model_type = cfg.get("model_type")
    if model_type not in (None, "gemma4", "gemma4_text"):
        raise SpecError(f"model_type {model_type!r} is not Gemma 4; valid: 'gemma4', 'gemma4_text'")
    if "text_config" in cfg:
        if not isinstance(cfg["text_config"], dict):
            raise SpecError("text_config must be a JSON object")
        vision = cfg.get("vision_config")
        audio = cfg.get("audio_config")
        return ModelSpec(
            name=name,
            text=text_spec_from_config(cfg["text_config"]),
            vision=_vision_from_config(vision) if vision else None,
            audio=_audio_from_config(audio) if audio else None,
            vision_soft_tokens_per_image=int(cfg.get("vision_soft_tokens_per_image", 280)),
            raw_config=cfg,
        )
    return ModelSpec(name=name, text=text_spec_from_config(cfg), raw_config=cfg)


def load_config(path: str | Path) -> ModelSpec:
    """Read a ``config.json`` (or a directory holding one) into a ModelSpec."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise SpecError(f"no config file at {p}")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read it ({exc.__class__.__name__})") from exc
    if not isinstance(cfg, dict):
        raise SpecError(f"{p}: expected a JSON object")
    return spec_from_config(cfg, name=p.parent.name or p.stem)
