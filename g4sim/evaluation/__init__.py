"""One evaluation of one deployment: memory, the engine's budget, the verdict, speed and the command.

``evaluate(request)`` is the only place a deployment is judged.  ``plan``, ``sweep``, ``report``,
``capacity``, ``check`` and the layout search all call it (or ``fit``, its memory-only half, for
searches), so they cannot disagree.  A request names the workload, the engine (with its settings),
the device and how many of them, and the safety margin.  Usable memory is the device's capacity
less what its OS, display and driver take (the hardware profile's cited reserve), capped by the
engine's own budget rule (e.g. vLLM's ``--gpu-memory-utilization``).  The verdict is three-way:

* ``fits``: the deployment needs at most usable - margin;
* ``tight``: it loads, but with less spare than the margin (a driver update, a browser tab or
  g4sim's own error can tip it over);
* ``does_not_fit``: it needs more than is usable.

On CPUs and unified-memory devices the "host" and the accelerator are the same RAM, so memory an
engine keeps on the host counts against the same budget.  No torch import.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import lru_cache
from typing import Any

from g4sim.analytic.components import Location
from g4sim.analytic.memory import MemoryBreakdown
from g4sim.analytic.params import count_params
from g4sim.engines import Engine, EngineError, Workload
from g4sim.evaluation.speed import Throughput, predict
from g4sim.hardware import HardwareProfile
from g4sim.units import GiB, MiB

DEFAULT_MARGIN_FRACTION = 0.05  # justified in README ("Margins"): g4sim's own measured error plus allocator drift


class Verdict(str, Enum):
    FITS = "fits"
    TIGHT = "tight"
    DOES_NOT_FIT = "does_not_fit"


class Incompatible(EngineError):
    """The engine cannot run this workload on this device (the message says what can)."""


@dataclass(frozen=True)
class Margin:
    """Spare memory a plan must keep: a share of the usable memory, or a fixed number of bytes."""

    fraction: float = DEFAULT_MARGIN_FRACTION
    bytes: int | None = None

    def of(self, usable_bytes: int) -> int:
        return self.bytes if self.bytes is not None else int(usable_bytes * self.fraction)

    def describe(self) -> str:
        return f"{self.bytes / GiB:.2f} GiB" if self.bytes is not None else f"{self.fraction:.0%} of the budget"


_MARGIN = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%|gib|mib|gb|mb)?\s*$", re.I)


def parse_margin(text: str) -> Margin:
    """'5%', '0.05', '1.5GiB', '512MiB', '2GB' -> Margin; anything else raises ValueError naming the forms."""
    m = _MARGIN.match(str(text))
    if not m:
        raise ValueError(f"--margin {text!r}: give a share (5%, 0.05) or a size (1.5GiB, 512MiB, 2GB)")
    value, unit = float(m.group(1)), (m.group(2) or "").lower()
    if unit == "%":
        value /= 100
        unit = ""
    if not unit:
        if not 0 <= value < 1:
            raise ValueError(f"--margin {text!r}: a share must be in [0%, 100%)")
        return Margin(fraction=value)
    scale = {"gib": GiB, "mib": MiB, "gb": 10**9, "mb": 10**6}[unit]
    return Margin(fraction=0.0, bytes=int(value * scale))


@dataclass(frozen=True)
class Request:
    """One deployment to judge: what is served, by which engine, on how many of which device."""

    workload: Workload
    device: HardwareProfile
    engine: Engine
    gpus: int = 1
    margin: Margin = field(default_factory=Margin)
    display_attached: bool = True  # a desktop drawing on this GPU (consumer cards) takes its share
    engine_reason: str = ""  # why --engine auto picked this engine ("" when the user named it)

    @property
    def spec(self):
        return self.workload.spec

    def with_workload(self, **changes: Any) -> Request:
        return replace(self, workload=replace(self.workload, **changes))

    def usable_device_bytes(self) -> int:
        """The device's memory less what its OS, display and driver take."""
        return self.device.usable_bytes(self.display_attached)

    def budget_bytes(self) -> int:
        return self.engine.budget_bytes(self.usable_device_bytes(), self.device.memory_bytes)


@dataclass(frozen=True)
class Fit:
    """The memory half of an evaluation (what searches need)."""

    request: Request
    memory: MemoryBreakdown  # per GPU
    needed_bytes: int  # against the budget (host memory counted too where it is the same RAM)
    budget_bytes: int
    margin_bytes: int

    @property
    def headroom_bytes(self) -> int:
        return self.budget_bytes - self.needed_bytes

    @property
    def verdict(self) -> Verdict:
        if self.headroom_bytes < 0:
            return Verdict.DOES_NOT_FIT
        return Verdict.FITS if self.headroom_bytes >= self.margin_bytes else Verdict.TIGHT

    @property
    def host_bytes(self) -> int:
        return self.memory.total(Location.HOST)

    @property
    def loads(self) -> bool:
        """It fits at all (fits or tight)."""
        return self.headroom_bytes >= 0

    @property
    def safe(self) -> bool:
        """It fits with the margin kept."""
        return self.verdict is Verdict.FITS


@dataclass(frozen=True)
class Evaluation(Fit):
    speed: Throughput | None = None
    command: str | None = None  # None when it does not fit
    engine_view: tuple[str, ...] = ()  # what the engine's own tools would print (e.g. ollama ps)
    engine: Engine | None = None  # the engine as it ran: the request's, with what the device and workload decide

    @property
    def settings(self) -> dict[str, Any]:
        """The engine settings this evaluation used (a device-decided default resolved, e.g. LiteRT-LM's backend)."""
        return (self.engine or self.request.engine).settings()


def shares_ram(device: HardwareProfile) -> bool:
    """Host memory and the model's memory are the same RAM (CPUs, unified-memory SoCs)."""
    return device.kind == "cpu" or device.unified_memory


def check(req: Request) -> Engine:
    """The engine bound to the workload, or Incompatible with the engine's reason."""
    problem = req.engine.compatibility(req.workload, req.device, req.gpus)
    if problem:
        raise Incompatible(problem)
    return req.engine.for_device(req.device).bind(req.workload)


def fit(req: Request) -> Fit:
    return _fit(req, check(req))


def _fit(req: Request, engine: Engine) -> Fit:
    memory = engine.memory_per_gpu(req.workload, req.gpus, req.device.kind)
    needed = memory.total(Location.ACCELERATOR) + (memory.total(Location.HOST) if shares_ram(req.device) else 0)
    budget = req.budget_bytes()
    return Fit(req, memory, needed, budget, req.margin.of(budget))


@dataclass(frozen=True)
class DeviceKind:
    """What a launch command depends on of a device: its kind and vendor (so commands can be cached)."""

    kind: str
    vendor: str


@lru_cache(maxsize=65536)
def _command(engine: Engine, w: Workload, gpus: int, device: DeviceKind) -> str:
    return engine.launch_command(w, gpus, device)


def host_profile_for(device: HardwareProfile) -> HardwareProfile:
    """Where weights kept on the host are read from: a desktop's DDR5 (the host profile)."""
    from g4sim.hardware import get_profile

    return get_profile("desktop-ddr5")


def evaluate(req: Request, view: bool = False) -> Evaluation:
    """Memory, budget, verdict, speed (for the layout) and the launch command of one deployment;
    ``view``: also what the engine's own tools would print (plans show it; sweeps do not need it)."""
    engine = check(req)
    f = _fit(req, engine)
    host_weights = 0 if shares_ram(req.device) else engine.host_streamed_weight_bytes(f.memory)
    speed = predict(engine, req.workload, req.device, req.gpus, host_weights,
                    host_profile_for(req.device) if host_weights else None)
    command = _command(engine, req.workload, req.gpus, DeviceKind(req.device.kind, req.device.vendor)) if f.loads else None
    lines = engine.user_view(req.workload, req.device, req.display_attached) if view and req.gpus == 1 else ()
    return Evaluation(req, f.memory, f.needed_bytes, f.budget_bytes, f.margin_bytes, speed, command, lines, engine)


def clear_caches() -> None:
    """Forget every cached result of g4sim's functions (after a rule changed under test): each
    module-level ``functools`` cache defined in a loaded g4sim module, so a new cache needs no registering."""
    for name, module in list(sys.modules.items()):
        if name == "g4sim" or name.startswith("g4sim."):
            for obj in list(vars(module).values()):
                if getattr(obj, "__module__", None) == name and callable(getattr(obj, "cache_clear", None)):
                    obj.cache_clear()


def evaluation_to_dict(e: Evaluation) -> dict[str, Any]:
    """The stable machine-readable form (all sizes in bytes) shared by ``plan --json`` and ``sweep``."""
    from g4sim import __version__

    r, w, m = e.request, e.request.workload, e.memory
    params = count_params(w.spec, vision=w.vision, audio=w.audio)
    return {
        "g4sim_version": __version__,
        "provenance": "memory computed (analytic model); speed predicted (throughput.provenance says from what); "
                      "nothing measured for this plan",
        "request": {
            "model": w.spec.name, "ctx_tokens": w.ctx, "batch": w.batch, "quant": w.quant, "kv_dtype": w.kv_dtype,
            "engine": r.engine.name, "engine_reason": r.engine_reason, "engine_settings": e.settings,
            "device": r.device.name, "gpus": r.gpus, "vision": w.vision, "audio": w.audio,
            "margin": {"fraction": r.margin.fraction, "bytes": r.margin.bytes}, "display_attached": r.display_attached,
        },
        "params": {"total": params.total, "active": params.active, "effective": params.effective},
        "memory": {
            "per_gpu": r.gpus > 1,
            "terms": [{"component": t.component.value, "category": t.category.value, "bytes": t.bytes,
                       "location": t.location.value, "source": t.source} for t in m.terms],
            "by_category_bytes": m.by_category(Location.ACCELERATOR),
            "accelerator_total_bytes": m.total(Location.ACCELERATOR),
            "host_total_bytes": m.total(Location.HOST),
            "needed_bytes": e.needed_bytes,
        },
        "capacity": {"device_memory_bytes": r.device.memory_bytes, "usable_device_bytes": r.usable_device_bytes(),
                     "budget_bytes": e.budget_bytes, "margin_bytes": e.margin_bytes},
        "verdict": e.verdict.value,
        "fits": e.loads,
        "headroom_bytes": e.headroom_bytes,
        "throughput": e.speed.to_dict() if e.speed else None,
        "launch_command": e.command,
        "engine_view": list(e.engine_view),
    }


__all__ = ["DEFAULT_MARGIN_FRACTION", "Evaluation", "Fit", "Incompatible", "Margin", "Request", "Throughput",
           "Verdict", "check", "clear_caches", "evaluate", "evaluation_to_dict", "fit", "parse_margin", "predict", "shares_ram"]
