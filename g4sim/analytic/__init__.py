"""The analytic model: parameters, weight / KV / activation / overhead memory. Pure Python, no torch."""

from g4sim.analytic.params import ComponentParams, ParamBreakdown, count_params

__all__ = ["ComponentParams", "ParamBreakdown", "count_params"]
