"""The engine registry: every engine g4sim models, by name, and the one rule that picks one.

The registry is explicit: an engine module that fails to import fails g4sim, loudly.  Adding an
engine is one module (a subclass of ``Engine``) plus one line here plus its test.
"""

from __future__ import annotations

from g4sim.analytic.memory import MemoryBreakdown
from g4sim.engines.base import Caps, Engine, EngineError, Option, Parallel, Parsed, Workload
from g4sim.engines.litertlm import LiteRtLmEngine
from g4sim.engines.llamacpp import LlamaCppEngine
from g4sim.engines.mlx import MlxEngine
from g4sim.engines.native import G4simEngine
from g4sim.engines.ollama import OllamaEngine
from g4sim.engines.transformers import TransformersEngine
from g4sim.engines.vllm import VllmEngine
from g4sim.spec import ModelSpec

ENGINES: dict[str, type[Engine]] = {cls.name: cls for cls in (LlamaCppEngine, VllmEngine, TransformersEngine,
                                                                G4simEngine, OllamaEngine, MlxEngine, LiteRtLmEngine)}
ALIASES = {"llama.cpp": "llamacpp", "llama-cpp": "llamacpp", "llama_cpp": "llamacpp", "llama-server": "llamacpp",
           "hf": "transformers", "litert": "litert-lm", "litertlm": "litert-lm", "litert_lm": "litert-lm"}


class UnknownEngineError(KeyError):
    pass


def engine_class(name: str) -> type[Engine]:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in ENGINES:
        raise UnknownEngineError(name)
    return ENGINES[key]


def get_engine(name: str, **settings) -> Engine:
    """An engine by name with its settings (unknown names and settings raise, naming the valid ones)."""
    return engine_class(name)().with_settings(settings) if settings else engine_class(name)()


def engine_for_command(text: str) -> type[Engine]:
    """The engine whose users run ``text`` (a llama-server, vllm serve, litert-lm, transformers or g4sim command)."""
    for cls in ENGINES.values():
        if cls.recognises(text):
            return cls
    names = sorted({n for cls in ENGINES.values() for n in cls.command_names})
    raise EngineError(f"cannot tell which engine runs {text.split()[0] if text.split() else text!r}; "
                      f"g4sim reads: {', '.join(names)} command lines and transformers from_pretrained(...) snippets")


def estimate_memory(spec: ModelSpec, *, ctx: int, batch: int = 1, quant: str = "bf16", kv_dtype: str = "bf16",
                    engine: str | Engine = "transformers", vision: bool = False, audio: bool = False,
                    device_kind: str = "gpu", prefill_chunk: int | None = None) -> MemoryBreakdown:
    """Peak memory of serving ``batch`` sequences of ``ctx`` tokens on one device under ``engine``'s rules.

    ``prefill_chunk`` sets the engine's prompt chunk where the engine has that setting.
    """
    eng = get_engine(engine) if isinstance(engine, str) else engine
    if prefill_chunk is not None and "prefill_chunk" in {o.field for o in eng.options}:
        eng = eng.with_settings({"prefill_chunk": prefill_chunk})
    w = Workload(spec, ctx, batch, quant, kv_dtype, vision, audio)
    return eng.bind(w).memory(w, device_kind)


__all__ = ["ENGINES", "Caps", "Engine", "EngineError", "Option", "Parallel", "Parsed", "UnknownEngineError",
           "Workload", "engine_class", "engine_for_command", "estimate_memory", "get_engine"]
