"""Memory of one deployment, as named terms in bytes: weights, KV cache, activations, overhead.

What an engine allocates (how many KV cells a sliding layer keeps, its workspaces, where the PLE
table lives, its runtime overhead) is the engine's rule (``g4sim.engines``, which also holds the
entry point ``estimate_memory``); the formulas shared by every engine live here.  Every term is
an integer number of bytes with a ``source`` note giving its formula.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from g4sim.analytic.components import CATEGORIES, Category, Component, Location
from g4sim.analytic.quant import KVDtype, Tensor, get_kv_dtype, get_quant
from g4sim.analytic.tensors import model_tensors, quant_context
from g4sim.spec import ModelSpec, TextSpec


@dataclass(frozen=True)
class MemoryTerm:
    """``bytes`` of one ``component`` held at ``location``; ``source`` gives the formula and its citation."""

    component: Component
    bytes: int
    location: Location = Location.ACCELERATOR
    source: str = ""

    @property
    def category(self) -> Category:
        return self.component.category

    @property
    def name(self) -> str:
        """What a person reads: the component's label, and where it lives when that is not the accelerator."""
        return self.component.label + (" (host)" if self.location is Location.HOST else "")


@dataclass(frozen=True)
class MemoryBreakdown:
    terms: tuple[MemoryTerm, ...]

    @cached_property  # breakdowns are cached and read many times: sum them once (cached_property skips the frozen setattr)
    def _sums(self) -> dict[Location | None, dict[str, int]]:
        """Per location (None = everywhere): bytes per category, plus the total under key ""."""
        out: dict[Location | None, dict[str, int]] = {
            where: dict.fromkeys([*(c.value for c in CATEGORIES), ""], 0) for where in (None, *Location)}
        for t in self.terms:
            cat = t.component.category.value
            for where in (None, t.location):
                out[where][cat] += t.bytes
                out[where][""] += t.bytes
        return out

    def total(self, location: Location | None = Location.ACCELERATOR) -> int:
        """Bytes at ``location`` (None = everywhere)."""
        return self._sums[None if location is None else Location(location)][""]

    def by_category(self, location: Location | None = Location.ACCELERATOR) -> dict[str, int]:
        """Bytes per category (keys are the categories' JSON names)."""
        sums = self._sums[None if location is None else Location(location)]
        return {c.value: sums[c.value] for c in CATEGORIES}

    def terms_in(self, category: Category) -> tuple[MemoryTerm, ...]:
        return tuple(t for t in self.terms if t.category is category)

    def get(self, component: Component, location: Location | None = Location.ACCELERATOR) -> int:
        """Bytes of ``component`` at ``location`` (None = everywhere)."""
        return sum(t.bytes for t in self.terms
                   if t.component is component and (location is None or t.location is location))


# ---- weights -------------------------------------------------------------

def weight_bytes_by_component(spec: ModelSpec, quant: str, *, vision: bool = False, audio: bool = False) -> dict[str, int]:
    """Stored bytes per component for a weight format (GGUF mixes priced tensor by tensor)."""
    return dict(_weight_bytes(spec, quant, vision, audio))


@lru_cache(maxsize=128)  # every engine, search and speed estimate prices the same file: price it once
def priced_tensors(spec: ModelSpec, quant: str, vision: bool = False, audio: bool = False) -> tuple[tuple[Tensor, int], ...]:
    """Every tensor of ``spec`` (text, and the towers asked for) with its stored bytes in format ``quant``."""
    fmt = get_quant(quant)
    ctx = quant_context(spec.text)
    return tuple((t, fmt.tensor_bytes(t, ctx)) for t in model_tensors(spec, vision=vision, audio=audio))


@lru_cache(maxsize=512)  # searches re-price the same weights many times
def _weight_bytes(spec: ModelSpec, quant: str, vision: bool, audio: bool) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    for t, b in priced_tensors(spec, quant, vision, audio):
        out[t.component] = out.get(t.component, 0) + b
    return tuple(out.items())


# ---- KV cache ------------------------------------------------------------

def kv_bytes_per_cell(t: TextSpec, layer: int, kv_dtype: KVDtype) -> int:
    """K and V of one position of one layer: 2 x kv_heads x head_dim elements.

    k_eq_v layers still cache V (derived from K through v_norm), so they cost the same.
    """
    return 2 * kv_dtype.bytes_for(t.kv_heads(layer) * t.head_dim_of(layer))


def kv_layer_bytes(t: TextSpec, layer: int, cells: int, kv_dtype: str | KVDtype = "bf16", batch: int = 1) -> int:
    """Bytes of one layer's cache holding ``cells`` positions for ``batch`` sequences."""
    dt = get_kv_dtype(kv_dtype) if isinstance(kv_dtype, str) else kv_dtype
    if t.is_kv_shared(layer):
        return 0
    return batch * cells * kv_bytes_per_cell(t, layer, dt)


# ---- activations ---------------------------------------------------------

def logits_bytes(t: TextSpec, kept_positions: int, batch: int = 1) -> int:
    """fp32 logits for the kept positions: vocab x 4 bytes each."""
    return batch * kept_positions * t.vocab_size * 4
