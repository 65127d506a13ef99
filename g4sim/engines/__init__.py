"""Serving engines: each one's allocation rules for weights, KV cache, workspaces and overhead."""

from __future__ import annotations

from dataclasses import fields

from g4sim.engines.base import Engine
from g4sim.engines.transformers import G4simEngine, TransformersEngine

ENGINES: dict[str, type[Engine]] = {
    TransformersEngine.name: TransformersEngine,
    G4simEngine.name: G4simEngine,
}


def _register_optional() -> None:
    # Engines contributed in their own modules; absent ones are simply not offered.
    import importlib

    for module, cls in (("g4sim.engines.vllm", "VllmEngine"), ("g4sim.engines.llamacpp", "LlamaCppEngine")):
        try:
            engine = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            continue
        ENGINES[engine.name] = engine


_register_optional()


class UnknownEngineError(KeyError):
    pass


def get_engine(name: str, **options) -> Engine:
    """An engine by name with its options (unknown names and options raise with the valid choices)."""
    key = name.strip().lower().replace("llama.cpp", "llamacpp").replace("hf", "transformers")
    if key not in ENGINES:
        raise UnknownEngineError(name)
    cls = ENGINES[key]
    valid = {f.name for f in fields(cls)}
    bad = sorted(set(options) - valid)
    if bad:
        raise ValueError(f"engine {key!r} has no option {bad[0]!r}; valid: {', '.join(sorted(valid))}")
    return cls(**options)


__all__ = ["ENGINES", "Engine", "get_engine", "UnknownEngineError"]
