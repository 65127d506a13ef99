"""Hardware profiles: one YAML per device in ``hardware_profiles/``, validated on load.

A profile says how much memory a device has and how much of it a model may use (after a cited
``reserved`` block: what the driver / firmware, a desktop session and the OS take before any model
loads, and any wired-memory limit), how fast that memory is, its dense peak FLOP/s per dtype, its
interconnect, and the achieved efficiencies the throughput model applies (defaults until ``g4sim
calibrate`` fits them from measurements).  Every profile lists its ``sources``, and its ``provenance`` block says, for
every numeric figure (by dotted path: ``memory_bytes``, ``peak_flops.bf16``, ``efficiency.decode_bandwidth``, ...), what
kind of figure it is and where it comes from:

- ``datasheet``: a vendor spec-sheet / whitepaper figure, quoted as published (the document is cited);
- ``derived``: computed from datasheet figures (how is said: clock x units x FLOP/clk, half of a both-directions link
  figure, half of a with-sparsity rate, transfer rate x bus width);
- ``measured``: read off a real device (nvidia-smi, /proc/meminfo, a timed copy), by this workplace or a cited capture;
- ``calibrated``: fitted by ``g4sim calibrate`` from this project's measurements (efficiencies only);
- ``assumed``: an estimate or default with no measurement behind it (what it rests on is said).

No torch import.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hardware_profiles"
KINDS = ("gpu", "cpu", "soc")
DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "fp4")
ALIASES = {"4090": "rtx4090", "3090": "rtx3090", "5090": "rtx5090", "4080": "rtx4080", "h100": "h100-sxm",
           "a100": "a100-80gb", "rpi5": "rpi5-8gb", "pi5": "rpi5-8gb", "m3-max": "apple-m3-max-128gb",
           "m4-pro": "apple-m4-pro-48gb", "jetson": "jetson-orin-nano-8gb", "cpu": "desktop-ddr5"}


class ProfileError(ValueError):
    """A malformed profile file, or an unknown profile name."""


@dataclass(frozen=True)
class Reserve:
    """Memory a model can never have, by cause, each non-zero figure cited in ``sources``.

    ``driver_bytes``: taken before any process runs (firmware / driver / ECC; what nvidia-smi reports as reserved
    and used on an idle headless card; RAM the firmware carves out).  ``display_bytes``: a desktop session drawing
    on the device (compositor, browser); 0 for cards with no display output.  ``os_bytes``: where the model's
    memory is system RAM, what the OS and background services keep resident.  The engines count their own CUDA
    context separately: it is not in here.
    """

    driver_bytes: int
    display_bytes: int
    os_bytes: int
    sources: tuple[str, ...]

    def total(self, display_attached: bool = True) -> int:
        """Bytes reserved; ``display_attached=False`` is the headless case (no desktop session on the device)."""
        return self.driver_bytes + self.os_bytes + (self.display_bytes if display_attached else 0)


@dataclass(frozen=True)
class Interconnect:
    """A link: its name and bandwidth in ONE direction (datasheets usually quote both added up)."""

    name: str
    bandwidth_bytes_per_s: float  # one direction
    source: str = ""


@dataclass(frozen=True)
class Efficiency:
    prefill_compute: float  # achieved fraction of peak FLOP/s in prefill
    decode_bandwidth: float  # achieved fraction of memory bandwidth in decode
    provenance: str
    by_dtype: dict[str, tuple[float, float]] | None = None  # calibrated per compute dtype, where measured
    # Routed-expert GEMMs see only tokens x top_k / experts rows each; their efficiency is taken as
    # m / (m + expert_gemm_half_rows) of the dense one (0: no small-batch penalty; calibrated where measured)
    expert_gemm_half_rows: float = 0.0


@dataclass(frozen=True)
class FieldSource:
    """What kind of figure one numeric field is, and where it comes from (one entry of a profile's ``provenance``).

    ``kind`` is one of ``PROVENANCE_KINDS`` (datasheet, derived, measured, calibrated, assumed); ``source`` cites the
    document, says how the figure was computed or measured, or what an assumption rests on.
    """

    kind: str
    source: str


@dataclass(frozen=True)
class PublishedMeasurement:
    engine: str
    model: str
    quant: str
    source: str
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    ctx: int | None = None
    batch: int = 1
    device_note: str = ""
    memory_gib: float | None = None
    engine_version: str = ""  # release, tag or commit where the source gives one
    date: str = ""  # when the figure was published (ISO date where known)


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    display_name: str
    kind: str
    vendor: str
    memory_bytes: int
    memory_bandwidth_bytes_per_s: float
    peak_flops: dict[str, float]
    unified_memory: bool
    efficiency: Efficiency
    sources: tuple[str, ...]
    reserve: Reserve  # taken by the driver, a desktop session and the OS before any model loads (cited)
    memory_type: str = ""
    interconnect: Interconnect | None = None  # GPU to GPU
    host_link: Interconnect | None = None  # host memory to the device, where it differs from ``interconnect``
    usable_memory_fraction: float = 1.0  # share of RAM the accelerator may hold (Apple's GPU wired-memory limit)
    published: tuple[PublishedMeasurement, ...] = ()
    notes: str = ""
    # every numeric figure's kind and source, by dotted field path (``peak_flops.bf16``); see ``numeric_fields``
    provenance: dict[str, FieldSource] = field(default_factory=dict)
    path: str = field(default="", compare=False)

    def kind_of(self, field: str) -> str:
        """The kind of figure ``field`` (a dotted path such as ``peak_flops.bf16``) is: one of ``PROVENANCE_KINDS``."""
        return self.source_of(field).kind

    def source_of(self, field: str) -> FieldSource:
        """``field``'s provenance entry (kind and source); KeyError naming the valid paths for a field it lacks."""
        if field not in self.provenance:
            raise KeyError(f"{self.name}: no numeric field {field!r}; fields: {', '.join(self.provenance)}")
        return self.provenance[field]

    def usable_bytes(self, display_attached: bool = True) -> int:
        """Memory a model may use: after the cited reserve and any wired-memory limit.

        ``display_attached=False`` drops the desktop-session share (a headless box, or a GPU that drives no display).
        """
        return int(min(self.memory_bytes * self.usable_memory_fraction,
                       self.memory_bytes - self.reserve.total(display_attached)))

    @property
    def usable_memory_bytes(self) -> int:
        """``usable_bytes()`` with a desktop session attached: the safe default for a planner."""
        return self.usable_bytes(True)

    @property
    def host_link_bytes_per_s(self) -> float | None:
        """One-direction bandwidth between host memory and this device (None: no separate host link)."""
        if self.host_link is not None:
            return self.host_link.bandwidth_bytes_per_s
        if self.interconnect is not None and self.interconnect.name.lower().startswith("pcie"):
            return self.interconnect.bandwidth_bytes_per_s
        return None

    def flops(self, dtype: str) -> float:
        """Peak dense FLOP/s for ``dtype``, falling back to the nearest rate the device has."""
        for key in (dtype, *{"bf16": ("fp16", "fp32"), "fp16": ("bf16", "fp32"), "fp8": ("int8", "bf16", "fp16"),
                             "int8": ("fp8", "bf16", "fp16"), "fp4": ("fp8", "int8", "bf16")}.get(dtype, ("fp32",))):
            if key in self.peak_flops:
                return self.peak_flops[key]
        return self.peak_flops["fp32"]


# ---- loading and validation ---------------------------------------------

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "name": str, "display_name": str, "kind": str, "vendor": str, "memory_bytes": int,
    "memory_bandwidth_bytes_per_s": (int, float), "peak_flops": dict, "unified_memory": bool,
    "efficiency": dict, "sources": list, "reserved": dict, "provenance": dict,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "memory_type": str, "interconnect": (dict, type(None)), "host_link": (dict, type(None)), "usable_memory_fraction": (int, float),
    "published": list, "notes": str,
}
RESERVE_FIGURES = ("driver_bytes", "display_bytes", "os_bytes")
PROVENANCE_KINDS = ("datasheet", "derived", "measured", "calibrated", "assumed")
_LINK_FIGURE = "bandwidth_bytes_per_s_per_direction"
_EFFICIENCY_FIGURES = ("prefill_compute", "decode_bandwidth")
_RETIRED = {"reserved_memory_bytes": "replaced by the cited 'reserved' block (driver_bytes, display_bytes, os_bytes, "
                                     "sources)"}


def _fail(path: Path, fieldname: str, why: str) -> ProfileError:
    return ProfileError(f"{path.name}: field '{fieldname}' {why}")


def _positive(path: Path, fieldname: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _fail(path, fieldname, f"must be a positive number, got {value!r}")
    return value


def _link(path: Path, key: str, ic: Any) -> Interconnect | None:
    """An interconnect block: name, one-direction bandwidth and its source."""
    if not ic:
        return None
    if not isinstance(ic, dict):
        raise _fail(path, key, f"must be a mapping (name, bandwidth_bytes_per_s_per_direction, source), got {ic!r}")
    unknown = sorted(set(ic) - {"name", "bandwidth_bytes_per_s_per_direction", "source"})
    if unknown:
        raise _fail(path, f"{key}.{unknown[0]}", "is not a link field; valid: name, bandwidth_bytes_per_s_per_direction "
                    "(one direction: datasheets often quote both directions added up), source")
    if not isinstance(ic.get("name"), str):
        raise _fail(path, f"{key}.name", "is missing")
    if not isinstance(ic.get("source"), str) or not ic["source"]:
        raise _fail(path, f"{key}.source", "must cite where the bandwidth comes from")
    bw = _positive(path, f"{key}.bandwidth_bytes_per_s_per_direction", ic.get("bandwidth_bytes_per_s_per_direction"))
    return Interconnect(ic["name"], float(bw), ic["source"])


def parse_profile(data: Any, path: Path) -> HardwareProfile:
    """Validate one profile mapping; errors name the file and the field."""
    if not isinstance(data, dict):
        raise ProfileError(f"{path.name}: expected a mapping of fields, got {type(data).__name__}")
    # unknown fields first, so a file still written with a retired field is told what replaced it
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        hint = f" ({_RETIRED[unknown[0]]})" if unknown[0] in _RETIRED else ""
        raise _fail(path, unknown[0], f"is not a profile field{hint}; valid: {', '.join([*_REQUIRED, *_OPTIONAL])}")
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise _fail(path, key, "is missing")
        if isinstance(data[key], bool) and typ is not bool or not isinstance(data[key], typ):
            raise _fail(path, key, f"must be {getattr(typ, '__name__', typ)}, got {data[key]!r}")
    for key, typ in _OPTIONAL.items():
        if key in data and not isinstance(data[key], typ):
            raise _fail(path, key, f"has the wrong type: {data[key]!r}")
    if data["kind"] not in KINDS:
        raise _fail(path, "kind", f"is {data['kind']!r}; valid: {', '.join(KINDS)}")
    if data["name"] != path.stem:
        raise _fail(path, "name", f"is {data['name']!r} but the file is {path.name}")
    _positive(path, "memory_bytes", data["memory_bytes"])
    _positive(path, "memory_bandwidth_bytes_per_s", data["memory_bandwidth_bytes_per_s"])
    flops = {}
    for dtype, rate in data["peak_flops"].items():
        if dtype not in DTYPES:
            raise _fail(path, f"peak_flops.{dtype}", f"is not a dtype; valid: {', '.join(DTYPES)}")
        flops[dtype] = float(_positive(path, f"peak_flops.{dtype}", rate))
    if "fp32" not in flops:
        raise _fail(path, "peak_flops.fp32", "is missing (every device has an fp32 rate)")
    eff = data["efficiency"]
    for key in ("prefill_compute", "decode_bandwidth"):
        value = eff.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise _fail(path, f"efficiency.{key}", f"must be a fraction in (0, 1], got {value!r}")
    if not isinstance(eff.get("provenance"), str) or not eff["provenance"]:
        raise _fail(path, "efficiency.provenance", "must say where the efficiencies come from")
    by_dtype = {}
    for dtype, pair in (eff.get("by_dtype") or {}).items():
        if dtype not in DTYPES or not isinstance(pair, dict):
            raise _fail(path, f"efficiency.by_dtype.{dtype}", f"must be a dtype ({', '.join(DTYPES)}) mapping")
        values = []
        for key in ("prefill_compute", "decode_bandwidth"):
            value = pair.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise _fail(path, f"efficiency.by_dtype.{dtype}.{key}", f"must be a fraction in (0, 1], got {value!r}")
            values.append(float(value))
        by_dtype[dtype] = (values[0], values[1])
    half_rows = eff.get("expert_gemm_half_rows", 0.0)
    if isinstance(half_rows, bool) or not isinstance(half_rows, (int, float)) or half_rows < 0:
        raise _fail(path, "efficiency.expert_gemm_half_rows", f"must be a number >= 0, got {half_rows!r}")
    if not data["sources"] or not all(isinstance(s, str) and s for s in data["sources"]):
        raise _fail(path, "sources", "must list at least one source for the numbers")
    frac = data.get("usable_memory_fraction", 1.0)
    if not 0 < frac <= 1:
        raise _fail(path, "usable_memory_fraction", f"must be in (0, 1], got {frac!r}")
    reserve = _parse_reserve(data["reserved"], int(data["memory_bytes"]), path)
    interconnect = _link(path, "interconnect", data.get("interconnect"))
    host_link = _link(path, "host_link", data.get("host_link"))
    provenance = _parse_provenance(data["provenance"], numeric_fields(data), path)
    published = []
    for i, item in enumerate(data.get("published") or []):
        try:
            published.append(PublishedMeasurement(**item))
        except TypeError as exc:
            raise _fail(path, f"published[{i}]", f"is malformed ({exc})") from exc
        if not published[-1].source:
            raise _fail(path, f"published[{i}].source", "is empty: a published figure needs its source")
        rates = {k: getattr(published[-1], k) for k in ("prefill_tokens_per_s", "decode_tokens_per_s")}
        if all(v is None for v in rates.values()):
            raise _fail(path, f"published[{i}]", "gives neither prefill_tokens_per_s nor decode_tokens_per_s")
        for key, value in rates.items():
            if value is not None:
                _positive(path, f"published[{i}].{key}", value)
    return HardwareProfile(
        name=data["name"], display_name=data["display_name"], kind=data["kind"], vendor=data["vendor"],
        memory_bytes=int(data["memory_bytes"]), memory_bandwidth_bytes_per_s=float(data["memory_bandwidth_bytes_per_s"]),
        peak_flops=flops, unified_memory=data["unified_memory"],
        efficiency=Efficiency(float(eff["prefill_compute"]), float(eff["decode_bandwidth"]), eff["provenance"],
                              by_dtype or None, float(half_rows)),
        sources=tuple(data["sources"]), reserve=reserve, memory_type=data.get("memory_type", ""),
        interconnect=interconnect, host_link=host_link, usable_memory_fraction=float(frac),
        published=tuple(published), notes=data.get("notes", ""), provenance=provenance, path=str(path),
    )


def numeric_fields(data: dict) -> list[str]:
    """The dotted paths of every numeric figure a profile mapping has, in file order: each needs a provenance entry.

    memory_bytes, memory_bandwidth_bytes_per_s, peak_flops.<dtype>, interconnect / host_link
    .bandwidth_bytes_per_s_per_direction (where the link is given), usable_memory_fraction (where written),
    reserved.{driver,display,os}_bytes, efficiency.{prefill_compute,decode_bandwidth},
    efficiency.by_dtype.<dtype>.{prefill_compute,decode_bandwidth} and efficiency.expert_gemm_half_rows (where written).
    ``published`` figures are not in it: each already carries its own source.
    """
    fields = ["memory_bytes", "memory_bandwidth_bytes_per_s"]
    fields += [f"peak_flops.{dtype}" for dtype in data.get("peak_flops") or {}]
    fields += [f"{link}.{_LINK_FIGURE}" for link in ("interconnect", "host_link") if data.get(link)]
    if "usable_memory_fraction" in data:
        fields.append("usable_memory_fraction")
    fields += [f"reserved.{key}" for key in RESERVE_FIGURES]
    eff = data.get("efficiency") or {}
    fields += [f"efficiency.{key}" for key in _EFFICIENCY_FIGURES]
    for dtype in eff.get("by_dtype") or {}:
        fields += [f"efficiency.by_dtype.{dtype}.{key}" for key in _EFFICIENCY_FIGURES]
    if "expert_gemm_half_rows" in eff:
        fields.append("efficiency.expert_gemm_half_rows")
    return fields


def _parse_provenance(block: Any, fields: list[str], path: Path) -> dict[str, FieldSource]:
    """Validate ``provenance``: one {kind, source} per numeric figure, no more, no less, in ``fields`` order."""
    if not isinstance(block, dict):
        raise _fail(path, "provenance", "must be a mapping of dotted field paths (e.g. peak_flops.bf16) to "
                                        f"{{kind, source}}, got {block!r}")
    known = set(fields)
    for key, entry in block.items():
        if key not in known:
            raise _fail(path, f"provenance.{key}", f"names no numeric field of this profile; valid: {', '.join(fields)}")
        if not isinstance(entry, dict):
            raise _fail(path, f"provenance.{key}", f"must be a mapping {{kind, source}}, got {entry!r}")
        extra = sorted(set(entry) - {"kind", "source"})
        if extra:
            raise _fail(path, f"provenance.{key}.{extra[0]}", "is not a provenance field; valid: kind, source")
        kind = entry.get("kind")
        if kind not in PROVENANCE_KINDS:
            raise _fail(path, f"provenance.{key}.kind", f"is {kind!r}; valid: {', '.join(PROVENANCE_KINDS)}")
        if kind == "calibrated" and not key.startswith("efficiency."):
            raise _fail(path, f"provenance.{key}.kind", "is 'calibrated', but only efficiencies are fitted by "
                                                        "`g4sim calibrate`")
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise _fail(path, f"provenance.{key}.source", f"must say where the figure comes from (the document, how it "
                                                          f"was derived or measured, what an assumption rests on), "
                                                          f"got {source!r}")
    missing = [key for key in fields if key not in block]
    if missing:
        raise _fail(path, f"provenance.{missing[0]}", f"is missing: every numeric figure needs {{kind, source}} "
                                                      f"({len(missing)} of {len(fields)} lack one)")
    return {key: FieldSource(block[key]["kind"], block[key]["source"]) for key in fields}


def _parse_reserve(block: dict, memory_bytes: int, path: Path) -> Reserve:
    """Validate the ``reserved`` block: three non-negative byte counts, cited whenever any is non-zero."""
    unknown = sorted(set(block) - {*RESERVE_FIGURES, "sources"})
    if unknown:
        raise _fail(path, f"reserved.{unknown[0]}",
                    f"is not a reserve field; valid: {', '.join([*RESERVE_FIGURES, 'sources'])}")
    figures = {}
    for key in RESERVE_FIGURES:
        if key not in block:
            raise _fail(path, f"reserved.{key}", "is missing (write 0 where nothing is taken)")
        value = block[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(path, f"reserved.{key}", f"must be a non-negative integer number of bytes, got {value!r}")
        figures[key] = value
    sources = block.get("sources") or []
    if not isinstance(sources, list) or not all(isinstance(s, str) and s.strip() for s in sources):
        raise _fail(path, "reserved.sources", f"must be a list of non-empty strings, got {sources!r}")
    if any(figures.values()) and not sources:
        nonzero = ", ".join(f"{k}={v}" for k, v in figures.items() if v)
        raise _fail(path, "reserved.sources", f"must cite at least one source for the non-zero figures ({nonzero})")
    reserve = Reserve(sources=tuple(sources), **figures)
    if reserve.total(display_attached=True) >= memory_bytes:
        raise _fail(path, "reserved", f"totals {reserve.total()} bytes (driver + display + os), which leaves no "
                                      f"usable memory of memory_bytes {memory_bytes}")
    return reserve


def read_yaml(path: Path, error: type[ValueError]):
    """Safe-load a YAML file; a syntax error becomes ``error`` naming the file."""
    try:
        # libyaml's safe loader when the wheel has it (same safe subset, ~10x faster: plan starts sooner)
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise error(f"{path.name}: not valid YAML ({exc.__class__.__name__})") from exc


def load_profile(path: str | Path) -> HardwareProfile:
    p = Path(path)
    return parse_profile(read_yaml(p, ProfileError), p)


def profile_dirs() -> list[Path]:
    """The shipped profiles, plus any directories listed in G4SIM_HARDWARE_DIR (os.pathsep-separated)."""
    extra = [Path(d) for d in os.environ.get("G4SIM_HARDWARE_DIR", "").split(os.pathsep) if d]
    return [PROFILE_DIR, *extra]


@lru_cache(maxsize=None)
def _load_all(dirs: tuple[Path, ...]) -> dict[str, HardwareProfile]:
    profiles: dict[str, HardwareProfile] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            prof = load_profile(path)
            profiles[prof.name] = prof
    return profiles


def load_profiles() -> dict[str, HardwareProfile]:
    return _load_all(tuple(profile_dirs()))


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_profile(name: str) -> HardwareProfile:
    profiles = load_profiles()
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in profiles:
        choices = sorted(profiles)
        raise ProfileError(f"unknown GPU/device {name!r}{suggest(key, choices)}; valid: {', '.join(choices)}")
    return profiles[key]


def parse_gpu_spec(text: str) -> tuple[HardwareProfile, int]:
    """'h100-sxm:8' -> (profile, 8); 'rtx4090' -> (profile, 1)."""
    name, _, count = text.partition(":")
    if count and (not count.isdigit() or not 1 <= int(count) <= 64):
        raise ProfileError(f"GPU count {count!r} in {text!r} must be a whole number in 1..64")
    return get_profile(name), int(count or 1)
