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
    resolve_device(profile_name)
    run = ProfileRun(model=spec.name, contexts=contexts, dtype=dtype, device=device, layers=layers, quant=quant,
                     batch=batch, decode_steps=decode_steps, chunk=chunk, checkpoint=checkpoint, store=store,
                     device_profile=profile_name, command="g4sim " + " ".join(sys.argv[1:]), threads=threads,
                     impl=impl)
    for line in run_profile([run]):
        console.print(line)


@app.command()
def validate(
    store: Optional[str] = typer.Option(None, "--store", help="Measurement store directory."),
    as_json: bool = typer.Option(False, "--json"),
    report: Optional[str] = typer.Option(None, "--report", help="Also write the validation report (HTML) here."),
) -> None:
    """Analytic prediction vs measured, per component, with % error; exit 1 beyond tolerance."""
    from pathlib import Path

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
) -> None:
    """Fit a profile's prefill / decode efficiencies from measurements (calibration variants only)."""
    from pathlib import Path

    from g4sim.measure.calibrate import calibration_note, fit, write_back
    from g4sim.measure.measurements import git_commit

    resolve_device(device)
    fitted = fit(Path(store) if store else None, device)
    if not fitted:
        raise UserError(f"no float-weight measurements of the calibration variants for {device}")
    for dtype, v in fitted.items():
        console.print(f"{device} {dtype}: prefill {v['prefill_compute']:.3f} of peak FLOP/s, "
                      f"decode {v['decode_bandwidth']:.3f} of bandwidth ({v['rows']} rows)")
    if not write:
        from g4sim.cli.app import err

        err.print("dry run: nothing written (add --write to store these in the profile)")
    if write:
        path = write_back(device, fitted, calibration_note(fitted, git_commit()[0]))
        from g4sim.cli.app import err

        err.print(f"wrote {path}")
