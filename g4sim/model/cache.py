"""A KV cache designed for memory: preallocated, ring buffers for sliding layers, nothing for shared layers.

Per cache-owning layer: K and V tensors of shape [batch, kv_heads, cells, head_dim], where cells is
``min(max_context, sliding_window)`` for sliding layers (a ring: position p lives in slot p % cells)
and ``max_context`` for full layers.  KV-shared layers own nothing.  ``nbytes`` reports exactly
what was allocated; ``tests/test_model_cache.py`` checks it against ``g4sim.analytic.kv_layer_bytes``.
"""

from __future__ import annotations

import torch

from g4sim.spec import TextSpec


class KVCache:
    def __init__(self, spec: TextSpec, batch: int, max_context: int, dtype: torch.dtype, device: torch.device | str = "cpu"):
        self.spec, self.batch, self.max_context = spec, batch, max_context
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}
        for layer in spec.cache_layers:
            cells = self.cells(layer)
            shape = (batch, spec.kv_heads(layer), cells, spec.head_dim_of(layer))
            self.k[layer] = torch.zeros(shape, dtype=dtype, device=device)
            self.v[layer] = torch.zeros(shape, dtype=dtype, device=device)

    def cells(self, layer: int) -> int:
        if self.spec.is_sliding(layer):
            return min(self.max_context, self.spec.sliding_window)
        return self.max_context

    def nbytes(self, layer: int | None = None) -> int:
        layers = self.k if layer is None else [layer]
        return sum(self.k[i].nbytes + self.v[i].nbytes for i in layers if i in self.k)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store the chunk's K/V (positions start..start+c-1); return what the chunk attends over, with positions."""
        c = k.shape[2]
        if start + c > self.max_context:
            raise ValueError(f"position {start + c} is past the cache's max_context {self.max_context}")
        ck, cv = self.k[layer], self.v[layer]
        if not self.spec.is_sliding(layer):
            ck[:, :, start:start + c] = k
            cv[:, :, start:start + c] = v
            return ck[:, :, :start + c], cv[:, :, :start + c], torch.arange(start + c, device=k.device)
        ring = ck.shape[2]
        # the chunk's first query sees (start - window, start]: only the last window - 1 past positions
        held = min(start, ring, self.spec.sliding_window - 1)
        past_pos = torch.arange(start - held, start, device=k.device)
        slots = past_pos % ring
        keys = torch.cat([ck[:, :, slots], k], dim=2)
        values = torch.cat([cv[:, :, slots], v], dim=2)
        positions = torch.cat([past_pos, torch.arange(start, start + c, device=k.device)])
        keep = min(c, ring)  # only the chunk's last `ring` positions survive
        new_pos = torch.arange(start + c - keep, start + c, device=k.device)
        ck[:, :, new_pos % ring] = k[:, :, c - keep:]
        cv[:, :, new_pos % ring] = v[:, :, c - keep:]
        return keys, values, positions
