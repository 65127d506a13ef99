"""Vision and audio towers with the reference's exact parameter shapes, and the multimodal wrapper.

The shapes (and names, so checkpoints map one to one) follow transformers' Gemma4VisionModel,
Gemma4AudioModel and Gemma4MultimodalEmbedder, so a full multimodal model instantiates with exactly
the memory the analytic side prices (tested on the meta device for all four variants).

Vision forward (g4sim's own, bidirectional): an image is resized so its 3x3-pooled 16-pixel patch
grid stays within a soft-token budget (70..1120 per image), patches are projected, given learned
2-D position embeddings, encoded, average-pooled 3x3, normalised and projected into the text model's
width.  The audio tower is instantiated for memory; its forward is not implemented.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from g4sim.model.model import RMSNorm, TextModel
from g4sim.spec import AudioSpec, ModelSpec, VisionSpec

SOFT_TOKEN_BUDGET = (70, 1120)


class _Clippable(nn.Module):
    """A bias-free linear under ``.linear`` (the reference's clippable linear: clip bounds are buffers)."""

    def __init__(self, fan_in: int, fan_out: int, clipped: bool):
        super().__init__()
        self.linear = nn.Linear(fan_in, fan_out, bias=False)
        if clipped:
            for name in ("input_min", "input_max", "output_min", "output_max"):
                self.register_buffer(name, torch.tensor(float("-inf") if name.endswith("min") else float("inf")))

    def forward(self, x):
        if hasattr(self, "input_min"):
            x = x.clamp(self.input_min, self.input_max)
            return self.linear(x).clamp(self.output_min, self.output_max)
        return self.linear(x)


class VisionAttention(nn.Module):
    def __init__(self, v: VisionSpec):
        super().__init__()
        h, c = v.hidden_size, v.use_clipped_linears
        self.heads, self.kv_heads, self.head_dim = v.num_heads, v.num_kv_heads, v.head_dim
        self.q_proj = _Clippable(h, v.num_heads * v.head_dim, c)
        self.k_proj = _Clippable(h, v.num_kv_heads * v.head_dim, c)
        self.v_proj = _Clippable(h, v.num_kv_heads * v.head_dim, c)
        self.o_proj = _Clippable(v.num_heads * v.head_dim, h, c)
        self.q_norm = RMSNorm(v.head_dim, v.rms_norm_eps)
        self.k_norm = RMSNorm(v.head_dim, v.rms_norm_eps)

    def forward(self, x):
        B, S, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, S, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, S, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(B, S, self.kv_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0, enable_gqa=True)  # bidirectional
        return self.o_proj(out.transpose(1, 2).reshape(B, S, -1))


class VisionMLP(nn.Module):
    def __init__(self, v: VisionSpec):
        super().__init__()
        c = v.use_clipped_linears
        self.gate_proj = _Clippable(v.hidden_size, v.intermediate_size, c)
        self.up_proj = _Clippable(v.hidden_size, v.intermediate_size, c)
        self.down_proj = _Clippable(v.intermediate_size, v.hidden_size, c)

    def forward(self, x):
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class VisionLayer(nn.Module):
    def __init__(self, v: VisionSpec):
        super().__init__()
        h, eps = v.hidden_size, v.rms_norm_eps
        self.self_attn, self.mlp = VisionAttention(v), VisionMLP(v)
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(h, eps), RMSNorm(h, eps)
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = RMSNorm(h, eps), RMSNorm(h, eps)

    def forward(self, x):
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x)))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class PatchEmbedder(nn.Module):
    def __init__(self, v: VisionSpec):
        super().__init__()
        self.patch = v.patch_size
        self.input_proj = nn.Linear(3 * v.patch_size**2, v.hidden_size, bias=False)
        self.position_embedding_table = nn.Parameter(torch.ones(2, v.position_embedding_size, v.hidden_size))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """pixels [B, 3, H, W] (multiples of the patch) -> [B, rows*cols, hidden]."""
        p = self.patch
        B, _, H, W = pixels.shape
        rows, cols = H // p, W // p
        patches = pixels.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(B, rows * cols, 3 * p * p)
        x = self.input_proj(patches.to(self.input_proj.weight.dtype))
        r = torch.arange(rows, device=x.device).repeat_interleave(cols)
        c = torch.arange(cols, device=x.device).repeat(rows)
        return x + self.position_embedding_table[0, r] + self.position_embedding_table[1, c], rows, cols


class VisionEncoder(nn.Module):
    def __init__(self, v: VisionSpec):
        super().__init__()
        self.layers = nn.ModuleList(VisionLayer(v) for _ in range(v.num_layers))


class VisionTower(nn.Module):
    def __init__(self, v: VisionSpec):
        super().__init__()
        self.spec = v
        self.patch_embedder = PatchEmbedder(v)
        self.encoder = VisionEncoder(v)
        if v.standardize:
            self.register_buffer("std_bias", torch.zeros(v.hidden_size))
            self.register_buffer("std_scale", torch.ones(v.hidden_size))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x, rows, cols = self.patch_embedder(pixels)
        for layer in self.encoder.layers:
            x = layer(x)
        k = self.spec.pooling_kernel_size
        grid = x.transpose(1, 2).reshape(x.shape[0], -1, rows, cols)
        pooled = F.avg_pool2d(grid.float(), k).flatten(2).transpose(1, 2) * math.sqrt(self.spec.hidden_size)
        if hasattr(self, "std_bias"):
            pooled = (pooled - self.std_bias) * self.std_scale
        return pooled.to(x.dtype)


def image_size_for_budget(v: VisionSpec, height: int, width: int, soft_tokens: int) -> tuple[int, int]:
    """The largest size keeping the aspect ratio whose pooled patch grid is at most ``soft_tokens``."""
    lo, hi = SOFT_TOKEN_BUDGET
    if not lo <= soft_tokens <= hi:
        raise ValueError(f"soft-token budget {soft_tokens} is outside {lo}..{hi}")
    cell = v.patch_size * v.pooling_kernel_size
    scale = math.sqrt(soft_tokens * cell * cell / (height * width))
    rows, cols = max(1, int(height * scale // cell)), max(1, int(width * scale // cell))
    while rows * cols > soft_tokens:
        rows, cols = (rows - 1, cols) if rows >= cols else (rows, cols - 1)
    return rows * cell, cols * cell


class AudioSubsample(nn.Module):
    def __init__(self, a: AudioSpec):
        super().__init__()
        c0, c1 = a.subsampling_conv_channels
        self.layer0 = nn.Module()
        self.layer0.conv = nn.Conv2d(1, c0, 3, stride=2, padding=1, bias=False)
        self.layer0.norm = nn.LayerNorm(c0, bias=False)
        self.layer1 = nn.Module()
        self.layer1.conv = nn.Conv2d(c0, c1, 3, stride=2, padding=1, bias=False)
        self.layer1.norm = nn.LayerNorm(c1, bias=False)
        self.input_proj_linear = nn.Linear((c0 // 4) * c1, a.hidden_size, bias=False)


class AudioLayer(nn.Module):
    def __init__(self, a: AudioSpec):
        super().__init__()
        h, c, eps = a.hidden_size, a.use_clipped_linears, a.rms_norm_eps
        for name in ("feed_forward1", "feed_forward2"):
            ff = nn.Module()
            ff.ffw_layer_1, ff.ffw_layer_2 = _Clippable(h, 4 * h, c), _Clippable(4 * h, h, c)
            ff.pre_layer_norm, ff.post_layer_norm = RMSNorm(h, eps), RMSNorm(h, eps)
            setattr(self, name, ff)
        attn = nn.Module()
        attn.per_dim_scale = nn.Parameter(torch.zeros(h // a.num_heads))
        for name in ("q_proj", "k_proj", "v_proj", "post"):
            setattr(attn, name, _Clippable(h, h, c))
        attn.relative_k_proj = nn.Linear(h, h, bias=False)
        self.self_attn = attn
        conv = nn.Module()
        conv.linear_start, conv.linear_end = _Clippable(h, 2 * h, c), _Clippable(h, h, c)
        conv.depthwise_conv1d = nn.Conv1d(h, h, a.conv_kernel_size, groups=h, bias=False)
        conv.pre_layer_norm, conv.conv_norm = RMSNorm(h, eps), RMSNorm(h, eps)
        self.lconv1d = conv
        self.norm_pre_attn, self.norm_post_attn, self.norm_out = RMSNorm(h, eps), RMSNorm(h, eps), RMSNorm(h, eps)


class AudioTower(nn.Module):
    def __init__(self, a: AudioSpec):
        super().__init__()
        self.subsample_conv_projection = AudioSubsample(a)
        self.layers = nn.ModuleList(AudioLayer(a) for _ in range(a.num_layers))
        self.output_proj = nn.Linear(a.hidden_size, a.output_proj_dims, bias=True)


class MultimodalEmbedder(nn.Module):
    """Scale-free RMSNorm, then a projection into the text model's width."""

    def __init__(self, width: int, text_hidden: int, eps: float):
        super().__init__()
        self.embedding_pre_projection_norm = RMSNorm(width, eps, with_scale=False)
        self.embedding_projection = nn.Linear(width, text_hidden, bias=False)

    def forward(self, x):
        return self.embedding_projection(self.embedding_pre_projection_norm(x))


class Gemma4Multimodal(nn.Module):
    """language_model + vision_tower (+ audio_tower) + their embedders, named as in HF checkpoints."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.language_model = TextModel(spec.text)
        h = spec.text.hidden_size
        if spec.vision is not None:
            self.vision_tower = VisionTower(spec.vision)
            self.embed_vision = MultimodalEmbedder(spec.vision.hidden_size, h, spec.vision.rms_norm_eps)
        if spec.audio is not None:
            self.audio_tower = AudioTower(spec.audio)
            self.embed_audio = MultimodalEmbedder(spec.audio.output_proj_dims, h, spec.audio.rms_norm_eps)

    @torch.no_grad()
    def image_soft_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images (H, W multiples of 48) -> [B, soft tokens, text hidden]."""
        return self.embed_vision(self.vision_tower(pixels))


class Gemma4ForConditionalGeneration(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.model = Gemma4Multimodal(spec)

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0):
        with torch.device(device):
            model = cls(spec)
        model.to(dtype)
        if torch.device(device).type != "meta":
            generator = torch.Generator(device=device).manual_seed(seed)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if p.ndim >= 2 and "position_embedding_table" not in name:
                        p.normal_(0.0, 0.02, generator=generator)
        return model.eval()
