"""The analytic model: parameters, weight / KV / activation / overhead memory. Pure Python, no torch."""

from g4sim.analytic.memory import (
    CATEGORIES, MemoryBreakdown, MemoryTerm, estimate_memory, kv_bytes_per_cell, kv_layer_bytes,
    weight_bytes_by_component,
)
from g4sim.analytic.params import ComponentParams, ParamBreakdown, count_params
from g4sim.analytic.quant import KV_DTYPES, QUANT_FORMATS, KVDtype, QuantFormat, get_kv_dtype, get_quant

__all__ = [
    "CATEGORIES", "ComponentParams", "KVDtype", "KV_DTYPES", "MemoryBreakdown", "MemoryTerm", "ParamBreakdown",
    "QUANT_FORMATS", "QuantFormat", "count_params", "estimate_memory", "get_kv_dtype", "get_quant",
    "kv_bytes_per_cell", "kv_layer_bytes", "weight_bytes_by_component",
]
