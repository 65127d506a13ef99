"""The ``g4sim`` command line (typer + rich).

Each command is a thin wrapper: it parses options, calls one pipeline module, and renders.
Commands that need torch (generate, profile, validate) import their module inside the function,
so ``g4sim plan`` never loads torch — keep it that way when adding a command:

    @app.command()
    def mycommand(...):
        from g4sim.mymodule import run   # lazy: heavy imports stay off the plan path
        run(...)

User errors raise ``g4sim.errors.UserError``; ``main`` prints them as one line and exits 2.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from g4sim.errors import UserError, unknown_choice

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
    help="Capacity planner, architecture simulator and memory/throughput profiler for Gemma 4.",
)
console = Console(highlight=False)


# ---- option parsing helpers (all raise UserError) ------------------------------

def resolve_spec(model: Optional[str], config: Optional[str]):
    from g4sim.spec import VARIANTS, SpecError, get_variant, load_config

    if config:
        try:
            return load_config(config)
        except SpecError as exc:
            raise UserError(str(exc)) from exc
    if not model:
        raise UserError("give --model (one of: " + ", ".join(VARIANTS) + ") or --config PATH")
    try:
        return get_variant(model)
    except KeyError:
        raise unknown_choice("model", model, VARIANTS) from None


def resolve_context(text: str, spec, allow_beyond_max: bool) -> int:
    from g4sim.units import UnitError, format_context, parse_context

    try:
        ctx = parse_context(text)
    except UnitError as exc:
        raise UserError(str(exc)) from exc
    if ctx > spec.max_context and not allow_beyond_max:
        raise UserError(f"context {text} ({ctx:,} tokens) is beyond {spec.name}'s maximum of "
                        f"{format_context(spec.max_context)} ({spec.max_context:,}); pass --allow-beyond-max to plan it anyway")
    return ctx


def resolve_device(name: str):
    from g4sim.hardware import ProfileError, get_profile

    try:
        return get_profile(name)
    except ProfileError as exc:
        raise UserError(str(exc)) from exc


def resolve_quant(name: str) -> str:
    from g4sim.analytic import QUANT_FORMATS, get_quant

    try:
        return get_quant(name).name
    except KeyError:
        raise unknown_choice("quantization", name, QUANT_FORMATS) from None


def resolve_kv_dtype(name: str) -> str:
    from g4sim.analytic import KV_DTYPES, get_kv_dtype

    try:
        return get_kv_dtype(name).name
    except KeyError:
        raise unknown_choice("KV-cache dtype", name, KV_DTYPES) from None


def resolve_engine(name: str, **options):
    from g4sim.engines import ENGINES, UnknownEngineError, get_engine

    try:
        return get_engine(name, **options)
    except UnknownEngineError:
        raise unknown_choice("engine", name, ENGINES) from None
    except ValueError as exc:
        raise UserError(str(exc)) from exc


# ---- commands --------------------------------------------------------------------

@app.command()
def plan(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Variant: e2b, e4b, 26b-a4b, 31b."),
    config: Optional[str] = typer.Option(None, "--config", help="Plan any HF config.json (or a directory holding one)."),
    ctx: str = typer.Option("8k", "--ctx", "-c", help="Context per sequence: 8192, 32k, 256k."),
    gpu: str = typer.Option("rtx4090", "--gpu", "-g", help="Hardware profile (see `g4sim gpus`); NAME:N for N of them."),
    gpus: Optional[int] = typer.Option(None, "--gpus", min=1, help="Tensor parallel over this many GPUs."),
    quant: str = typer.Option("bf16", "--quant", "-q", help="Weight format: bf16, fp8, int8, int4-g128, q4_k_m, ..."),
    kv_dtype: str = typer.Option("bf16", "--kv-dtype", help="KV-cache format: bf16, fp16, fp8, q8_0, q4_0."),
    batch: int = typer.Option(1, "--batch", "-b", min=1, help="Concurrent sequences."),
    engine: str = typer.Option("transformers", "--engine", "-e", help="Allocation rules of: transformers, vllm, llamacpp, g4sim."),
    attn: str = typer.Option("sdpa", "--attn", help="transformers attention implementation: sdpa or eager."),
    prefill_chunk: int = typer.Option(4096, "--prefill-chunk", min=1, help="Prompt tokens processed per step."),
    text_only: bool = typer.Option(False, "--text-only", help="Text decoder only (default)."),
    with_vision: bool = typer.Option(False, "--with-vision", help="Also load the vision tower."),
    with_audio: bool = typer.Option(False, "--with-audio", help="Also load the audio tower."),
    allow_beyond_max: bool = typer.Option(False, "--allow-beyond-max", help="Allow contexts past the model's maximum."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (stable keys, sizes in bytes)."),
) -> None:
    """Will it fit? Memory breakdown, verdict, largest context and batch, best quantization."""
    from g4sim.plan import PlanRequest, make_plan, plan_to_dict

    spec = resolve_spec(model, config)
    if text_only and (with_vision or with_audio):
        raise UserError("--text-only cannot be combined with --with-vision / --with-audio")
    if with_vision and spec.vision is None:
        raise UserError(f"{spec.name} has no vision tower")
    if with_audio and spec.audio is None:
        raise UserError(f"{spec.name} has no audio tower (audio: e2b, e4b)")
    eng_options = {"attn_implementation": attn} if engine.strip().lower() == "transformers" else {}
    from g4sim.hardware import ProfileError, parse_gpu_spec

    try:
        device, count = parse_gpu_spec(gpu)
    except ProfileError as exc:
        raise UserError(str(exc)) from exc
    count = gpus or count
    req = PlanRequest(
        spec=spec, device=device, ctx=resolve_context(ctx, spec, allow_beyond_max), batch=batch, gpus=count,
        quant=resolve_quant(quant), kv_dtype=resolve_kv_dtype(kv_dtype), engine=resolve_engine(engine, **eng_options),
        vision=with_vision, audio=with_audio, prefill_chunk=prefill_chunk, allow_beyond_max=allow_beyond_max,
    )
    if count > 1:
        from g4sim.parallel import tp_valid

        if not tp_valid(req, count):
            raise UserError(f"{count} GPUs: {spec.name}'s {spec.text.num_heads} query heads / KV heads do not split "
                            f"{count} ways; valid tensor-parallel sizes: "
                            + ", ".join(str(n) for n in (1, 2, 4, 8, 16) if tp_valid(req, n)))
    result = make_plan(req)
    if as_json:
        typer.echo(json.dumps(plan_to_dict(result), indent=2))
    else:
        from g4sim.render import render_plan

        render_plan(result, console)


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
    from g4sim.units import format_bytes

    profiles = load_profiles()
    if as_json:
        typer.echo(json.dumps([{"name": p.name, "display_name": p.display_name, "kind": p.kind,
                                "memory_bytes": p.memory_bytes, "usable_bytes": p.usable_memory_bytes,
                                "memory_bandwidth_bytes_per_s": p.memory_bandwidth_bytes_per_s,
                                "peak_flops": p.peak_flops} for p in profiles.values()], indent=2))
        return
    table = Table(title="Hardware profiles (datasheet figures; see each YAML's sources)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("name", "device", "kind", "memory", "usable", "bandwidth", "bf16 dense", "link"):
        table.add_column(col, justify="right" if col in ("memory", "usable", "bandwidth", "bf16 dense") else "left")
    for p in sorted(profiles.values(), key=lambda p: (p.kind, p.memory_bytes)):
        table.add_row(p.name, p.display_name, p.kind, format_bytes(p.memory_bytes, digits=1),
                      format_bytes(p.usable_memory_bytes, digits=1),
                      f"{p.memory_bandwidth_bytes_per_s / 1e9:,.0f} GB/s", f"{p.flops('bf16') / 1e12:,.1f} TFLOP/s",
                      p.interconnect.name if p.interconnect else "-")
    console.print(table)


@app.command()
def generate(
    checkpoint: str = typer.Option(..., "--checkpoint", help="HF-format directory: config.json + safetensors."),
    prompt_ids: str = typer.Option(..., "--prompt-ids", help="Comma-separated token ids, e.g. 2,651,1234."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, bf16 or fp16."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Run g4sim's own Gemma 4 on a checkpoint and print the generated token ids."""
    try:
        ids = [int(x) for x in prompt_ids.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--prompt-ids {prompt_ids!r} must be comma-separated integers") from None
    if not ids:
        raise UserError("--prompt-ids is empty")
    import torch

    from g4sim.model import CheckpointError, Gemma4ForCausalLM
    from g4sim.model.generate import generate as run_generate

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if dtype not in dtypes:
        raise unknown_choice("dtype", dtype, dtypes)
    try:
        model = Gemma4ForCausalLM.from_pretrained(checkpoint, dtype=dtypes[dtype], device=device)
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    if max(ids) >= model.spec.vocab_size:
        raise UserError(f"token id {max(ids)} is outside the vocabulary (size {model.spec.vocab_size})")
    out = run_generate(model, torch.tensor([ids], device=device), max_new_tokens, temperature=temperature,
                       top_k=top_k, seed=seed)
    typer.echo(",".join(str(i) for i in out[0, len(ids):].tolist()))


@app.command()
def profile(
    model: str = typer.Option(..., "--model", "-m", help="Variant: e2b, e4b, 26b-a4b, 31b."),
    ctx: str = typer.Option("1k,4k", "--ctx", "-c", help="Comma-separated contexts, e.g. 1k,4k,16k."),
    dtype: str = typer.Option("bf16", "--dtype", help="fp32, bf16 or fp16."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    layers: Optional[int] = typer.Option(None, "--layers", min=1, help="Full-width, reduced-depth copy."),
    quant: Optional[str] = typer.Option(None, "--quant", help="Weight-only int8 or int4-g128."),
    batch: int = typer.Option(1, "--batch", min=1),
    decode_steps: int = typer.Option(16, "--decode-steps", min=0),
    chunk: Optional[int] = typer.Option(None, "--chunk", min=1, help="Prefill chunk (default: whole prompt)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Real weights instead of random ones."),
    profile_name: Optional[str] = typer.Option(None, "--device-profile",
                                               help="Hardware profile the rows belong to (default: ci-cpu-2core on CPU)."),
    store: Optional[str] = typer.Option(None, "--store", help="Measurement store directory (default reports/measurements)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
) -> None:
    """Real instrumented forward passes: measured memory and speed, appended to the measurement store."""
    from g4sim.profile import DTYPES, QUANTS, ProfileRun
    from g4sim.profile import profile as run_profile
    from g4sim.units import UnitError, parse_context_list

    spec = resolve_spec(model, None)
    try:
        contexts = tuple(parse_context_list(ctx))
    except UnitError as exc:
        raise UserError(str(exc)) from exc
    if dtype not in DTYPES:
        raise unknown_choice("dtype", dtype, DTYPES)
    if quant and quant not in QUANTS:
        raise unknown_choice("profiling weight format", quant, QUANTS)
    if layers and layers > spec.text.num_layers:
        raise UserError(f"--layers {layers} is more than {spec.name}'s {spec.text.num_layers} layers")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise unknown_choice("device", device, ("cpu", "cuda"))
    if profile_name is None:
        profile_name = "ci-cpu-2core" if device == "cpu" else "h100-sxm"
    resolve_device(profile_name)
    run = ProfileRun(model=spec.name, contexts=contexts, dtype=dtype, device=device, layers=layers, quant=quant,
                     batch=batch, decode_steps=decode_steps, chunk=chunk, checkpoint=checkpoint, store=store,
                     device_profile=profile_name, command="g4sim " + " ".join(sys.argv[1:]), threads=threads)
    for line in run_profile([run]):
        console.print(line)


@app.command()
def validate(
    store: Optional[str] = typer.Option(None, "--store", help="Measurement store directory."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Analytic prediction vs measured, per component, with % error; exit 1 beyond tolerance."""
    from pathlib import Path

    from g4sim.validate import summary
    from g4sim.validate import validate as run_validate

    checks = run_validate(Path(store) if store else None)
    if not checks:
        raise UserError(f"no measurements in {store or 'reports/measurements'}; run `g4sim profile` first")
    rows = summary(checks)
    failed = [c for c in checks if not c.ok]
    if as_json:
        typer.echo(json.dumps({"summary": rows, "checks": [
            {"config": c.config, "figure": c.figure, "predicted": c.predicted, "measured": c.measured,
             "error": c.error, "tolerance": c.tolerance, "calibration_row": c.calibration, "ok": c.ok}
            for c in checks]}, indent=2))
    else:
        from g4sim.render import render_validation

        render_validation(checks, rows, console)
    if failed:
        raise typer.Exit(1)


@app.command()
def calibrate(
    device: str = typer.Option("ci-cpu-2core", "--device-profile", help="Profile to calibrate from its measurements."),
    store: Optional[str] = typer.Option(None, "--store"),
    write: bool = typer.Option(True, "--write/--dry-run", help="Write the fitted efficiencies into the profile."),
) -> None:
    """Fit a profile's prefill / decode efficiencies from measurements (calibration variants only)."""
    from pathlib import Path

    from g4sim.calibrate import calibration_note, fit, write_back
    from g4sim.measurements import git_commit

    resolve_device(device)
    fitted = fit(Path(store) if store else None, device)
    if not fitted:
        raise UserError(f"no float-weight measurements of the calibration variants for {device}")
    for dtype, v in fitted.items():
        console.print(f"{device} {dtype}: prefill {v['prefill_compute']:.3f} of peak FLOP/s, "
                      f"decode {v['decode_bandwidth']:.3f} of bandwidth ({v['rows']} rows)")
    if write:
        path = write_back(device, fitted, calibration_note(fitted, git_commit()[0]))
        console.print(f"wrote {path}")


def _split(text: Optional[str]) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else ()


@app.command()
def sweep(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Comma-separated variants (default: all)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", "-g", help="Comma-separated profiles (default: all)."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Comma-separated formats (default: all)."),
    ctx: Optional[str] = typer.Option(None, "--ctx", "-c", help="Comma-separated contexts (default: 12 from 1k to 256k)."),
    kv_dtype: str = typer.Option("bf16", "--kv-dtype"),
    engine: str = typer.Option("transformers", "--engine", "-e"),
    batch: int = typer.Option(1, "--batch", "-b", min=1),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Write .csv, .parquet or .json (default: CSV to stdout)."),
) -> None:
    """Every model x device x format x context as one table (pandas), for notebooks and dashboards."""
    from pathlib import Path

    from g4sim.analytic import QUANT_FORMATS
    from g4sim.spec import VARIANTS
    from g4sim.sweep import DEFAULT_CONTEXTS, FORMATS, SweepAxes, write_table
    from g4sim.sweep import sweep as run_sweep
    from g4sim.units import UnitError, parse_context_list

    models = tuple(resolve_spec(m, None).name for m in _split(model)) or tuple(VARIANTS)
    devices = tuple(resolve_device(g).name for g in _split(gpu))
    quants = tuple(resolve_quant(q) for q in _split(quant)) or tuple(QUANT_FORMATS)
    try:
        contexts = tuple(parse_context_list(ctx)) if ctx else DEFAULT_CONTEXTS
    except UnitError as exc:
        raise UserError(str(exc)) from exc
    resolve_engine(engine)
    if out and Path(out).suffix.lower() not in FORMATS:
        raise UserError(f"--out {out!r}: unknown table format; valid suffixes: {', '.join(sorted(FORMATS))}")
    frame = run_sweep(SweepAxes(models=models, devices=devices, quants=quants, contexts=contexts,
                                kv_dtype=resolve_kv_dtype(kv_dtype), engine=engine, batch=batch))
    if out:
        path = write_table(frame, Path(out))
        console.print(f"wrote {len(frame):,} rows to {path}")
    else:
        typer.echo(frame.to_csv(index=False), nl=False)


@app.command()
def check(
    baseline: str = typer.Option("reports/baseline.json", "--baseline", help="Committed baseline file."),
    update: bool = typer.Option(False, "--update", help="Rewrite the baseline with the current figures."),
    junit: Optional[str] = typer.Option(None, "--junit", help="Also write JUnit XML here."),
    store: Optional[str] = typer.Option(None, "--store", help="Measurement store (default reports/measurements)."),
) -> None:
    """CI memory-regression check: exit 1 when a figure grows beyond its tolerance."""
    import os
    from pathlib import Path

    from g4sim.check import current, diff, github_annotations, junit_xml, write_baseline

    path = Path(baseline)
    now = current(Path(store) if store else None)
    if update:
        write_baseline(path, now)
        console.print(f"wrote {path} ({len(now)} configurations)")
        return
    if not path.is_file():
        raise UserError(f"baseline {baseline} does not exist; create it with `g4sim check --update --baseline {baseline}`")
    try:
        data = json.loads(path.read_text())
        diffs = diff(data, now)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"baseline {baseline} is malformed ({exc.__class__.__name__}: {exc})") from exc
    from g4sim.render import render_check

    render_check(diffs, console)
    if junit:
        Path(junit).write_text(junit_xml(diffs))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in github_annotations(diffs, path):
            typer.echo(line)
    if any(d.verdict == "regression" for d in diffs):
        raise typer.Exit(1)


@app.command()
def report(
    scenario: Optional[str] = typer.Option(None, "--scenario", "-s", help="A scenario name (scenarios/*.yaml) or file."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Comma-separated variants."),
    gpu: Optional[str] = typer.Option(None, "--gpu", "-g", help="Comma-separated hardware profiles."),
    quant: str = typer.Option("bf16,q8_0,q4_k_m", "--quant", "-q", help="Comma-separated weight formats."),
    ctx: str = typer.Option("32k", "--ctx", "-c", help="Context for the verdicts and the fit matrix."),
    batch: int = typer.Option(1, "--batch", "-b", min=1),
    engine: str = typer.Option("transformers", "--engine", "-e"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="HTML file (default reports/<name>.html)."),
) -> None:
    """A self-contained HTML capacity report (opens offline) for a scenario or a model on devices."""
    from pathlib import Path

    from g4sim.report import ReportRequest, write_report

    if scenario:
        from g4sim.scenarios import ScenarioError, get_scenario

        try:
            sc = get_scenario(scenario)
        except ScenarioError as exc:
            raise UserError(str(exc)) from exc
        specs = tuple(resolve_spec(m, None) for m in sc.models)
        tokens = sc.sequence_tokens
        req = ReportRequest(
            title=f"Gemma 4 capacity report: {sc.name}", models=specs, devices=tuple(resolve_device(d) for d in sc.devices),
            quants=tuple(resolve_quant(q) for q in sc.quants), ctx=tokens, batch=sc.concurrency, kv_dtype=sc.kv_dtype,
            engine=sc.engine, description=sc.description,
            notes=(f"scenario {sc.name}: {sc.context_tokens:,} prompt + {sc.multimodal_tokens:,} image/audio + "
                   f"{sc.output_tokens:,} output tokens per sequence, {sc.concurrency} concurrent",))
        name = sc.name
    else:
        if not model or not gpu:
            raise UserError("give --scenario NAME, or --model and --gpu (comma-separated lists)")
        specs = tuple(resolve_spec(m, None) for m in _split(model))
        devices = tuple(resolve_device(g) for g in _split(gpu))
        req = ReportRequest(
            title=f"Gemma 4 capacity report: {', '.join(s.name for s in specs)}", models=specs, devices=devices,
            quants=tuple(resolve_quant(q) for q in _split(quant)), ctx=resolve_context(ctx, specs[0], True),
            batch=batch, engine=resolve_engine(engine).name,
            description=f"{', '.join(s.name for s in specs)} on {', '.join(d.name for d in devices)}")
        name = "-".join(s.name for s in specs) + "_" + "-".join(d.name for d in devices)
    resolve_engine(req.engine)
    path = write_report(req, Path(out) if out else Path("reports") / f"{name}.html")
    console.print(f"wrote {path}")


@app.command(name="capacity")
def capacity_command(
    scenario: str = typer.Option(..., "--scenario", "-s", help="A scenario name (scenarios/*.yaml) or file."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Serving capacity of a scenario: concurrency that fits, aggregate decode speed, the knee."""
    from g4sim.plan import PlanRequest
    from g4sim.scenarios import ScenarioError, get_scenario
    from g4sim.serving import longest_sequence, scenario_capacity

    try:
        sc = get_scenario(scenario)
    except ScenarioError as exc:
        raise UserError(str(exc)) from exc
    rows = []
    for model in sc.models:
        spec = resolve_spec(model, None)
        for device in sc.devices:
            for quant in sc.quants:
                req = PlanRequest(spec=spec, device=resolve_device(device), ctx=min(sc.sequence_tokens, spec.max_context),
                                  quant=resolve_quant(quant), kv_dtype=sc.kv_dtype, engine=resolve_engine(sc.engine))
                cap = scenario_capacity(req, sc)
                rows.append({"model": model, "device": device, "quant": quant, **cap.to_dict()})
    if as_json:
        typer.echo(json.dumps({"scenario": sc.name, "engine": sc.engine, "rows": rows}, indent=2))
        return
    table = Table(title=f"{sc.name}: up to {longest_sequence(sc):,} tokens per sequence, {sc.concurrency} concurrent "
                        f"({sc.engine}; memory computed, speed predicted)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "device", "quant", "max conc.", "fits", "knee", "agg. decode tok/s", "req/s"):
        table.add_column(col, justify="left" if col in ("model", "device", "quant", "fits") else "right")
    for r in rows:
        at = [p for p in r["points"] if p["batch"] == min(r["asked_concurrency"], r["max_concurrency"])]
        table.add_row(r["model"], r["device"], r["quant"], str(r["max_concurrency"]),
                      "yes" if r["fits_asked"] else "no", f"{r['knee_batch']} ({r['knee_reason']})" if r["max_concurrency"] else "-",
                      f"{at[0]['decode_tokens_per_s']:,.0f}" if at else "-",
                      f"{r['requests_per_s_at_asked']:,.2f}" if r["fits_asked"] else "-")
    console.print(table)


# ---- entry point -----------------------------------------------------------------

def _click_exception_types() -> dict[str, tuple[type, ...]]:
    """Usage-error classes of whichever click typer uses (typer >= 0.26 vendors its own copy)."""
    modules = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            modules.append(__import__(name, fromlist=["UsageError"]))
        except ImportError:
            pass
    return {kind: tuple(getattr(m, kind) for m in modules if hasattr(m, kind))
            for kind in ("NoArgsIsHelpError", "UsageError", "Abort", "Exit")}


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every user error becomes one ``error:`` line on stderr and exit code 2."""
    exc_types = _click_exception_types()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="g4sim")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except exc_types["NoArgsIsHelpError"]:
        sys.exit(0)
    except exc_types["UsageError"] as exc:
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(2)
    except exc_types["Abort"]:
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    except exc_types["Exit"] as exc:
        sys.exit(exc.exit_code)
    sys.exit(result if isinstance(result, int) else 0)
