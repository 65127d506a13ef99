"""Turning option strings into pipeline objects; every failure is a ``UserError`` naming the valid choices."""

from __future__ import annotations

from g4sim.errors import UserError, unknown_choice


def resolve_spec(model: str | None, config: str | None):
    from g4sim.spec import VARIANTS, SpecError, get_variant, load_config

    if config and model:
        raise UserError("give --model or --config, not both (--config plans the config.json's own architecture)")
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
    from g4sim.plan.search import BEYOND_MAX_CAP

    if ctx > BEYOND_MAX_CAP:
        raise UserError(f"context {text} ({ctx:,} tokens) is beyond {BEYOND_MAX_CAP:,} tokens, the most g4sim plans")
    if ctx > spec.max_context and not allow_beyond_max:
        raise UserError(f"context {text} ({ctx:,} tokens) is beyond {spec.name}'s maximum of "
                        f"{format_context(spec.max_context)} ({spec.max_context:,}); pass --allow-beyond-max to plan it anyway")
    return ctx


def resolve_device(name: str):
    """A hardware profile by name, or from a profile file the user brings (a path: ./my-device.yaml)."""
    from g4sim.hardware import ProfileError, get_profile

    try:
        return get_profile(name)
    except ProfileError as exc:
        raise UserError(str(exc)) from exc


def user_device(device) -> dict | None:
    """Where a device from a user's file (--gpu FILE, G4SIM_HARDWARE_DIR) comes from, and which of its figures are
    assumed for want of provenance; None for a shipped profile."""
    if not device.user_file:
        return None
    assumed = list(device.uncited)
    return {"path": device.path, "name": device.name, "assumed_without_provenance": assumed,
            "note": f"device {device.name} from user file {device.path}"
                    + (f" ({len(assumed)} figures without provenance, taken as assumed)" if assumed else "")}


def resolve_gpu(text: str, gpus: int | None):
    """--gpu NAME[:N] or FILE[:N] (a profile file the user brings) and --gpus N -> (profile, count); a conflict
    between the two is an error."""
    from g4sim.hardware import ProfileError, parse_gpu_spec

    try:
        device, count = parse_gpu_spec(text)
    except ProfileError as exc:
        raise UserError(str(exc)) from exc
    if gpus is not None and ":" in text and gpus != count:
        raise UserError(f"--gpu {text} says {count} GPUs but --gpus says {gpus}; give one of them")
    return device, gpus or count


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


def resolve_engine_name(name: str) -> str | None:
    """An engine name, or None for ``auto``."""
    from g4sim.engines import ENGINES, UnknownEngineError, engine_class

    if name.strip().lower() == "auto":
        return None
    try:
        return engine_class(name).name
    except UnknownEngineError:
        raise unknown_choice("engine", name, [*ENGINES, "auto"]) from None


def resolve_margin(text: str):
    from g4sim.evaluation import parse_margin

    try:
        return parse_margin(text)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def split_list(text: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip()) if text else ()


def resolve_torch_device(text: str) -> str:
    """cpu, cuda or cuda:N — and only a device that is there (checked before any work starts)."""
    import re

    if text == "cpu":
        return text
    if text != "cuda" and not re.fullmatch(r"cuda:\d+", text):
        raise unknown_choice("device", text, ("cpu", "cuda", "cuda:N"))
    import torch

    if not torch.cuda.is_available():
        raise UserError(f"--device {text}: this machine has no CUDA device (torch {torch.__version__}); valid here: cpu")
    index = int(text.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {text}: there are {torch.cuda.device_count()} CUDA devices (cuda:0.."
                        f"cuda:{torch.cuda.device_count() - 1})")
    return text


def output_path(text: str, option: str, suffixes: tuple[str, ...]) -> "Path":
    """A file g4sim may write: the suffix it promises, and a folder it can write in — checked before work."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(text)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {text!r}: give a file ending in {', '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"{option} {text!r} is a folder; give a file name")
    folder = path.parent
    while not folder.exists():  # the nearest folder that exists is where the missing ones will be made
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"{option} {text!r}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".g4sim-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{option} {text!r}: cannot write in {folder} ({exc.strerror or exc.__class__.__name__})") from None
    return path
