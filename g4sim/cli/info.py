"""``g4sim models`` and ``g4sim gpus``: what g4sim knows."""

from __future__ import annotations

import json

import typer
from rich import box
from rich.table import Table

from g4sim.cli.app import app, out as console

@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The Gemma 4 variants g4sim knows, with their exact parameter counts."""
    from g4sim.analytic import count_params
    from g4sim.spec import VARIANTS
    from g4sim.units import format_context, format_count

    rows = []
    for name, spec in VARIANTS.items():
        t, p = spec.text, count_params(spec, vision=False, audio=False)
        rows.append({"model": name, "layers": t.num_layers, "hidden": t.hidden_size, "window": t.sliding_window,
                     "params_total": p.total, "params_active": p.active, "params_effective": p.effective,
                     "max_context_tokens": spec.max_context, "moe": t.enable_moe_block,
                     "vision": spec.vision is not None, "audio": spec.audio is not None})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Gemma 4 variants (parameters computed from the exact spec)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("model", "layers", "hidden", "window", "total", "active", "w/o PLE", "max ctx", "towers"):
        table.add_column(col, justify="left" if col in ("model", "towers") else "right", no_wrap=True)
    for r in rows:
        towers = "+".join(k for k in ("vision", "audio") if r[k]) or "-"
        towers = towers.replace("vision+audio", "vis+audio")
        table.add_row(r["model"], str(r["layers"]), str(r["hidden"]), str(r["window"]),
                      format_count(r["params_total"]), format_count(r["params_active"]),
                      format_count(r["params_effective"]), format_context(r["max_context_tokens"]), towers)
    console.print(table)


@app.command()
def gpus(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The hardware profiles g4sim knows (hardware_profiles/*.yaml)."""
    from g4sim.hardware import load_profiles

    profiles = load_profiles()
    if as_json:
        typer.echo(json.dumps([{"name": p.name, "display_name": p.display_name, "kind": p.kind,
                                "memory_bytes": p.memory_bytes, "usable_bytes": p.usable_memory_bytes,
                                "usable_bytes_headless": p.usable_bytes(False),
                                "memory_bandwidth_bytes_per_s": p.memory_bandwidth_bytes_per_s,
                                "peak_flops": p.peak_flops} for p in profiles.values()], indent=2))
        return
    wide = console.width >= 120  # the vendor's full name needs room; the profile name never gets cut
    table = Table(title="Hardware profiles (each figure's kind and source: the YAML's provenance block)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = ["name", *(["device"] if wide else []), "kind", "memory", "usable", "GB/s", "bf16 TF/s", "link"]
    rows = [[p.name, *([p.display_name] if wide else []), p.kind, f"{p.memory_bytes / 2**30:,.1f} GiB",
             f"{p.usable_memory_bytes / 2**30:,.1f} GiB", f"{p.memory_bandwidth_bytes_per_s / 1e9:,.0f}",
             f"{p.flops('bf16') / 1e12:,.1f}", p.interconnect.name if p.interconnect else "-"]
            for p in sorted(profiles.values(), key=lambda p: (p.kind, p.memory_bytes))]
    for k, col in enumerate(columns):
        fixed = col not in ("device", "link")  # these wrap; every other cell is shown whole
        table.add_column(col, justify="left" if col in ("name", "device", "kind", "link") else "right", no_wrap=fixed,
                         min_width=max(len(col), *(len(r[k]) for r in rows)) if fixed else None)
    for cells in rows:
        table.add_row(*cells)
    console.print(table)
