"""Measuring g4sim's own model: the profiler, the measurement store, validation and calibration (torch, lazily)."""
