"""Workload scenarios: one YAML per workload in ``scenarios/``, validated on load.

A scenario names the models, devices, weight formats and engine to compare, and the workload:
context per request, output length, concurrency, and optionally a request mix, images (soft tokens
per image: one of 70, 140, 280, 560, 1120 — transformers ``image_processing_gemma4.py``
``_SUPPORTED_SOFT_TOKENS``), audio seconds (about 25 tokens per second: 16 kHz audio, 20 ms mel frames
every 10 ms, then two stride-2 convolutions, capped at 750 per clip — ``Gemma4Processor.
_compute_audio_num_tokens`` in transformers ``processing_gemma4.py``), or an agent loop whose context
grows over turns.  No torch import.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
AUDIO_TOKENS_PER_SECOND = 25
AUDIO_TOKENS_MAX = 750
SOFT_TOKENS_RANGE = (70, 1120)
SOFT_TOKEN_BUDGETS = (70, 140, 280, 560, 1120)  # image_processing_gemma4.py _SUPPORTED_SOFT_TOKENS
AUDIO_SAMPLING_RATE = 16_000  # feature_extraction_gemma4.py defaults: 16 kHz, 20 ms frames, 10 ms hop
AUDIO_FRAME_SAMPLES = 320
AUDIO_HOP_SAMPLES = 160


def audio_tokens(seconds: float) -> int:
    """Audio soft tokens for one clip, with the arithmetic of transformers' Gemma4Processor.

    Mel frames with semicausal padding of frame_length // 2, then two stride-2 kernel-3 padding-1
    convolutions (the SSCP subsampling), capped at 750: 30 s -> 750, 10 s -> 250.
    """
    samples = round(seconds * AUDIO_SAMPLING_RATE)
    frames = (samples + AUDIO_FRAME_SAMPLES // 2 - (AUDIO_FRAME_SAMPLES + 1)) // AUDIO_HOP_SAMPLES + 1
    if frames <= 0:
        return 0
    for _ in range(2):
        frames = (frames + 2 * 1 - 3) // 2 + 1
    return min(frames, AUDIO_TOKENS_MAX)


class ScenarioError(ValueError):
    """A malformed scenario file (names the file and the field) or an unknown scenario name."""


@dataclass(frozen=True)
class RequestClass:
    share: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    models: tuple[str, ...]
    devices: tuple[str, ...]
    quants: tuple[str, ...]
    context_tokens: int
    output_tokens: int
    concurrency: int
    engine: str
    kv_dtype: str = "bf16"
    request_mix: tuple[RequestClass, ...] = ()
    images_per_request: int = 0
    soft_tokens_per_image: int = 0
    audio_seconds_per_request: float = 0.0
    turns: int = 0
    start_context_tokens: int = 0

    @property
    def multimodal_tokens(self) -> int:
        audio = audio_tokens(self.audio_seconds_per_request) if self.audio_seconds_per_request else 0
        return self.images_per_request * self.soft_tokens_per_image + audio

    @property
    def sequence_tokens(self) -> int:
        """Tokens one sequence holds at its longest: prompt, soft tokens and the generated output."""
        return self.context_tokens + self.multimodal_tokens + self.output_tokens


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "description": str, "models": list, "devices": list, "quants": list, "context_tokens": int,
    "output_tokens": int, "concurrency": int, "engine": str, "kv_dtype": str, "request_mix": list,
    "images_per_request": int, "soft_tokens_per_image": int, "audio_seconds_per_request": (int, float),
    "turns": int, "start_context_tokens": int,
}
_REQUIRED = ("name", "description", "models", "devices", "quants", "context_tokens", "output_tokens", "concurrency",
             "engine")


def _fail(path: Path, field: str, why: str) -> ScenarioError:
    return ScenarioError(f"{path.name}: field '{field}' {why}")


def _choice(path: Path, field: str, value: str, valid) -> None:
    if value not in valid:
        close = difflib.get_close_matches(str(value), list(valid), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(path, field, f"has unknown value {value!r}{hint}; valid: {', '.join(sorted(valid))}")


def parse_scenario(data: Any, path: Path) -> Scenario:
    from g4sim.analytic import KV_DTYPES, get_quant
    from g4sim.engines import ENGINES
    from g4sim.hardware import load_profiles
    from g4sim.spec import VARIANTS

    if not isinstance(data, dict):
        raise ScenarioError(f"{path.name}: expected a mapping of fields")
    for key in _REQUIRED:
        if key not in data:
            raise _fail(path, key, "is missing")
    for key, value in data.items():
        if key not in _FIELDS:
            raise _fail(path, key, f"is not a scenario field; valid: {', '.join(_FIELDS)}")
        if isinstance(value, bool) or not isinstance(value, _FIELDS[key]):
            raise _fail(path, key, f"must be {getattr(_FIELDS[key], '__name__', 'a number')}, got {value!r}")
    if data["name"] != path.stem:
        raise _fail(path, "name", f"is {data['name']!r} but the file is {path.name}")
    for key in ("context_tokens", "output_tokens", "concurrency"):
        if data[key] < 1:
            raise _fail(path, key, f"must be at least 1, got {data[key]}")
    for model in data["models"]:
        _choice(path, "models", model, VARIANTS)
    profiles = load_profiles()
    for device in data["devices"]:
        _choice(path, "devices", device, profiles)
    for quant in data["quants"]:
        try:
            get_quant(str(quant))
        except KeyError:
            raise _fail(path, "quants", f"has unknown weight format {quant!r}") from None
    _choice(path, "engine", data["engine"], [*ENGINES, "auto"])  # auto: what users of each device and format run
    _choice(path, "kv_dtype", data.get("kv_dtype", "bf16"), KV_DTYPES)
    soft = data.get("soft_tokens_per_image", 0)
    if data.get("images_per_request") and soft not in SOFT_TOKEN_BUDGETS:
        raise _fail(path, "soft_tokens_per_image",
                    f"must be one of {', '.join(map(str, SOFT_TOKEN_BUDGETS))} (Gemma 4's image budgets), got {soft}")
    for key in ("images_per_request", "turns", "start_context_tokens", "audio_seconds_per_request"):
        if data.get(key, 0) < 0:
            raise _fail(path, key, f"must not be negative, got {data[key]}")
    if data.get("audio_seconds_per_request") and not set(data["models"]) <= {"e2b", "e4b"}:
        raise _fail(path, "audio_seconds_per_request", "needs an audio tower: only e2b and e4b have one")
    if data.get("start_context_tokens", 0) > data["context_tokens"]:
        raise _fail(path, "start_context_tokens", "exceeds context_tokens")
    mix = []
    for i, item in enumerate(data.get("request_mix", [])):
        try:
            mix.append(RequestClass(float(item["share"]), int(item["prompt_tokens"]), int(item["output_tokens"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(path, f"request_mix[{i}]", f"needs share, prompt_tokens, output_tokens ({exc})") from exc
    if mix and abs(sum(m.share for m in mix) - 1.0) > 1e-6:
        raise _fail(path, "request_mix", f"shares sum to {sum(m.share for m in mix)}, not 1")
    return Scenario(
        name=data["name"], description=data["description"], models=tuple(data["models"]),
        devices=tuple(data["devices"]), quants=tuple(str(q) for q in data["quants"]),
        context_tokens=data["context_tokens"], output_tokens=data["output_tokens"], concurrency=data["concurrency"],
        engine=data["engine"], kv_dtype=data.get("kv_dtype", "bf16"), request_mix=tuple(mix),
        images_per_request=data.get("images_per_request", 0), soft_tokens_per_image=soft,
        audio_seconds_per_request=float(data.get("audio_seconds_per_request", 0)), turns=data.get("turns", 0),
        start_context_tokens=data.get("start_context_tokens", 0),
    )


def load_scenario(path: str | Path) -> Scenario:
    from g4sim.hardware import read_yaml

    p = Path(path)
    return parse_scenario(read_yaml(p, ScenarioError), p)


def load_scenarios() -> dict[str, Scenario]:
    return {p.stem: load_scenario(p) for p in sorted(SCENARIO_DIR.glob("*.yaml"))}


def get_scenario(name: str) -> Scenario:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_scenario(path)
    names = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScenarioError(f"unknown scenario {name!r}{hint}; valid: {', '.join(names)}")
    return load_scenario(SCENARIO_DIR / f"{name}.yaml")
