"""Terminal rendering of plans (rich).  Presentation only: every number comes from the plan."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from g4sim.plan import Plan
from g4sim.units import format_bytes, format_context, format_count

_CATEGORY_TITLES = {"weights": "Weights", "kv_cache": "KV cache", "activations": "Activations", "overhead": "Overhead"}


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB"


def render_plan(plan: Plan, console: Console) -> None:
    r, m = plan.request, plan.memory
    spec, dev = r.spec, r.device
    p = plan.params
    active = f", {format_count(p.active)} active" if p.active != p.total else ""
    ple = f", {format_count(p.effective)} without PLE" if p.effective != p.total else ""
    towers = " + ".join(t for t, on in (("vision", r.vision), ("audio", r.audio)) if on) or "text only"
    console.print(Text.assemble(
        ("Gemma 4 ", "bold"), (spec.name, "bold cyan"), f"  {format_count(p.total)} params{active}{ple}  ({towers})\n",
        f"context {format_context(r.ctx)} ({r.ctx:,} tokens) x batch {r.batch}  ·  weights {r.quant}  ·  KV {r.kv_dtype}  ·  ",
        f"engine {r.engine.name}" + (f" ({r.engine.attn_implementation})" if hasattr(r.engine, "attn_implementation") else ""),
        f"  ·  prefill chunk {r.prefill_chunk:,}\n" if r.prefill_chunk else "\n",
        ("on ", ""), (f"{r.gpus} x " if r.gpus > 1 else "", "bold"), (dev.display_name, "bold"), f"  ({format_bytes(dev.memory_bytes)}, usable {format_bytes(r.usable_bytes)})",
    ))
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("component")
    table.add_column("size", justify="right")
    table.add_column("share", justify="right")
    table.add_column("where")
    explain = console.width >= 120  # the formulas need room; --json always carries them
    if explain:
        table.add_column("how it is computed", style="dim", overflow="fold", max_width=console.width - 75)
    total_all = m.total(None) or 1

    def row(*cells):
        table.add_row(*(cells if explain else cells[:4]))

    for category, title in _CATEGORY_TITLES.items():
        terms = [t for t in m.terms if t.category == category and t.bytes]
        if not terms:
            continue
        subtotal = sum(t.bytes for t in terms if t.location == "accelerator")
        row(Text(title, style="bold"), Text(_gib(subtotal), style="bold"), f"{subtotal / total_all:.0%}", "", "")
        for t in terms:
            name = t.name.split(": ", 1)[-1]
            row(f"  {name}", _gib(t.bytes), f"{t.bytes / total_all:.0%}", t.location, t.source)
    row("", "", "", "", "")
    row(Text("Total on the accelerator", style="bold"), Text(_gib(plan.total_bytes), style="bold"), "", "", "")
    if m.total("host"):
        row("Held in host memory", _gib(m.total("host")), "", "host", "")
    row("Usable capacity", _gib(r.usable_bytes), "", "", f"{dev.name}: capacity minus OS/driver reserve")
    style = "green" if plan.fits else "red"
    row(Text("Headroom", style=style), Text(_gib(plan.headroom_bytes), style=style), "", "", "")
    console.print(table)
    if plan.fits:
        console.print(Text(f"✔ FITS with {format_bytes(plan.headroom_bytes)} to spare", style="bold green"))
    else:
        console.print(Text(f"✘ DOES NOT FIT: needs {format_bytes(plan.total_bytes)}, {format_bytes(r.usable_bytes)} usable "
                           f"(short by {format_bytes(-plan.headroom_bytes)})", style="bold red"))
    ctx_line = (f"{format_context(plan.max_context)} ({plan.max_context:,} tokens)" if plan.max_context > 0
                else "none (even one token does not fit)")
    console.print(f"Largest context that fits (batch {r.batch}): {ctx_line}")
    console.print(f"Largest batch at {format_context(r.ctx)}: {plan.max_batch}")
    if not plan.fits:
        if plan.suggested_quant:
            console.print(f"Smallest-loss quantization that fits at {format_context(r.ctx)}: [bold]{plan.suggested_quant}[/bold]"
                          f"  (g4sim plan ... --quant {plan.suggested_quant})")
        else:
            console.print("No weight format fits at this context and batch: lower --ctx or --batch, or a quantized --kv-dtype.")
    sections = dict(plan.sections)
    speed = sections.get("throughput")
    if speed is not None:
        console.print(Text.assemble(
            ("Speed (predicted, ", "bold"), (f"{speed.efficiency_provenance.split(':')[0]} efficiencies", "bold"),
            ("): ", "bold"),
            f"time to first token {speed.ttft_seconds:,.2f} s  ·  prefill {speed.prefill_tokens_per_s:,.0f} tok/s "
            f"(roofline {speed.prefill_tokens_per_s_roofline:,.0f})  ·  decode {speed.decode_tokens_per_s_per_sequence:,.1f} "
            f"tok/s per sequence, {speed.decode_tokens_per_s:,.1f} aggregate (roofline "
            f"{speed.decode_tokens_per_s_roofline:,.1f}, {speed.decode_bound}-bound)"))
    layouts = sections.get("layouts")
    if layouts:
        table = Table(title="Layouts that fit, cheapest first (computed / predicted)", title_justify="left", box=None,
                      header_style="bold", pad_edge=False)
        for col in ("#", "layout", "GPUs", "per GPU", "host", "decode tok/s"):
            table.add_column(col, justify="left" if col in ("#", "layout") else "right")
        for i, lay in enumerate(layouts, 1):
            table.add_row(str(i), lay["name"], str(lay["gpus"]), _gib(lay["per_gpu_bytes"]),
                          _gib(lay["host_bytes"]) if lay["host_bytes"] else "-", f"{lay['decode_tokens_per_s']:,.1f}")
        console.print(table)
        for i, lay in enumerate(layouts, 1):
            if lay["command"]:
                console.print(Text(f"#{i}:", style="bold"))
                console.print(lay["command"], markup=False, highlight=False, soft_wrap=True)
    command = sections.get("launch_command")
    if command:
        console.print(Text("Launch it:", style="bold"))
        console.print(command, markup=False, highlight=False, soft_wrap=True)  # copy-pasteable: never re-wrapped
    console.print(Text("All figures computed by g4sim's analytic model (not measured).", style="dim"))


def render_validation(checks, summary_rows, console: Console) -> None:
    """Per-row predicted vs measured, then the summary per figure."""
    detail = Table(title="Predicted (analytic) vs measured, per component", title_justify="left", box=None,
                   header_style="bold", pad_edge=False)
    for col in ("configuration", "figure", "predicted", "measured", "error", "tolerance", ""):
        detail.add_column(col, justify="left" if col in ("configuration", "figure", "") else "right")
    for c in checks:
        fmt = (lambda v: f"{v / 2**20:,.1f} MiB") if c.figure.endswith("bytes") else (lambda v: f"{v:,.1f} tok/s")
        tol = "reported" if c.tolerance is None else ("exact" if c.tolerance == 0 else f"±{c.tolerance:.0%}")
        mark = Text("ok", style="green") if c.ok else Text("FAIL", style="bold red")
        if c.calibration and c.tolerance is None and "tokens" in c.figure:
            tol = "calib."
        detail.add_row(c.config, c.figure, fmt(c.predicted), fmt(c.measured), f"{c.error:+.2%}", tol, mark)
    console.print(detail)
    table = Table(title="Validation summary (errors over the rows held to each tolerance; speeds: rows the "
                        "calibration did not see, float weights)", title_justify="left", box=None, header_style="bold",
                  pad_edge=False)
    for col in ("figure", "rows", "held", "mean |error|", "worst", "tolerance", "failures"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for r in summary_rows:
        table.add_row(r["figure"], str(r["rows"]), str(r["held_to_tolerance"]), f"{r['mean_abs_error']:.2%}",
                      f"{r['worst_error']:+.2%}", "exact" if r["tolerance"] == 0 else f"±{r['tolerance']:.0%}",
                      str(r["failures"]))
    console.print(table)


def render_check(diffs, console: Console) -> None:
    """Changed figures in full; unchanged ones counted."""
    changed = [d for d in diffs if d.verdict != "same"]
    table = Table(title="g4sim check: figures that moved", title_justify="left", box=None, header_style="bold",
                  pad_edge=False)
    for col in ("configuration", "figure", "baseline", "now", "change", "tolerance", "verdict"):
        table.add_column(col, justify="left" if col in ("configuration", "figure", "verdict") else "right")
    for d in changed:
        style = "bold red" if d.verdict == "regression" else "green"
        table.add_row(d.config, d.figure, f"{d.baseline:,.0f}", f"{d.now:,.0f}", f"{d.change:+.3%}",
                      f"{d.tolerance:.1%}", Text(d.verdict, style=style))
    if changed:
        console.print(table)
    regressions = sum(d.verdict == "regression" for d in diffs)
    improvements = sum(d.verdict == "improvement" for d in diffs)
    style = "bold red" if regressions else "bold green"
    console.print(Text(f"{len(diffs)} figures checked: {regressions} regressions, {improvements} improvements, "
                       f"{len(diffs) - len(changed)} unchanged", style=style))
