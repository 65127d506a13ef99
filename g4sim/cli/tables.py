"""``g4sim sweep``, ``report``, ``capacity`` and ``check``: many evaluations at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from g4sim.cli.app import app, err, out
from g4sim.cli.resolve import (
    output_path, resolve_context, resolve_device, resolve_engine_name, resolve_kv_dtype, resolve_margin, resolve_quant, resolve_spec,
    split_list, user_device,
)
from g4sim.errors import UserError


@app.command()
def sweep(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Comma-separated variants (default: all)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", "-g", help="Comma-separated profiles or profile files "
                                      "(./my-device.yaml; default: all)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Comma-separated formats (default: all)."),
    ctx: Optional[str] = typer.Option(None, "--ctx", "-c", help="Comma-separated contexts (default: 12 from 1k to 256k)."),
    kv_dtype: str = typer.Option("bf16", "--kv-dtype"),
    engine: str = typer.Option("auto", "--engine", "-e", help="auto (per row), llamacpp, vllm, transformers, g4sim."),
    batch: int = typer.Option(1, "--batch", "-b", min=1, max=65536),
    gpus: int = typer.Option(1, "--gpus", min=1, max=64, help="GPUs per row (multi-GPU layouts of the engine)."),
    margin: str = typer.Option("5%", "--margin"),
    out_path: Optional[str] = typer.Option(None, "--out", "-o", help="Write .csv, .parquet or .json (default: CSV to stdout)."),
) -> None:
    """Every model x device x format x context as one table (pandas): each row is one `plan` evaluation."""
    from g4sim.analytic import QUANT_FORMATS
    from g4sim.engines import get_engine
    from g4sim.outputs.sweep import DEFAULT_CONTEXTS, FORMATS, SweepAxes, csv_text, sweep_rows, write_table
    from g4sim.spec import VARIANTS
    from g4sim.units import UnitError, parse_context_list

    models = tuple(resolve_spec(m, None).name for m in split_list(model)) or tuple(VARIANTS)
    devices = tuple(resolve_device(g) for g in split_list(gpu))
    for note in filter(None, map(user_device, devices)):
        err.print(note["note"], soft_wrap=True)
    devices = tuple(d.name for d in devices)
    quants = tuple(resolve_quant(q) for q in split_list(quant)) or tuple(QUANT_FORMATS)
    try:
        contexts = tuple(parse_context_list(ctx)) if ctx else DEFAULT_CONTEXTS
    except UnitError as exc:
        raise UserError(str(exc)) from exc
    name = resolve_engine_name(engine)
    target = output_path(out_path, "--out", tuple(sorted(FORMATS))) if out_path else None
    skipped: list[str] = []
    rows = sweep_rows(SweepAxes(models=models, devices=devices, quants=quants, contexts=contexts,
                                kv_dtype=resolve_kv_dtype(kv_dtype), engine=get_engine(name) if name else None,
                                batch=batch, gpus=gpus, margin=resolve_margin(margin)), skipped)
    if skipped:
        err.print(f"left out {len(skipped):,} combinations no engine can run as asked, e.g. {skipped[0]} "
                  "(`g4sim plan` says why for each)")
    if target:
        path = write_table(rows, target)
        err.print(f"wrote {len(rows):,} rows to {path}")
    else:
        typer.echo(csv_text(rows), nl=False)


@app.command()
def check(
    baseline: str = typer.Option("reports/baseline.json", "--baseline", help="Committed baseline file."),
    update: bool = typer.Option(False, "--update", help="Rewrite the baseline with the current figures."),
    junit: Optional[str] = typer.Option(None, "--junit", help="Also write JUnit XML here."),
    store: Optional[str] = typer.Option(None, "--store", help="Measurement store (default reports/measurements)."),
) -> None:
    """CI memory-regression check: exit 1 when a figure grows beyond its tolerance."""
    import os

    from g4sim.outputs.check import current, diff, github_annotations, junit_xml, write_baseline

    path = output_path(baseline, "--baseline", (".json",)) if update else Path(baseline)
    junit_path = output_path(junit, "--junit", (".xml",)) if junit else None
    now = current(Path(store) if store else None)
    if update:
        write_baseline(path, now)
        err.print(f"wrote {path} ({len(now)} configurations)")
        return
    if not path.is_file():
        raise UserError(f"baseline {baseline} does not exist; create it with `g4sim check --update --baseline {baseline}`")
    try:
        data = json.loads(path.read_text())
        diffs = diff(data, now)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"baseline {baseline} is malformed ({exc.__class__.__name__}: {exc})") from exc
    from g4sim.outputs.render import render_check

    render_check(diffs, out)
    if junit_path:
        from g4sim.files import write_text

        write_text(junit_path, junit_xml(diffs))  # atomic, 0644: no half-written XML
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(diffs, path):
            typer.echo(line)
    from g4sim.outputs.check import FAILING

    if any(d.verdict in FAILING for d in diffs):
        raise typer.Exit(1)


@app.command()
def report(
    scenario: Optional[str] = typer.Option(None, "--scenario", "-s", help="A scenario name (scenarios/*.yaml) or file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Comma-separated variants."),
    gpu: Optional[str] = typer.Option(None, "--gpu", "-g", help="Comma-separated hardware profiles or profile "
                                      "files (./my-device.yaml)."),
    quant: str = typer.Option("bf16,q8_0,q4_k_m", "--quant", "-q", help="Comma-separated weight formats."),
    ctx: str = typer.Option("32k", "--ctx", "-c", help="Context for the verdicts and the fit matrix."),
    batch: int = typer.Option(1, "--batch", "-b", min=1, max=65536),
    engine: str = typer.Option("auto", "--engine", "-e", help="auto (per format and device), or one engine."),
    margin: str = typer.Option("5%", "--margin"),
    out_path: Optional[str] = typer.Option(None, "--out", "-o", help="HTML file (default reports/<name>.html)."),
) -> None:
    """A self-contained HTML capacity report (opens offline) for a scenario or a model on devices."""
    from g4sim.outputs.report import ReportRequest, write_report

    margin_ = resolve_margin(margin)
    if out_path:
        output_path(out_path, "--out", (".html", ".htm"))
    if scenario:
        if model or gpu:
            raise UserError("--scenario names its own models and devices; drop --model / --gpu or edit the scenario")
        from g4sim.scenarios import ScenarioError, get_scenario

        try:
            sc = get_scenario(scenario)
        except ScenarioError as exc:
            raise UserError(str(exc)) from exc
        specs = tuple(resolve_spec(m, None) for m in sc.models)
        req = ReportRequest(
            title=f"Gemma 4 capacity report: {sc.name}", models=specs, devices=tuple(resolve_device(d) for d in sc.devices),
            quants=tuple(resolve_quant(q) for q in sc.quants), ctx=sc.sequence_tokens, batch=sc.concurrency,
            kv_dtype=sc.kv_dtype, engine=resolve_engine_name(sc.engine), margin=margin_, description=sc.description,
            notes=(f"scenario {sc.name}: {sc.context_tokens:,} prompt + {sc.multimodal_tokens:,} image/audio + "
                   f"{sc.output_tokens:,} output tokens per sequence, {sc.concurrency} concurrent",))
        name = sc.name
    else:
        if not model or not gpu:
            raise UserError("give --scenario NAME, or --model and --gpu (comma-separated lists)")
        specs = tuple(resolve_spec(m, None) for m in split_list(model))
        devices = tuple(resolve_device(g) for g in split_list(gpu))
        for note in filter(None, map(user_device, devices)):
            err.print(note["note"], soft_wrap=True)
        req = ReportRequest(
            title=f"Gemma 4 capacity report: {', '.join(s.name for s in specs)}", models=specs, devices=devices,
            quants=tuple(resolve_quant(q) for q in split_list(quant)), ctx=resolve_context(ctx, specs[0], True),
            batch=batch, engine=resolve_engine_name(engine), margin=margin_,
            description=f"{', '.join(s.name for s in specs)} on {', '.join(d.name for d in devices)}")
        name = "-".join(s.name for s in specs) + "_" + "-".join(d.name for d in devices)
    path = Path(out_path) if out_path else output_path(str(Path("reports") / f"{name}.html"), "--out", (".html",))
    write_report(req, path)
    err.print(f"wrote {path}")


@app.command(name="capacity")
def capacity_command(
    scenario: str = typer.Option(..., "--scenario", "-s", help="A scenario name (scenarios/*.yaml) or file."),
    margin: str = typer.Option("5%", "--margin"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Serving capacity of a scenario: concurrency that fits, aggregate decode speed, the knee."""
    from g4sim.engines import EngineError, Workload, get_engine
    from g4sim.engines.auto import choose
    from g4sim.evaluation import Request
    from g4sim.plan.capacity import longest_sequence, scenario_capacity
    from g4sim.scenarios import ScenarioError, get_scenario

    try:
        sc = get_scenario(scenario)
    except ScenarioError as exc:
        raise UserError(str(exc)) from exc
    margin_ = resolve_margin(margin)
    name = resolve_engine_name(sc.engine)
    rows = []
    for model in sc.models:
        spec = resolve_spec(model, None)
        for device_name in sc.devices:
            device = resolve_device(device_name)
            for quant in sc.quants:
                w = Workload(spec, min(sc.sequence_tokens, spec.max_context), 1, resolve_quant(quant), sc.kv_dtype)
                try:
                    engine, _ = choose(w, device) if name is None else (get_engine(name), "")
                except EngineError as exc:
                    rows.append({"model": model, "device": device_name, "quant": quant, "engine": None,
                                 "cannot_run": str(exc)})
                    continue
                problem = engine.compatibility(w, device, 1)
                if problem:
                    rows.append({"model": model, "device": device_name, "quant": quant, "engine": engine.name,
                                 "cannot_run": problem})
                    continue
                cap = scenario_capacity(Request(w, device, engine, margin=margin_), sc)
                rows.append({"model": model, "device": device_name, "quant": quant, "engine": engine.name,
                             **cap.to_dict()})
    if as_json:
        typer.echo(json.dumps({"scenario": sc.name, "engine": sc.engine, "rows": rows}, indent=2))
        return
    table = Table(title=f"{sc.name}: up to {longest_sequence(sc):,} tokens per sequence, {sc.concurrency} concurrent "
                        f"(engine {sc.engine}; memory computed, speed predicted)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "device", "quant", "engine", "max conc.", "fits", "knee", "agg. decode tok/s", "req/s"):
        table.add_column(col, justify="left" if col in ("model", "device", "quant", "engine", "fits") else "right")
    for r in rows:
        if "cannot_run" in r:
            table.add_row(r["model"], r["device"], r["quant"], r["engine"] or "-", "-", "cannot run", "-", "-", "-")
            continue
        at = [p for p in r["points"] if p["batch"] == min(r["asked_concurrency"], r["max_concurrency"])]
        table.add_row(r["model"], r["device"], r["quant"], r["engine"], str(r["max_concurrency"]),
                      "yes" if r["fits_asked"] else "no",
                      f"{r['knee_batch']} ({r['knee_reason']})" if r["max_concurrency"] else "-",
                      f"{at[0]['decode_tokens_per_s']:,.0f}" if at else "-",
                      f"{r['requests_per_s_at_asked']:,.2f}" if r["fits_asked"] else "-")
    out.print(table)
    for band in sorted({r["decode_band"] for r in rows if r.get("decode_band")}):
        out.print(f"decode speed: {band}")
