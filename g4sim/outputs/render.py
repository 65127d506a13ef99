"""Terminal rendering (rich).  Presentation only: every number comes from a plan's evaluation.

Data goes to stdout (the console given); nothing here computes a figure.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from g4sim.analytic.components import CATEGORIES, Location
from g4sim.evaluation import Verdict
from g4sim.plan import Plan
from g4sim.plan.layouts import RANKED_BY
from g4sim.units import format_bytes, format_context, format_count

_VERDICT_STYLE = {Verdict.FITS: "bold green", Verdict.TIGHT: "bold yellow", Verdict.DOES_NOT_FIT: "bold red"}


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB"


def _header(plan: Plan, console: Console) -> None:
    e = plan.evaluation
    r, w = e.request, e.request.workload
    from g4sim.analytic.params import count_params

    p = count_params(w.spec, vision=w.vision, audio=w.audio)
    active = f", {format_count(p.active)} active" if p.active != p.total else ""
    ple = f", {format_count(p.effective)} without PLE" if p.effective != p.total else ""
    towers = " + ".join(t for t, on in (("vision", w.vision), ("audio", w.audio)) if on) or "text only"
    settings = ", ".join(f"{k}={v}" for k, v in e.settings.items())
    console.print(Text.assemble(
        ("Gemma 4 ", "bold"), (w.spec.name, "bold cyan"), f"  {format_count(p.total)} params{active}{ple}  ({towers})\n",
        f"context {format_context(w.ctx)} ({w.ctx:,} tokens) x batch {w.batch}  ·  weights ", (w.quant, "bold"),
        f"  ·  KV {w.kv_dtype}  ·  engine ", (r.engine.name, "bold"), f" ({settings})\n" if settings else "\n",
        "on ", (f"{r.gpus} x " if r.gpus > 1 else "", "bold"), (r.device.display_name, "bold"),
        f"  ({format_bytes(r.device.memory_bytes)}; usable {format_bytes(r.usable_device_bytes())} after OS / display / "
        f"driver; engine budget {format_bytes(e.budget_bytes)})",
    ))
    if plan.choice or r.engine_reason:
        why = "; ".join(x for x in (plan.choice, f"engine {r.engine.name}: {r.engine_reason}" if r.engine_reason else "") if x)
        console.print(Text(f"chosen by g4sim: {why}", style="cyan"))


def render_plan(plan: Plan, console: Console) -> None:
    e = plan.evaluation
    r, m = e.request, e.memory
    _header(plan, console)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("component" + (" (per GPU)" if r.gpus > 1 else ""))
    table.add_column("size", justify="right")
    table.add_column("share", justify="right")
    table.add_column("where")
    explain = console.width >= 120  # the formulas need room; --json always carries them
    if explain:
        table.add_column("how it is computed", style="dim", overflow="fold", max_width=console.width - 75)
    total_all = m.total(None) or 1

    def row(*cells):
        table.add_row(*(cells if explain else cells[:4]))

    for category in CATEGORIES:
        terms = [t for t in m.terms if t.category is category and t.bytes]
        if not terms:
            continue
        subtotal = sum(t.bytes for t in terms if t.location is Location.ACCELERATOR)
        row(Text(category.title, style="bold"), Text(_gib(subtotal), style="bold"), f"{subtotal / total_all:.0%}", "", "")
        for t in terms:
            row(f"  {t.component.label}", _gib(t.bytes), f"{t.bytes / total_all:.0%}", t.location.value, t.source)
    row("", "", "", "", "")
    row(Text("Total on the accelerator", style="bold"), Text(_gib(m.total()), style="bold"), "", "", "")
    if m.total(Location.HOST):
        note = "the same RAM: counted in the need" if e.needed_bytes > m.total() else "host RAM"
        row("Held in host memory", _gib(m.total(Location.HOST)), "", "host", note)
    row("Budget", _gib(e.budget_bytes), "", "", f"{r.device.name}: usable memory, capped by {r.engine.name}'s budget rule")
    row(f"Margin ({r.margin.describe()})", _gib(e.margin_bytes), "", "", "--margin: spare kept for what no model predicts")
    style = _VERDICT_STYLE[e.verdict]
    row(Text("Headroom", style=style), Text(_gib(e.headroom_bytes), style=style), "", "", "budget - need")
    console.print(table)
    if e.verdict is Verdict.FITS:
        console.print(Text(f"✔ FITS with {format_bytes(e.headroom_bytes)} to spare (margin {format_bytes(e.margin_bytes)})",
                           style=style))
    elif e.verdict is Verdict.TIGHT:
        console.print(Text(f"! FITS BUT TIGHT: {format_bytes(e.headroom_bytes)} to spare, less than the "
                           f"{format_bytes(e.margin_bytes)} margin", style=style))
    else:
        console.print(Text(f"✘ DOES NOT FIT: needs {format_bytes(e.needed_bytes)}, budget {format_bytes(e.budget_bytes)} "
                           f"(short by {format_bytes(-e.headroom_bytes)})", style=style))
    ctx_line = (f"{format_context(plan.max_context)} ({plan.max_context:,} tokens)" if plan.max_context > 0
                else "none (even one token does not fit)")
    console.print(f"Largest context that fits with the margin (batch {r.workload.batch}): {ctx_line}")
    console.print(f"Largest batch at {format_context(r.workload.ctx)} with the margin: {plan.max_batch}")
    speed = e.speed
    if speed is not None:
        how = (f"terms fitted for {speed.speed_class}" if speed.calibrated
               else f"profile efficiencies, {speed.efficiency_provenance.split(':')[0].split(' on ')[0]}")
        console.print(Text.assemble(
            ("Speed (predicted, ", "bold"), (f"{how}; {speed.layout}", "bold"), ("): ", "bold"),
            f"time to first token {speed.ttft_seconds:,.2f} s  ·  prefill {speed.prefill_tokens_per_s:,.0f} tok/s "
            f"(roofline {speed.prefill_tokens_per_s_roofline:,.0f}; {speed.band_text('prefill')})  ·  decode "
            f"{speed.decode_tokens_per_s_per_sequence:,.1f} tok/s per sequence, {speed.decode_tokens_per_s:,.1f} "
            f"aggregate (roofline {speed.decode_tokens_per_s_roofline:,.1f}, {speed.decode_bound}-bound; "
            f"{speed.band_text('decode')})"))
    if plan.layouts:
        table = Table(title=f"Layouts that load, ranked: {RANKED_BY} (memory computed, speed predicted)",
                      title_justify="left", box=None, header_style="bold", pad_edge=False)
        for col in ("#", "layout", "verdict", "per GPU", "headroom", "host", "decode tok/s"):
            table.add_column(col, justify="left" if col in ("#", "layout", "verdict") else "right")
        for i, lay in enumerate(plan.layouts, 1):
            le = lay.evaluation
            table.add_row(str(i), lay.name, Text(le.verdict.value.replace("_", " "), style=_VERDICT_STYLE[le.verdict]),
                          _gib(le.needed_bytes), _gib(le.headroom_bytes), _gib(le.host_bytes) if le.host_bytes else "-",
                          f"{le.speed.decode_tokens_per_s:,.1f}")
        console.print(table)
        for i, lay in enumerate(plan.layouts, 1):
            if lay.evaluation.command:
                console.print(Text(f"#{i}:", style="bold"))
                console.print(lay.evaluation.command, markup=False, highlight=False, soft_wrap=True)
    elif e.verdict is Verdict.DOES_NOT_FIT:
        console.print("No layout fits: lower --ctx or --batch, or a quantized --kv-dtype.")
    for line in e.engine_view:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if e.command:
        console.print(Text("Launch it:", style="bold"))
        console.print(e.command, markup=False, highlight=False, soft_wrap=True)  # copy-pasteable: never re-wrapped
    speed = e.speed
    how = (f"speed predicted with terms fitted for {speed.speed_class} on measured and published runs" if speed and
           speed.calibrated else "speed predicted from the hardware profile's efficiencies")
    console.print(Text(f"Memory computed by g4sim's analytic model; {how}; nothing measured for this plan.",
                       style="dim"))


def render_validation(checks, summary_rows, console: Console) -> None:
    """Per-row predicted vs measured, then the summary per figure and split (in-sample, held-out, quantized)."""
    detail = Table(title="Predicted (analytic) vs measured, per component", title_justify="left", box=None,
                   header_style="bold", pad_edge=False)
    for col in ("configuration", "split", "figure", "predicted", "measured", "error", "tolerance", ""):
        detail.add_column(col, justify="left" if col in ("configuration", "split", "figure", "") else "right")
    for c in checks:
        fmt = (lambda v: f"{v / 2**20:,.1f} MiB") if c.figure.endswith("bytes") else (lambda v: f"{v:,.1f} tok/s")
        tol = "reported" if c.tolerance is None else ("exact" if c.tolerance == 0 else f"±{c.tolerance:.0%}")
        mark = Text("ok", style="green") if c.ok else Text("FAIL", style="bold red")
        detail.add_row(c.config, c.split, c.figure, fmt(c.predicted), fmt(c.measured), f"{c.error:+.2%}", tol, mark)
    console.print(detail)
    table = Table(title="Validation summary: in-sample (calibration), held-out and quantized rows apart; speeds are "
                        "held to the tolerance on held-out rows only (frozen split, g4sim/measure/split.py)",
                  title_justify="left", box=None, header_style="bold", pad_edge=False)
    for col in ("figure", "split", "rows", "held", "mean |error|", "worst", "tolerance", "failures"):
        table.add_column(col, justify="left" if col in ("figure", "split") else "right")
    for r in summary_rows:
        table.add_row(r["figure"], r["split"], str(r["rows"]), str(r["held_to_tolerance"]), f"{r['mean_abs_error']:.2%}",
                      f"{r['worst_error']:+.2%}", "exact" if r["tolerance"] == 0 else f"±{r['tolerance']:.0%}",
                      str(r["failures"]))
    console.print(table)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.0%}"


def render_speed_rows(scored: list[dict], console: Console, title: str) -> None:
    """Each run's predicted vs measured tokens/s, with its split and source."""
    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for col in ("run", "class", "phase", "split", "measured tok/s", "predicted tok/s", "error", "source"):
        table.add_column(col, justify="right" if "tok/s" in col or col == "error" else "left")
    for s in scored:
        table.add_row(s["label"], s["class"], s["phase"], s["split"], f"{s['tokens'] / s['measured_s']:,.2f}",
                      f"{s['tokens'] / s['predicted_s']:,.2f}", f"{s['error']:+.1%}", s["source"][:60])
    console.print(table)


def render_speed_bands(bands: dict[str, dict[str, dict[str, dict]]], console: Console, title: str) -> None:
    """Per class and phase: |error| of tokens/s on the calibration rows (in-sample) and the held-out rows."""
    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for col in ("class", "phase", "in-sample median", "p90", "n", "held-out median", "p90 ", "n "):
        table.add_column(col, justify="left" if col in ("class", "phase") else "right")
    for key, by_split in bands.items():
        for phase in ("prefill", "decode"):
            c, h = by_split["calibration"][phase], by_split["held-out"][phase]
            table.add_row(key, phase, _pct(c["median"]), _pct(c["p90"]), str(c["n"]), _pct(h["median"]),
                          _pct(h["p90"]), str(h["n"]))
    console.print(table)


def render_speed_fit(entries: dict[str, dict], scored: list[dict], console: Console) -> None:
    """Fitted terms per class, then the runs and the error bands (in-sample and held-out apart)."""
    table = Table(title="Fitted speed terms (fraction of the compute peak / of the bandwidth achieved per format "
                        "family; fixed seconds per layer)", title_justify="left", box=None, header_style="bold",
                  pad_edge=False)
    for col in ("class", "family", "prefill compute", "decode bandwidth", "prefill s/layer/pass", "decode s/layer",
                "expert rows at peak"):
        table.add_column(col, justify="left" if col in ("class", "family") else "right")
    for key, e in entries.items():
        for fam in sorted(set(e["prefill_compute"]) | set(e["decode_bandwidth"])):
            table.add_row(key, fam, str(e["prefill_compute"].get(fam, "-")), str(e["decode_bandwidth"].get(fam, "-")),
                          f"{e['prefill_layer_seconds']:.3g}", f"{e['decode_layer_seconds']:.3g}",
                          f"{e['expert_rows_at_peak']:.2f}")
    console.print(table)
    render_speed_rows(scored, console, "Runs: predicted (with these terms) vs measured")
    render_speed_bands({k: {"calibration": e["in_sample"], "held-out": e["bands"]} for k, e in entries.items()},
                       console, "Error of tokens/s, in-sample (calibration rows) and held-out apart")


def render_check(diffs, console: Console) -> None:
    """Changed figures in full; unchanged ones counted."""
    changed = [d for d in diffs if d.verdict != "same"]
    table = Table(title="g4sim check: figures that moved", title_justify="left", box=None, header_style="bold",
                  pad_edge=False)
    for col in ("configuration", "figure", "baseline", "now", "change", "tolerance", "verdict"):
        table.add_column(col, justify="left" if col in ("configuration", "figure", "verdict") else "right")
    for d in changed:
        style = "bold red" if d.verdict in ("regression", "changed") else "green"
        table.add_row(d.config, d.figure, f"{d.baseline:,.0f}", f"{d.now:,.0f}", f"{d.change:+.3%}",
                      f"{d.tolerance:.1%}", Text(d.verdict, style=style))
    if changed:
        console.print(table)
    regressions = sum(d.verdict in ("regression", "changed") for d in diffs)
    improvements = sum(d.verdict == "improvement" for d in diffs)
    style = "bold red" if regressions else "bold green"
    console.print(Text(f"{len(diffs)} figures checked: {regressions} regressions or changes, {improvements} improvements, "
                       f"{len(diffs) - len(changed)} unchanged", style=style))
