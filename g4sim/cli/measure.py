"""``g4sim generate``, ``profile``, ``validate``, ``calibrate``: g4sim's own model, run and measured (torch, lazily)."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from g4sim.cli.app import app, out as console
from g4sim.cli.resolve import output_path, resolve_device, resolve_spec, resolve_torch_device
from g4sim.errors import UserError, unknown_choice

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
    device = resolve_torch_device(device)
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
    quant: Optional[str] = typer.Option(None, "--quant", help="Weight-only int8 or int4-g128 (g4sim); a GGUF "
                                        "format with --impl llamacpp."),
    batch: int = typer.Option(1, "--batch", min=1),
    decode_steps: int = typer.Option(16, "--decode-steps", min=0),
    chunk: Optional[int] = typer.Option(None, "--chunk", min=1, help="Prefill chunk (default: whole prompt)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Real weights instead of random ones."),
    profile_name: Optional[str] = typer.Option(None, "--device-profile",
                                               help="Hardware profile the rows belong to (default: ci-cpu-2core on CPU)."),
    store: Optional[str] = typer.Option(None, "--store", help="Measurement store directory (default reports/measurements)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    impl: str = typer.Option("g4sim", "--impl", help="What runs the passes: g4sim, transformers-sdpa, "
                             "transformers-eager, llamacpp (llama-cpp-python on a GGUF of the model; --quant "
                             "picks its format: fp16, q8_0, q4_k_m, ...)."),
    components: bool = typer.Option(False, "--components", help="Also time and peak-measure each model component "
                                    "(attention, mlp, experts, ...) in extra instrumented passes (g4sim only)."),
) -> None:
    """Real instrumented forward passes: measured memory and speed, appended to the measurement store."""
    from g4sim.measure.profile import DTYPES, IMPLS, QUANTS, ProfileRun
    from g4sim.measure.profile import profile as run_profile
    from g4sim.units import UnitError, parse_context_list

    spec = resolve_spec(model, None)
    try:
        contexts = tuple(parse_context_list(ctx))
    except UnitError as exc:
        raise UserError(str(exc)) from exc
    if dtype not in DTYPES:
        raise unknown_choice("dtype", dtype, DTYPES)
    if impl not in IMPLS:
        raise unknown_choice("implementation", impl, IMPLS)
    if impl == "llamacpp":  # a GGUF in any format llama.cpp's quantizer writes; its source weights are F16
        from g4sim.measure.llamacpp import FTYPES

        quant = quant or "fp16"
        if quant not in FTYPES:
            raise unknown_choice("GGUF format", quant, tuple(FTYPES))
        if batch != 1:
            raise UserError(f"--batch {batch}: --impl llamacpp measures one sequence (batch 1)")
        dtype = "fp16"
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            raise UserError("--impl llamacpp needs llama-cpp-python 0.3.36 (native and AMX off): "
                            "python scripts/llamacpp_quantize_check.py --install")
        if device != "cpu":
            raise UserError(f"--device {device}: --impl llamacpp measures llama.cpp's CPU build (--device cpu)")
    elif quant and quant not in QUANTS:
        raise unknown_choice("profiling weight format", quant, QUANTS)
    if quant and impl.startswith("transformers-"):
        raise UserError(f"--quant {quant} is g4sim's own weight-only format; --impl {impl} runs {dtype} weights")
    if components and impl != "g4sim":
        raise UserError(f"--components tags g4sim's own model; --impl {impl} runs another implementation")
    if layers and layers > spec.text.num_layers:
        raise UserError(f"--layers {layers} is more than {spec.name}'s {spec.text.num_layers} layers")
    device = resolve_torch_device(device)
    if profile_name is None:
        if device != "cpu":  # which GPU this is, g4sim does not guess: a row filed under another device is not data
            raise UserError(f"--device {device}: name the GPU's hardware profile with --device-profile (see `g4sim gpus`)")
        import os

        from g4sim.measure.measurements import cpu_model

        if os.cpu_count() != 2:  # ci-cpu-2core is the project's 2-core machine, not this one
            raise UserError(f"this CPU ({cpu_model()}, {os.cpu_count()} cores) is not the 2-core ci-cpu-2core profile; "
                            "name its hardware profile with --device-profile (see `g4sim gpus`)")
        profile_name = "ci-cpu-2core"
    profile_ = resolve_device(profile_name)
    if device == "cpu" and profile_.cpu_model:
        from g4sim.measure.measurements import cpu_model

        if cpu_model() != profile_.cpu_model:  # a row filed under another machine's profile is not data
            raise UserError(f"this CPU ({cpu_model()}) is not {profile_name}'s ({profile_.cpu_model}); name this "
                            "machine's own hardware profile with --device-profile (see `g4sim gpus`)")
    run = ProfileRun(model=spec.name, contexts=contexts, dtype=dtype, device=device, layers=layers, quant=quant,
                     batch=batch, decode_steps=decode_steps, chunk=chunk, checkpoint=checkpoint, store=store,
                     device_profile=profile_name, command="g4sim " + " ".join(sys.argv[1:]), threads=threads,
                     impl=impl, components=components)
    for line in run_profile([run]):
        console.print(line)


@app.command()
def validate(
    store: Optional[str] = typer.Option(None, "--store", help="Measurement store directory."),
    as_json: bool = typer.Option(False, "--json"),
    report: Optional[str] = typer.Option(None, "--report", help="Also write the validation report (HTML) here."),
    speed: bool = typer.Option(False, "--speed", help="Instead: the shipped speed terms against the engines' "
                               "measured rows (llama.cpp's, LiteRT-LM's), in-sample and held-out errors per engine "
                               "and backend class."),
    published: bool = typer.Option(False, "--published", help="Instead: the shipped speed terms against the "
                                   "published runs (with --speed: both)."),
) -> None:
    """Analytic prediction vs measured, per component, with % error; exit 1 beyond tolerance."""
    from pathlib import Path

    if speed or published:
        _validate_speed("llamacpp,litert-lm" if speed else None, published, Path(store) if store else None, as_json)
        return

    from g4sim.measure.validate import summary
    from g4sim.measure.validate import validate as run_validate

    report_path = output_path(report, "--report", (".html", ".htm")) if report else None
    checks = run_validate(Path(store) if store else None)
    if not checks:
        raise UserError(f"no measurements in {store or 'reports/measurements'}; run `g4sim profile` first")
    rows = summary(checks)
    failed = [c for c in checks if not c.ok]
    if report:
        from g4sim.cli.app import err
        from g4sim.outputs.report import validation_html, write_html

        err.print(f"wrote {write_html(validation_html(checks, rows), report_path)}")
    if as_json:
        typer.echo(json.dumps({"summary": rows, "checks": [
            {"config": c.config, "figure": c.figure, "predicted": c.predicted, "measured": c.measured,
             "error": c.error, "tolerance": c.tolerance, "split": c.split,
             "calibration_row": c.calibration, "ok": c.ok}
            for c in checks]}, indent=2))
    else:
        from g4sim.outputs.render import render_validation

        render_validation(checks, rows, console)
    if failed:
        raise typer.Exit(1)


@app.command()
def calibrate(
    device: str = typer.Option("ci-cpu-2core", "--device-profile", help="Profile to calibrate from its measurements."),
    store: Optional[str] = typer.Option(None, "--store"),
    write: bool = typer.Option(False, "--write/--dry-run", help="Write the fitted efficiencies into the profile "
                               "(default: print them only)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="Fit these engines' speed terms per backend class "
                                         "from their measured rows (`g4sim profile --impl llamacpp`; transformers: "
                                         "both attention implementations; litert-lm: scripts/litert/measure.sh), "
                                         "comma-separated, instead."),
    published: bool = typer.Option(False, "--published", help="Fit speed terms per engine and backend class from "
                                   "the published runs (reports/published/runs.csv) instead (with --engine: both)."),
) -> None:
    """Fit a profile's prefill / decode efficiencies from measurements (calibration variants only)."""
    from pathlib import Path

    from g4sim.measure.calibrate import calibration_note, fit, heldout_bands, write_back, write_bands
    from g4sim.measure.measurements import git_commit

    if engine is not None or published:
        _calibrate_speed(engine, published, Path(store) if store else None, write)
        return
    resolve_device(device)
    fitted = fit(Path(store) if store else None, device)
    if not fitted:
        raise UserError(f"no g4sim measurements of the calibration variants for {device}")
    for dtype, v in fitted.items():
        console.print(f"{device} {dtype}: prefill {v['prefill_compute']:.3f} of peak FLOP/s, "
                      f"decode {v['decode_bandwidth']:.3f} of bandwidth ({v['rows']} rows)")
    if not write:
        from g4sim.cli.app import err

        err.print("dry run: nothing written (add --write to store these in the profile)")
    if write:
        from g4sim.cli.app import err

        note = calibration_note(fitted, git_commit()[0])
        write_back(device, fitted, note)
        bands = heldout_bands(Path(store) if store else None, device)  # through the profile just written
        for phase, b in bands.items():
            console.print(f"{device} held-out {phase}: median {b['median']}, p90 {b['p90']}, n={b['n']} "
                          "(|error| of tokens/s, g4sim's held-out rows)")
        err.print(f"wrote {write_bands(device, bands, note + '; bands: held-out |error| of tokens/s of g4sim rows')}")


def _speed_runs(engine: str | None, published: bool, store):
    """Runs from the measured rows of ``engine`` and / or the published dataset, with the published rows left out."""
    from g4sim.measure import speedfit
    from g4sim.measure.profile import ENGINE_IMPLS, impls_of

    runs, skipped = [], []
    for name in (engine.split(",") if engine else []):  # several: --engine llamacpp,litert-lm
        name = name.strip()
        if name in speedfit.MEASURED_RUNS:  # timed outside `g4sim profile` (its own script and data)
            runs += speedfit.MEASURED_RUNS[name]()
            continue
        if not impls_of(name):
            raise unknown_choice("measured engine", name, sorted({i.split("-")[0] for i in ENGINE_IMPLS} |
                                                                  set(ENGINE_IMPLS) | set(speedfit.MEASURED_RUNS)))
        for impl in impls_of(name):  # an engine's name takes every way it was measured (transformers: sdpa, eager)
            runs += speedfit.store_runs(store, impl)
    if published:
        more, skipped = speedfit.published_runs()
        runs += more
    return runs, skipped


def _calibrate_speed(engine: str | None, published: bool, store, write: bool) -> None:
    """Speed terms per engine and backend class, fitted on the calibration rows; errors printed per split."""
    from g4sim.cli.app import err
    from g4sim.measure import speedfit
    from g4sim.measure.measurements import git_commit
    from g4sim.measure.split import SPLIT_VERSION
    from g4sim.outputs.render import render_speed_fit

    runs, skipped = _speed_runs(engine, published, store)
    if not any(r.row.split == "calibration" for r in runs):
        raise UserError(f"no calibration rows of {engine or 'any engine'} in "
                        f"{'the published runs' if published else store or 'reports/measurements'}; "
                        "measure it first (scripts/profile_llamacpp.sh, scripts/profile_engines.sh)")
    sources = ([f"{engine}'s measured rows (split v{SPLIT_VERSION}, g4sim/measure/split.py)"] if engine else []) + \
        (["the published runs (reports/published, split frozen there)"] if published else [])
    note = f"fitted by `g4sim calibrate` at g4sim {git_commit()[0]} on the calibration rows of {' and '.join(sources)}"
    entries, scored = speedfit.calibrate(runs, note)
    render_speed_fit(entries, scored, console)
    if skipped:
        err.print(f"{len(skipped)} published rows left out (no engine, device profile or format g4sim models); "
                  "`g4sim validate --published --json` lists them")
    if write:
        err.print(f"wrote {speedfit.write_classes(entries)}")
    else:
        err.print("dry run: nothing written (add --write to store these terms)")


def _validate_speed(engine: str | None, published: bool, store, as_json: bool) -> None:
    """Shipped speed terms (speed_classes.yaml) against measured and / or published runs, through ``predict``."""
    from g4sim.measure import speedfit

    runs, skipped = _speed_runs(engine, published, store)
    scored, bands = speedfit.validate_shipped(runs)
    if not scored:
        raise UserError("no runs of a class with fitted speed terms; run scripts/profile_llamacpp.sh and "
                        "`g4sim calibrate --engine llamacpp --published --write`")
    uncovered = sorted({r.key for r in runs} - set(bands))
    if as_json:
        typer.echo(json.dumps({"bands": bands, "runs": scored, "classes_without_terms": uncovered,
                               "left_out": [{"id": i, "why": why} for i, why in skipped]}, indent=2))
        return
    from g4sim.outputs.render import render_speed_bands, render_speed_rows

    render_speed_rows(scored, console, "Speed: predicted (shipped terms) vs measured / published")
    render_speed_bands(bands, console, "Error of tokens/s per engine and backend class: in-sample (calibration rows) "
                                       "and held-out (frozen splits) apart")
    if uncovered or skipped:
        console.print(f"classes without fitted terms: {', '.join(uncovered) or 'none'}; published rows left out: "
                      f"{len(skipped)} (--json lists each with why)")
