"""Gemma 4 text decoder in PyTorch, built from a g4sim ``TextSpec``.

Every mechanism the analytic model prices is here: scaled tied embeddings, hybrid sliding/full
attention with per-type heads and head dims, dual RoPE (default on sliding layers, proportional
with a partial rotary factor on full layers), q/k/v norms (v without scale), attention_k_eq_v,
KV sharing, per-layer embeddings (PLE), double-wide MLP on KV-shared layers, the MoE block (dense
branch beside 128 routed experts), layer scalars and the final logit softcap.  Parameter names
mirror HF checkpoints so loading is a straight mapping (``checkpoint.py``).

Memory choices (priced step by step by the "g4sim" engine in ``g4sim/engines/native.py``): a preallocated
``KVCache``; prefill attention is one ``scaled_dot_product_attention`` call with ``enable_gqa`` (no K/V
expansion), decode attention two fp32 matmuls over blocks of keys (``decode_attention``); prefill is
chunked; KV-shared layers run only for the positions whose logits are kept (they write no cache, so
nothing else needs them); logits are computed for the kept positions only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from g4sim.model.cache import KVCache
from g4sim.spec import RopeSpec, TextSpec


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (weight is the plain scale, not 1 + w)."""

    def __init__(self, dim: int, eps: float, with_scale: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if with_scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.pow(y.pow(2).mean(-1, keepdim=True) + self.eps, -0.5)
        if self.weight is not None:
            y = y * self.weight.float()
        return y.type_as(x)


def rope_inv_freq(rope: RopeSpec, head_dim: int) -> torch.Tensor:
    """Inverse frequencies for head_dim/2 rotation pairs.

    "proportional" rope rotates only the first partial_rotary_factor share of the pairs, with
    exponents over the whole head_dim; the other pairs get frequency 0 (cos 1, sin 0).
    """
    if rope.rope_type == "proportional":
        angles = int(rope.partial_rotary_factor * head_dim // 2)
        rotated = 1.0 / rope.theta ** (torch.arange(0, 2 * angles, 2, dtype=torch.float) / head_dim)
        return torch.cat([rotated, torch.zeros(head_dim // 2 - angles)])
    return 1.0 / rope.theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, S, heads, D]; cos/sin: [S, D]. Pairs (i, i + D/2) rotate together."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


# Decode attention (every key visible) as fp32 scores, softmax and a weighted sum, over blocks of this many keys:
# on a 2-thread CPU, torch 2.13's flash kernel takes ~0.9 ms for one bf16 query over 512 keys (1 KV head, dim 256)
# and ~58 ms over 32k; these matmuls take ~0.1 ms and ~6 ms (benchmarks/bench_model_quant.py shows the effect).
DECODE_KEY_BLOCK = 1024
# ... while the fp32 scores and probabilities (batch x heads x queries x keys x 4 B, each) stay under this; longer
# contexts take the flash kernel, which holds no scores.
DECODE_SCORES_BYTES = 64 * 2**20


def decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T) v with every key visible, in fp32 (scale 1: the q / k norms scale), for GQA without expanding
    K / V: q [B, H, S, D], keys / values [B, KV, n, D] -> [B, H, S, D] in q's dtype.  Queries of one KV head are
    grouped into one matrix; each block of keys is converted to fp32 on its own (no fp32 copy of the cache)."""
    B, H, S, D = q.shape
    kv, n = keys.shape[1], keys.shape[2]
    qg = q.reshape(B, kv, H // kv * S, D).float()
    scores = torch.empty(B, kv, qg.shape[2], n, dtype=torch.float32, device=q.device)
    for begin in range(0, n, DECODE_KEY_BLOCK):
        block = slice(begin, begin + DECODE_KEY_BLOCK)
        torch.matmul(qg, keys[:, :, block].float().transpose(-1, -2), out=scores[..., block])
    probs = torch.softmax(scores, dim=-1)
    out = None
    for begin in range(0, n, DECODE_KEY_BLOCK):
        block = slice(begin, begin + DECODE_KEY_BLOCK)
        part = torch.matmul(probs[..., block], values[:, :, block].float())
        out = part if out is None else out.add_(part)
    return out.to(q.dtype).reshape(B, H, S, D)


class Attention(nn.Module):
    def __init__(self, t: TextSpec, layer: int):
        super().__init__()
        self.layer, self.sliding = layer, t.is_sliding(layer)
        self.window = t.sliding_window
        self.num_heads, self.kv_heads, self.head_dim = t.num_heads, t.kv_heads(layer), t.head_dim_of(layer)
        self.owns_kv = not t.is_kv_shared(layer)
        h, eps, bias = t.hidden_size, t.rms_norm_eps, t.attention_bias
        self.q_proj = nn.Linear(h, self.num_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, h, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, eps)
        if self.owns_kv:
            self.k_proj = nn.Linear(h, self.kv_heads * self.head_dim, bias=bias)
            self.v_proj = None if t.k_eq_v(layer) else nn.Linear(h, self.kv_heads * self.head_dim, bias=bias)
            self.k_norm = RMSNorm(self.head_dim, eps)
            self.v_norm = RMSNorm(self.head_dim, eps, with_scale=False)

    def _mask(self, positions: torch.Tensor, kv_pos: torch.Tensor) -> dict:
        """sdpa mask arguments: none when every key is visible, is_causal for a plain causal block
        (both let the CPU / CUDA flash kernels skip the mask), else an explicit boolean mask."""
        q0, n = int(positions[0]), positions.shape[0]
        window_ok = not self.sliding or int(positions[-1]) - int(kv_pos[0]) < self.window
        if window_ok and int(kv_pos[-1]) <= q0:  # decode: all keys are at or before the query
            return {}
        if window_ok and kv_pos.shape[0] == n and int(kv_pos[0]) == q0:  # the chunk attends only to itself
            return {"is_causal": True}
        mask = kv_pos[None, :] <= positions[:, None]
        if self.sliding:
            mask &= kv_pos[None, :] > positions[:, None] - self.window
        return {"attn_mask": mask}

    def forward(self, x, cos, sin, positions, cache: KVCache, start: int, shared: dict) -> torch.Tensor:
        B, S, _ = x.shape
        q = apply_rope(self.q_norm(self.q_proj(x).view(B, S, self.num_heads, self.head_dim)), cos, sin)
        kind = "sliding" if self.sliding else "full"
        if self.owns_kv:
            k_raw = self.k_proj(x).view(B, S, self.kv_heads, self.head_dim)
            v = self.v_norm(k_raw if self.v_proj is None else self.v_proj(x).view(B, S, self.kv_heads, self.head_dim))
            k = apply_rope(self.k_norm(k_raw), cos, sin)
            keys, values, kv_pos = cache.update(self.layer, k.transpose(1, 2), v.transpose(1, 2), start)
            shared[kind] = (keys, values, kv_pos)  # the last owner of each type serves the shared layers
        else:
            keys, values, kv_pos = shared[kind]
        mask, q = self._mask(positions, kv_pos), q.transpose(1, 2)
        if not mask and B * self.num_heads * S * keys.shape[2] * 4 <= DECODE_SCORES_BYTES:
            out = decode_attention(q, keys, values)
        else:
            out = F.scaled_dot_product_attention(q, keys, values, scale=1.0, enable_gqa=True, **mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, S, -1))


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class Router(nn.Module):
    """Scale-free RMSNorm, learned scale / sqrt(hidden), softmax over experts, top-k renormalised, per-expert scale."""

    def __init__(self, t: TextSpec):
        super().__init__()
        self.top_k, self.root = t.top_k_experts, t.hidden_size ** -0.5
        self.norm = RMSNorm(t.hidden_size, t.rms_norm_eps, with_scale=False)
        self.proj = nn.Linear(t.hidden_size, t.num_experts, bias=False)
        self.scale = nn.Parameter(torch.ones(t.hidden_size))
        self.per_expert_scale = nn.Parameter(torch.ones(t.num_experts))

    def forward(self, x):
        probs = F.softmax(self.proj(self.norm(x) * self.scale * self.root), dim=-1, dtype=torch.float32)
        weights, index = torch.topk(probs, self.top_k, dim=-1)
        weights = weights / weights.sum(-1, keepdim=True) * self.per_expert_scale[index]
        return weights, index


class Experts(nn.Module):
    """All experts as batched weights: gate_up [E, 2I, H], down [E, H, I]."""

    def __init__(self, t: TextSpec):
        super().__init__()
        E, I, H = t.num_experts, t.moe_intermediate_size, t.hidden_size
        self.num_experts = E
        self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * I, H))
        self.down_proj = nn.Parameter(torch.empty(E, H, I))

    def gate_up(self, x: torch.Tensor, e: int) -> torch.Tensor:
        return F.linear(x, self.gate_up_proj[e])

    def down(self, x: torch.Tensor, e: int) -> torch.Tensor:
        return F.linear(x, self.down_proj[e])

    def expert(self, x: torch.Tensor, e: int, weight: torch.Tensor) -> torch.Tensor:
        """Expert e on its tokens x, times their routing weight (fp32: the product is fp32)."""
        gate, up = self.gate_up(x, e).chunk(2, dim=-1)
        return self.down(F.gelu(gate, approximate="tanh") * up, e) * weight

    def forward(self, x, weights, index):
        """Only the experts some token chose run (at decode: top_k of them), each on its tokens."""
        out = torch.zeros_like(x)
        if x.shape[0] == 1:  # one token (batch-1 decode): its top_k experts in expert order, no sort / scatter
            for e, slot in sorted(zip(index[0].tolist(), range(index.shape[1]))):
                out.add_(self.expert(x, e, weights[:, slot, None]).to(out.dtype))
            return out
        # the prefill loop keeps its locals (gate_up's views, y) bound until the next expert, as
        # g4sim/engines/native.py expert_bytes prices them: not the helper, whose locals die on return
        flat_expert = index.reshape(-1)
        order = torch.argsort(flat_expert, stable=True)
        counts = torch.bincount(flat_expert, minlength=self.num_experts)
        hit = counts.nonzero().flatten()
        token_of = order // index.shape[1]
        slot_of = order % index.shape[1]
        begin = 0
        for e, n in zip(hit.tolist(), counts[hit].tolist()):
            tok, slot = token_of[begin:begin + n], slot_of[begin:begin + n]
            begin += n
            gate, up = self.gate_up(x[tok], e).chunk(2, dim=-1)
            y = self.down(F.gelu(gate, approximate="tanh") * up, e) * weights[tok, slot, None]
            out.index_add_(0, tok, y.to(out.dtype))
        return out


class DecoderLayer(nn.Module):
    def __init__(self, t: TextSpec, layer: int):
        super().__init__()
        h, eps = t.hidden_size, t.rms_norm_eps
        self.self_attn = Attention(t, layer)
        self.mlp = MLP(h, t.mlp_intermediate(layer))
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(h, eps), RMSNorm(h, eps)
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = RMSNorm(h, eps), RMSNorm(h, eps)
        self.register_buffer("layer_scalar", torch.ones(1))
        self.moe = t.enable_moe_block
        if self.moe:
            self.router, self.experts = Router(t), Experts(t)
            self.post_feedforward_layernorm_1 = RMSNorm(h, eps)
            self.post_feedforward_layernorm_2 = RMSNorm(h, eps)
            self.pre_feedforward_layernorm_2 = RMSNorm(h, eps)
        self.ple = t.has_ple
        if self.ple:
            self.per_layer_input_gate = nn.Linear(h, t.hidden_size_per_layer_input, bias=False)
            self.per_layer_projection = nn.Linear(t.hidden_size_per_layer_input, h, bias=False)
            self.post_per_layer_input_norm = RMSNorm(h, eps)

    def forward(self, x, ple_input, cos, sin, positions, cache, start, shared):
        x = x + self.post_attention_layernorm(
            self.self_attn(self.input_layernorm(x), cos, sin, positions, cache, start, shared))
        residual = x
        y = self.mlp(self.pre_feedforward_layernorm(x))
        if self.moe:
            flat = residual.reshape(-1, residual.shape[-1])
            weights, index = self.router(flat)
            routed = self.experts(self.pre_feedforward_layernorm_2(flat), weights, index).reshape(residual.shape)
            y = self.post_feedforward_layernorm_1(y) + self.post_feedforward_layernorm_2(routed)
        x = residual + self.post_feedforward_layernorm(y)
        if self.ple:
            gated = F.gelu(self.per_layer_input_gate(x), approximate="tanh") * ple_input
            x = x + self.post_per_layer_input_norm(self.per_layer_projection(gated))
        return x * self.layer_scalar


class TextModel(nn.Module):
    def __init__(self, t: TextSpec):
        super().__init__()
        self.spec = t
        self.embed_tokens = nn.Embedding(t.vocab_size, t.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(t, i) for i in range(t.num_layers))
        self.norm = RMSNorm(t.hidden_size, t.rms_norm_eps)
        if t.has_ple:
            P, L = t.hidden_size_per_layer_input, t.num_layers
            self.embed_tokens_per_layer = nn.Embedding(t.vocab_size_per_layer_input, L * P)
            self.per_layer_model_projection = nn.Linear(t.hidden_size, L * P, bias=False)
            self.per_layer_projection_norm = RMSNorm(P, t.rms_norm_eps)
        for kind, layer_type in (("sliding", "sliding_attention"), ("full", "full_attention")):
            if layer_type in t.layer_types:
                layer = t.layer_types.index(layer_type)
                self.register_buffer(f"inv_freq_{kind}", rope_inv_freq(t.rope(layer), t.head_dim_of(layer)), persistent=False)

    def per_layer_inputs(self, ids: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        t = self.spec
        P, L, w = t.hidden_size_per_layer_input, t.num_layers, self.embed_tokens_per_layer.weight
        token = self.embed_tokens_per_layer(ids) * torch.tensor(P ** 0.5, dtype=w.dtype)
        context = self.per_layer_model_projection(embeds) * t.hidden_size ** -0.5
        context = self.per_layer_projection_norm(context.reshape(*ids.shape, L, P))
        return (context + token.reshape(*ids.shape, L, P)) * 2 ** -0.5

    def rope(self, kind: str, positions: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[:, None].float() * getattr(self, f"inv_freq_{kind}")[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, ids: torch.Tensor, cache: KVCache, start: int, keep: int | None) -> torch.Tensor | None:
        """Hidden states of the last ``keep`` positions (all when None); None when keep == 0.

        With keep == 0 (an intermediate prefill chunk) the KV-shared layers are skipped: they
        write no cache, so no later step needs their output.
        """
        t, dtype = self.spec, self.norm.weight.dtype  # the model's dtype (a quantized embedding has no weight)
        x = self.embed_tokens(ids) * torch.tensor(t.hidden_size ** 0.5, dtype=dtype)
        ple = self.per_layer_inputs(ids, x) if t.has_ple else None
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        ropes = {kind: self.rope(kind, positions, x.dtype) for kind in ("sliding", "full") if hasattr(self, f"inv_freq_{kind}")}
        shared: dict = {}
        for i, layer in enumerate(self.layers):
            if i == t.first_kv_shared_layer and keep is not None:
                if keep == 0:
                    return None
                x, positions = x[:, -keep:], positions[-keep:]
                ple = ple[:, -keep:] if ple is not None else None
                ropes = {k: (c[-keep:], s[-keep:]) for k, (c, s) in ropes.items()}
            cos, sin = ropes["sliding" if t.is_sliding(i) else "full"]
            x = layer(x, ple[:, :, i] if ple is not None else None, cos, sin, positions, cache, start, shared)
        if keep is not None:
            if keep == 0:
                return None
            x = x[:, -keep:]
        return self.norm(x)


class Gemma4ForCausalLM(nn.Module):
    """The text decoder with its tied LM head.  Build with ``from_spec`` / ``from_pretrained``."""

    def __init__(self, spec: TextSpec):
        super().__init__()
        self.spec = spec
        self.model = TextModel(spec)
        self.lm_head = None if spec.tie_word_embeddings else nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)

    # ---- construction --------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                  seed: int | None = 0, init_std: float = 0.02) -> Gemma4ForCausalLM:
        """Random weights (normal, std ``init_std``; norms and scales 1) on any device, meta included."""
        text = getattr(spec, "text", spec)
        with torch.device(device):
            model = cls(text)
        model.to(dtype)
        if torch.device(device).type != "meta":
            generator = torch.Generator(device=device).manual_seed(seed if seed is not None else 0)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if p.ndim >= 2:
                        p.normal_(0.0, init_std, generator=generator)  # in place: no full-size temporary
                    elif name.endswith("per_expert_scale") or name.endswith(".scale") or "norm" in name:
                        p.fill_(1.0)
        return model.eval()

    @classmethod
    def from_pretrained(cls, path, *, dtype: torch.dtype | None = None, device: str = "cpu") -> Gemma4ForCausalLM:
        from g4sim.model.checkpoint import load_causal_lm

        return load_causal_lm(cls, path, dtype=dtype, device=device)

    # ---- inference -------------------------------------------------------------------
    def new_cache(self, batch: int, max_context: int) -> KVCache:
        w = self.model.norm.weight
        return KVCache(self.spec, batch, max_context, w.dtype, w.device)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        head = self.model.embed_tokens if self.lm_head is None else self.lm_head
        # a quantized tied embedding (g4sim.model.quant.QuantEmbedding) multiplies through its own kernel
        logits = (head.as_head(hidden) if hasattr(head, "as_head") else F.linear(hidden, head.weight)).float()
        cap = self.spec.final_logit_softcapping
        return logits.div_(cap).tanh_().mul_(cap) if cap else logits  # in place: one fp32 vocab tensor, not three

    @torch.no_grad()
    def forward(self, ids: torch.Tensor, cache: KVCache | None = None, start: int = 0,
                logits_to_keep: int | None = 1, prefill_chunk: int | None = None) -> torch.Tensor:
        """Logits (fp32) for the last ``logits_to_keep`` positions (None = every position).

        Without a cache a temporary one sized to the input is used.  ``prefill_chunk`` splits
        the input into chunks of at most that many tokens (bounded prefill memory).
        """
        if cache is None:
            cache = self.new_cache(ids.shape[0], start + ids.shape[1])
        n = ids.shape[1]
        chunk = prefill_chunk or n
        pieces = []
        for begin in range(0, n, chunk):
            end = min(begin + chunk, n)
            last = end == n
            if logits_to_keep is None:
                keep = None
            elif last:
                keep = min(logits_to_keep, end - begin)
            else:  # earlier chunks contribute logits only if they fall inside the kept tail
                keep = max(0, min(end - begin, logits_to_keep - (n - end)))
            hidden = self.model(ids[:, begin:end], cache, start + begin, keep)
            if hidden is not None:
                pieces.append(hidden)
        hidden = torch.cat(pieces, dim=1)
        if logits_to_keep is not None:
            hidden = hidden[:, -logits_to_keep:]
        return self.logits(hidden)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of parameters and persistent buffers (quantized weights are buffers)."""
    return sum(p.nbytes for p in model.parameters()) + sum(
        b.nbytes for name, b in model.named_buffers() if not name.split(".")[-1].startswith("inv_freq"))


__all__ = ["Gemma4ForCausalLM", "KVCache", "count_parameters", "parameter_bytes"]
