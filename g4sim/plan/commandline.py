"""``--from "ENGINE COMMAND"``: the command a user already runs, read back into a request.

The engine that runs the command parses it (``Engine.parse_command``); this module only merges
what the command fixes (model, format, context, slots, GPUs, engine settings) with what the user
gave as plain options, refusing contradictions.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass

from g4sim.engines import Engine, EngineError, Parsed, Workload, engine_for_command
from g4sim.evaluation import Margin, Request
from g4sim.spec import ModelSpec


@dataclass(frozen=True)
class FromCommand:
    parsed: Parsed
    engine_name: str


def read_command(text: str) -> FromCommand:
    """Which engine runs ``text`` and what it says (EngineError names what is wrong)."""
    cls = engine_for_command(text)
    return FromCommand(cls.parse_command(text), cls.name)


def request_from_command(text: str, spec: ModelSpec | None, device, *, gpus: int = 1, margin: Margin = Margin(),
                         display_attached: bool = True, default_ctx: int = 8192) -> Request:
    """The request a command describes; ``spec`` is needed only when the file name does not say the model."""
    from g4sim.spec import get_variant

    cmd = read_command(text)
    p = cmd.parsed
    if spec is None:
        if p.model is None:
            raise EngineError("the command does not say which Gemma 4 variant it runs; add --model")
        spec = get_variant(p.model)
    elif p.model is not None and p.model != spec.name:
        raise EngineError(f"the command runs {p.model}, but --model says {spec.name}")
    w = Workload(spec, p.ctx or default_ctx, p.batch or 1, p.quant or "bf16", p.kv_dtype or "bf16",
                 vision=bool(p.vision))
    engine: Engine = p.engine
    return Request(w, device, engine, p.gpus or gpus, margin, display_attached)


__all__ = ["FromCommand", "read_command", "request_from_command"]
