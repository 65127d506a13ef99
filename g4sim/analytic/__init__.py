"""The analytic model: parameters, weight / KV / activation / overhead memory, work. Pure Python, no torch.

What an engine allocates is the engine's rule (``g4sim.engines``); this package holds the
formulas every engine shares and the component vocabulary (``components``).
"""

from g4sim.analytic.components import CATEGORIES, Category, Component, Location
from g4sim.analytic.memory import (
    MemoryBreakdown, MemoryTerm, kv_bytes_per_cell, kv_layer_bytes, weight_bytes_by_component,
)
from g4sim.analytic.params import ComponentParams, ParamBreakdown, count_params
from g4sim.analytic.quant import KV_DTYPES, QUANT_FORMATS, KVDtype, QuantFormat, get_kv_dtype, get_quant

__all__ = [
    "CATEGORIES", "Category", "Component", "ComponentParams", "KVDtype", "KV_DTYPES", "Location", "MemoryBreakdown",
    "MemoryTerm", "ParamBreakdown", "QUANT_FORMATS", "QuantFormat", "count_params", "get_kv_dtype", "get_quant",
    "kv_bytes_per_cell", "kv_layer_bytes", "weight_bytes_by_component",
]
