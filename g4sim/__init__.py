"""g4sim: capacity planner, architecture simulator and memory/throughput profiler for Gemma 4.

Pipeline (see DESIGN.md):
    spec -> analytic -> plan -> report / sweep / check      (pure Python, no torch)
    model -> profile -> validate                             (torch, loaded lazily)
"""

__version__ = "0.1.0"
