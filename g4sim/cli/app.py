"""The typer app and the two output sinks: data to stdout, diagnostics to stderr."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
    help="Capacity planner, architecture simulator and memory/throughput profiler for Gemma 4.",
)
out = Console(highlight=False)  # data: tables, plans, JSON
err = Console(stderr=True, highlight=False)  # diagnostics: what was written, what was skipped
