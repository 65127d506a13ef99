"""The engine seam: what a serving runtime allocates for a given model and workload.

An ``Engine`` is a frozen dataclass of that runtime's settings.  ``estimate_memory`` asks it for
four lists of ``MemoryTerm``s.  A new engine subclasses ``Engine``, sets ``name``, and overrides
what differs, most often:

* ``kv_cells(t, layer, ctx)`` — positions one sequence keeps for a cache-owning layer;
* ``kv_terms`` — when the allocation is not cells x bytes-per-cell (paged blocks, padding);
* ``activation_terms`` — its workspaces (compute buffers, profile-run reserve);
* ``overhead_terms`` — context, allocator, CUDA graphs;
* ``placement(component)`` — where a weight component lives (e.g. the PLE table on the host).

It is then registered in ``g4sim/engines/__init__.py``.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from g4sim.analytic.memory import (
    Location, MemoryTerm, kv_layer_bytes, logits_bytes, weight_bytes_by_component,
)
from g4sim.analytic.quant import get_quant
from g4sim.spec import ModelSpec, TextSpec
from g4sim.units import MiB

_TOWERS = ("vision_tower", "audio_tower")


def activation_bytes_per_element(quant: str) -> int:
    """Activations run in fp32 for fp32 weights, else in 16-bit."""
    return 4 if get_quant(quant).name == "fp32" else 2


@dataclass(frozen=True)
class Engine:
    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""

    ple_location: Location = "accelerator"
    logits_kept: int = 1  # positions whose logits are computed in prefill
    cuda_context_bytes: int = 512 * MiB  # CUDA context + cuBLAS workspace on first use (typical, torch 2.x)
    allocator_reserve_fraction: float = 0.05  # caching-allocator slack over KV + activations
    host_runtime_bytes: int = 0  # resident runtime on CPU-only devices (interpreter, libraries)

    def usable_bytes(self, device_bytes: int) -> int:
        """Of the device's usable memory, what this engine lets a deployment use."""
        return device_bytes

    # ---- weights -------------------------------------------------------------
    def placement(self, component: str) -> Location:
        if component == "ple_table":
            return self.ple_location
        return "accelerator"

    def weight_terms(self, spec: ModelSpec, quant: str, *, vision: bool, audio: bool) -> list[MemoryTerm]:
        fmt = get_quant(quant)
        by_component = weight_bytes_by_component(spec, quant, vision=vision, audio=audio)
        return [
            MemoryTerm(f"weights: {component}", "weights", n, self.placement(component),
                       f"{fmt.name}: sum over tensors of stored bytes" + (" (towers kept 16-bit)" if component in _TOWERS else ""))
            for component, n in by_component.items()
        ]

    # ---- KV cache --------------------------------------------------------------
    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        """Positions one sequence keeps for a cache-owning layer."""
        return min(ctx, t.sliding_window) if t.is_sliding(layer) else ctx

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        sliding = sum(kv_layer_bytes(t, i, self.kv_cells(t, i, ctx), kv_dtype, batch)
                      for i in t.cache_layers if t.is_sliding(i))
        full = sum(kv_layer_bytes(t, i, self.kv_cells(t, i, ctx), kv_dtype, batch)
                   for i in t.cache_layers if not t.is_sliding(i))
        n_s = sum(1 for i in t.cache_layers if t.is_sliding(i))
        n_f = len(t.cache_layers) - n_s
        cells_s = self.kv_cells(t, t.layer_types.index("sliding_attention"), ctx) if n_s else 0
        return [
            MemoryTerm("kv cache: sliding layers", "kv_cache", sliding, "accelerator",
                       f"{n_s} layers x {batch} seq x {cells_s} cells x 2 (K,V) x kv_heads x head_dim x {kv_dtype}"),
            MemoryTerm("kv cache: full layers", "kv_cache", full, "accelerator",
                       f"{n_f} layers x {batch} seq x {ctx} cells x 2 (K,V) x kv_heads x head_dim x {kv_dtype}"),
        ]

    # ---- activations -----------------------------------------------------------
    def attention_workspace(self, t: TextSpec, layer: int, chunk: int, kv_len: int, batch: int, a: int) -> int:
        """Transient bytes of one attention call beyond Q/K/V (engine-specific)."""
        return 0

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str,
                         prefill_chunk: int | None) -> list[MemoryTerm]:
        a = activation_bytes_per_element(quant)
        c = min(ctx, prefill_chunk or ctx)
        h = t.hidden_size
        hidden = 3 * batch * c * h * a  # residual, normed input, sub-layer output
        attn_peak, attn_layer = 0, 0
        for i in range(t.num_layers):
            kv_len = min(ctx, t.sliding_window - 1 + c) if t.is_sliding(i) else ctx
            hd = t.head_dim_of(i)
            qkv = batch * c * (2 * t.num_heads + 2 * t.kv_heads(i)) * hd * a  # q, rotated q, k, v of the chunk
            ws = qkv + self.attention_workspace(t, i, c, kv_len, batch, a)
            if ws > attn_peak:
                attn_peak, attn_layer = ws, i
        inter = max(t.mlp_intermediate(i) for i in range(t.num_layers))
        mlp_peak = 3 * batch * c * inter * a  # gate, up, act(gate)*up
        if t.enable_moe_block:
            routed = batch * c * t.top_k_experts
            mlp_peak += batch * c * t.num_experts * 4 + routed * (3 * t.moe_intermediate_size + h) * a
        logits = logits_bytes(t, min(self.logits_kept, c) if self.logits_kept else c, batch)
        work = {"attention": attn_peak, "MLP": mlp_peak, "logits": logits}
        which = max(work, key=work.get)
        terms = [
            MemoryTerm("activations: hidden states", "activations", hidden, "accelerator",
                       f"3 x batch x chunk {c} x hidden {h} x {a} B"),
            MemoryTerm(f"activations: peak workspace ({which})", "activations", work[which], "accelerator",
                       f"max of attention (layer {attn_layer}) {attn_peak} B, MLP {mlp_peak} B, "
                       f"logits {logits} B (fp32, {self.logits_kept or c} kept positions)"),
        ]
        if t.has_ple:
            ple = 2 * batch * c * t.num_layers * t.hidden_size_per_layer_input * a
            terms.append(MemoryTerm("activations: per-layer inputs (PLE)", "activations", ple, "accelerator",
                                    "2 x batch x chunk x layers x ple_dim (lookup + projection)"))
        return terms

    # ---- overhead --------------------------------------------------------------
    def overhead_terms(self, terms: list[MemoryTerm], *, device_kind: str) -> list[MemoryTerm]:
        dynamic = sum(t.bytes for t in terms if t.category in ("kv_cache", "activations") and t.location == "accelerator")
        reserve = int(dynamic * self.allocator_reserve_fraction)
        out = [MemoryTerm("overhead: allocator reserve", "overhead", reserve, "accelerator",
                          f"{self.allocator_reserve_fraction:.0%} of KV + activations (caching allocator slack)")]
        if device_kind == "gpu":
            out.append(MemoryTerm("overhead: CUDA context", "overhead", self.cuda_context_bytes, "accelerator",
                                  "CUDA context + library workspaces (engine setting)"))
        elif self.host_runtime_bytes:
            out.append(MemoryTerm("overhead: runtime", "overhead", self.host_runtime_bytes, "accelerator",
                                  "resident runtime (interpreter, libraries)"))
        return out
