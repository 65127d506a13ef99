"""Memory of one deployment, as named terms in bytes: weights, KV cache, activations, overhead.

``estimate_memory`` is the single entry point.  What an engine allocates (how many KV cells a
sliding layer keeps, its workspaces, where the PLE table lives, its runtime overhead) is the
engine's rule (``g4sim.engines``); the formulas shared by every engine live here.  Every term is
an integer number of bytes with a ``source`` note giving its formula.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from g4sim.analytic.quant import KVDtype, get_kv_dtype, get_quant
from g4sim.analytic.tensors import model_tensors, quant_context
from g4sim.spec import ModelSpec, TextSpec

if TYPE_CHECKING:
    from g4sim.engines.base import Engine

Category = Literal["weights", "kv_cache", "activations", "overhead"]
Location = Literal["accelerator", "host", "disk"]
CATEGORIES: tuple[Category, ...] = ("weights", "kv_cache", "activations", "overhead")


@dataclass(frozen=True)
class MemoryTerm:
    name: str
    category: Category
    bytes: int
    location: Location = "accelerator"
    source: str = ""


@dataclass(frozen=True)
class MemoryBreakdown:
    terms: tuple[MemoryTerm, ...]

    def total(self, location: Location | None = "accelerator") -> int:
        """Bytes at ``location`` (None = everywhere)."""
        return sum(t.bytes for t in self.terms if location is None or t.location == location)

    def by_category(self, location: Location | None = "accelerator") -> dict[str, int]:
        out = {c: 0 for c in CATEGORIES}
        for t in self.terms:
            if location is None or t.location == location:
                out[t.category] += t.bytes
        return out

    def terms_in(self, category: Category) -> tuple[MemoryTerm, ...]:
        return tuple(t for t in self.terms if t.category == category)

    def get(self, name: str) -> int:
        return sum(t.bytes for t in self.terms if t.name == name)


# ---- weights -------------------------------------------------------------

def weight_bytes_by_component(spec: ModelSpec, quant: str, *, vision: bool = False, audio: bool = False) -> dict[str, int]:
    """Stored bytes per component for a weight format (GGUF mixes priced tensor by tensor)."""
    return dict(_weight_bytes(spec, quant, vision, audio))


@lru_cache(maxsize=512)  # searches re-price the same weights many times
def _weight_bytes(spec: ModelSpec, quant: str, vision: bool, audio: bool) -> tuple[tuple[str, int], ...]:
    fmt = get_quant(quant)
    ctx = quant_context(spec.text)
    out: dict[str, int] = {}
    for t in model_tensors(spec, vision=vision, audio=audio):
        out[t.component] = out.get(t.component, 0) + fmt.tensor_bytes(t, ctx)
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


# ---- the entry point -----------------------------------------------------

def estimate_memory(
    spec: ModelSpec,
    *,
    ctx: int,
    batch: int = 1,
    quant: str = "bf16",
    kv_dtype: str = "bf16",
    engine: str | Engine = "transformers",
    vision: bool = False,
    audio: bool = False,
    prefill_chunk: int | None = None,
    device_kind: str = "gpu",
) -> MemoryBreakdown:
    """Peak memory of serving ``batch`` sequences of ``ctx`` tokens (prefill peak, cache full).

    ``device_kind`` ("gpu", "cpu", "soc") selects the engine's runtime overhead.
    """
    from g4sim.engines import get_engine

    if ctx <= 0 or batch <= 0:
        raise ValueError(f"ctx and batch must be positive (got ctx={ctx}, batch={batch})")
    eng = get_engine(engine) if isinstance(engine, str) else engine
    get_quant(quant), get_kv_dtype(kv_dtype)  # validate names early
    terms: list[MemoryTerm] = []
    terms += eng.weight_terms(spec, quant, vision=vision, audio=audio)
    terms += eng.kv_terms(spec.text, ctx=ctx, batch=batch, kv_dtype=kv_dtype)
    terms += eng.activation_terms(spec.text, ctx=ctx, batch=batch, quant=quant, prefill_chunk=prefill_chunk)
    terms += eng.overhead_terms(terms, device_kind=device_kind)
    return MemoryBreakdown(tuple(terms))
