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


def resolve_gpu(text: str, gpus: int | None):
    """--gpu NAME[:N] and --gpus N -> (profile, count); a conflict between the two is an error."""
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
