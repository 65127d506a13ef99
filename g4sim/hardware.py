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

An SoC whose ``peak_flops`` are its GPU's may add ``cpu_peak_flops`` (same dtypes, fp32 required): its CPU cores'
dense peak, which prices an engine that computes on those cores (llama.cpp on a phone, LiteRT-LM's CPU backend).

Where the device's CPU runs llama.cpp (CPUs, Apple silicon, Jetson, phones, the Raspberry Pi), ``cpu_features`` names
the CPU feature set ggml-cpu is built for (one of ``CPU_FEATURE_SETS``), with its own kind and source: llama.cpp's
CPU weight repacking depends on it, and the llama.cpp engine takes its default from it.

A profile may also be a file the user brings: ``--gpu ./my-device.yaml`` (``get_profile`` with a path), or any
directory listed in G4SIM_HARDWARE_DIR.  Such a file is validated like a shipped one, except that it need not cite:
a figure it gives no provenance for is ``assumed`` with the source "user file <path>" (``load_profile(...,
user_file=True)``); docs/hardware-profile.md documents every field.

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


# The CPU feature sets that decide which weights llama.cpp's CPU backend repacks (ggml-cpu/repack.cpp
# ggml_repack_get_optimal_repack_type tests ggml_cpu_has_avx2 / _avx512 / _neon / _dotprod / _matmul_int8 / _sve, all
# compile-time: what the build was compiled for, GGML_NATIVE's default being this CPU's own).  The llama.cpp engine
# keeps the repack rule of each (g4sim/engines/llamacpp.py CPU_FEATURES, the same keys).
CPU_FEATURE_SETS: dict[str, str] = {
    "x86-avx2": "x86-64 built with AVX2 and without AVX-512F",
    "x86-avx512": "x86-64 built with AVX-512F (no AMX)",
    "x86-amx": "x86-64 built with AVX-512 and AMX-INT8 (Intel Xeon, Sapphire Rapids and later)",
    "arm-dotprod": "AArch64 NEON with the dot-product extension (FEAT_DotProd), without int8 matrix multiply",
    "arm-i8mm": "AArch64 NEON with dot product and int8 matrix multiply (FEAT_I8MM), without 256-bit SVE",
    "none": "no repack kernels (a CPU or build without any of the above)",
}


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
    # calibrated per weight-only format (int8, int4-gN: bf16 compute over packed weights), where measured
    by_format: dict[str, tuple[float, float]] | None = None
    # phase -> {"median", "p90", "n"}: held-out |error| of tokens/s of the rows these efficiencies were fitted
    # beside (g4sim's own model on this device, `g4sim calibrate --write`); empty where never calibrated
    bands: tuple[tuple[str, dict], ...] = ()


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
    # the CPU feature set llama.cpp's CPU backend is built for (CPU_FEATURE_SETS; None: the profile does not say),
    # and that figure's kind and source
    cpu_features: str | None = None
    cpu_features_source: FieldSource | None = None
    # an SoC's CPU cores' dense peak per dtype, where its peak_flops are its GPU's (empty: not given)
    cpu_peak_flops: dict[str, float] = field(default_factory=dict)
    # the CPU this project measures under the profile (g4sim.measure.measurements.cpu_model); "" for devices it
    # does not measure.  `g4sim profile` files a row under the profile only on that CPU.
    cpu_model: str = ""
    path: str = field(default="", compare=False)
    user_file: bool = field(default=False, compare=False)  # a file the user brought (--gpu FILE, G4SIM_HARDWARE_DIR)
    uncited: tuple[str, ...] = field(default=(), compare=False)  # a user file's figures without provenance: assumed

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
        return _nearest_rate(self.peak_flops, dtype)

    def cpu_flops(self, dtype: str) -> float | None:
        """The CPU cores' peak for ``dtype``: a CPU profile's own; an SoC's ``cpu_peak_flops``; None where the profile
        gives no CPU figure (its peaks are a GPU's)."""
        if self.kind == "cpu":
            return self.flops(dtype)
        return _nearest_rate(self.cpu_peak_flops, dtype) if self.cpu_peak_flops else None


def _nearest_rate(rates: dict[str, float], dtype: str) -> float:
    for key in (dtype, *{"bf16": ("fp16", "fp32"), "fp16": ("bf16", "fp32"), "fp8": ("int8", "bf16", "fp16"),
                         "int8": ("fp8", "bf16", "fp16"), "fp4": ("fp8", "int8", "bf16")}.get(dtype, ("fp32",))):
        if key in rates:
            return rates[key]
    return rates["fp32"]


# ---- loading and validation ---------------------------------------------

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "name": str, "display_name": str, "kind": str, "vendor": str, "memory_bytes": int,
    "memory_bandwidth_bytes_per_s": (int, float), "peak_flops": dict, "unified_memory": bool,
    "efficiency": dict, "sources": list, "reserved": dict, "provenance": dict,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "memory_type": str, "interconnect": (dict, type(None)), "host_link": (dict, type(None)), "usable_memory_fraction": (int, float),
    "published": list, "notes": str, "cpu_features": (dict, str), "cpu_peak_flops": dict, "cpu_model": str,
}
RESERVE_FIGURES = ("driver_bytes", "display_bytes", "os_bytes")
PROVENANCE_KINDS = ("datasheet", "derived", "measured", "calibrated", "assumed")
_LINK_FIGURE = "bandwidth_bytes_per_s_per_direction"
_EFFICIENCY_FIGURES = ("prefill_compute", "decode_bandwidth")
_RETIRED = {"reserved_memory_bytes": "replaced by the cited 'reserved' block (driver_bytes, display_bytes, os_bytes, "
                                     "sources)"}


_UNITS = {"memory_bytes": "bytes", "memory_bandwidth_bytes_per_s": "bytes/s", "peak_flops": "FLOP/s, dense",
          "cpu_peak_flops": "FLOP/s, dense, the CPU cores",
          _LINK_FIGURE: "bytes/s in one direction", "prefill_tokens_per_s": "tokens/s", "decode_tokens_per_s": "tokens/s"}
_YAML_FLOAT_HINT = "YAML reads 1e12 (no decimal point, no exponent sign) as text: write 1.0e+12 or 1000000000000"


def _fail(path: Path, fieldname: str, why: str) -> ProfileError:
    return ProfileError(f"{path.name}: field '{fieldname}' {why}")


def _got(value: Any) -> str:
    """``value`` as an error quotes it, with the hint for a number YAML read as text (``1e12``)."""
    if isinstance(value, str):
        try:
            float(value.replace("_", ""))
        except ValueError:
            pass
        else:
            return f"{value!r} ({_YAML_FLOAT_HINT})"
    return repr(value)


def _unit(fieldname: str) -> str:
    unit = _UNITS.get(fieldname.split(".")[-1]) or _UNITS.get(fieldname.split(".")[0])
    return f" of {unit}" if unit else ""


def _positive(path: Path, fieldname: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _fail(path, fieldname, f"must be a positive number{_unit(fieldname)}, got {_got(value)}")
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


def user_source(path: Path) -> str:
    """The source a user file's uncited figures get."""
    return f"user file {path}"


def _user_defaults(data: dict, path: Path) -> dict:
    """A user file's mapping with what it may leave out filled in: the sources, the efficiencies' and the reserve's
    citations, and an empty provenance block (each figure without an entry is then ``assumed``, see
    ``_parse_provenance``).  Only what is absent is filled: a field given is validated as written."""
    data = dict(data)
    data.setdefault("sources", [user_source(path)])
    data.setdefault("provenance", {})
    if isinstance(data.get("efficiency"), dict):
        data["efficiency"] = {"provenance": f"{user_source(path)}: uncalibrated", **data["efficiency"]}
    if isinstance(data.get("reserved"), dict) and data["reserved"].get("sources") is None:
        data["reserved"] = {**data["reserved"], "sources": [user_source(path)]}
    for link in ("interconnect", "host_link"):
        if isinstance(data.get(link), dict) and "source" not in data[link]:
            data[link] = {**data[link], "source": user_source(path)}
    return data


def parse_profile(data: Any, path: Path, user_file: bool = False) -> HardwareProfile:
    """Validate one profile mapping; errors name the file and the field.

    ``user_file``: a file the user brought, which need not cite (``_user_defaults``): every figure it gives no
    provenance for is ``assumed``, its source "user file <path>"."""
    if data is None:
        raise ProfileError(f"{path.name}: the file is empty; a hardware profile is a YAML mapping of fields "
                           "(docs/hardware-profile.md)")
    if not isinstance(data, dict):
        raise ProfileError(f"{path.name}: expected a mapping of fields, got {type(data).__name__}")
    if user_file:
        data = _user_defaults(data, path)
    # unknown fields first, so a file still written with a retired field is told what replaced it
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        hint = f" ({_RETIRED[unknown[0]]})" if unknown[0] in _RETIRED else ""
        raise _fail(path, unknown[0], f"is not a profile field{hint}; valid: {', '.join([*_REQUIRED, *_OPTIONAL])}")
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise _fail(path, key, "is missing" + (f" ({_unit(key)[4:]})" if _unit(key) else ""))
        if isinstance(data[key], bool) and typ is not bool or not isinstance(data[key], typ):
            what = {(int, float): "a number", int: "a whole number", str: "text", bool: "true or false",
                    dict: "a mapping", list: "a list"}.get(typ, getattr(typ, "__name__", typ))
            raise _fail(path, key, f"must be {what}{_unit(key)}, got {_got(data[key])}")
    for key, typ in _OPTIONAL.items():
        if key in data and not isinstance(data[key], typ):
            raise _fail(path, key, f"has the wrong type: {_got(data[key])}")
    if data["kind"] not in KINDS:
        raise _fail(path, "kind", f"is {data['kind']!r}; valid: {', '.join(KINDS)}")
    if data["name"] != path.stem:
        raise _fail(path, "name", f"is {data['name']!r} but the file is {path.name}")
    _positive(path, "memory_bytes", data["memory_bytes"])
    _positive(path, "memory_bandwidth_bytes_per_s", data["memory_bandwidth_bytes_per_s"])
    flops = _rates(path, "peak_flops", data["peak_flops"])
    cpu_flops = _rates(path, "cpu_peak_flops", data["cpu_peak_flops"]) if "cpu_peak_flops" in data else {}
    if cpu_flops and data["kind"] == "cpu":
        raise _fail(path, "cpu_peak_flops", "is for an SoC or GPU profile; a CPU profile's peak_flops are its cores'")
    eff = data["efficiency"]
    for key in ("prefill_compute", "decode_bandwidth"):
        value = eff.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise _fail(path, f"efficiency.{key}", f"must be a fraction in (0, 1], got {value!r}")
    if not isinstance(eff.get("provenance"), str) or not eff["provenance"]:
        raise _fail(path, "efficiency.provenance", "must say where the efficiencies come from")
    by_dtype = _efficiency_pairs(path, eff, "by_dtype", DTYPES)
    by_format = _efficiency_pairs(path, eff, "by_format", WEIGHT_ONLY_FORMATS)
    bands = _efficiency_bands(path, eff)
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
    provenance = _parse_provenance(data["provenance"], numeric_fields(data), path,
                                   FieldSource("assumed", f"{user_source(path)} (no provenance given)") if user_file
                                   else None)
    cpu_features, cpu_source = _parse_cpu_features(data.get("cpu_features"), path, user_file)
    uncited = []
    if user_file:  # what the user's file gives no provenance for (the plan says these are assumed)
        uncited = [k for k in numeric_fields(data) if k not in data["provenance"]]
        uncited += ["cpu_features"] if cpu_features and not {"kind", "source"} & set(data["cpu_features"]) else []
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
        peak_flops=flops, cpu_peak_flops=cpu_flops, unified_memory=data["unified_memory"],
        efficiency=Efficiency(float(eff["prefill_compute"]), float(eff["decode_bandwidth"]), eff["provenance"],
                              by_dtype or None, float(half_rows), by_format or None, bands),
        sources=tuple(data["sources"]), reserve=reserve, memory_type=data.get("memory_type", ""),
        interconnect=interconnect, host_link=host_link, usable_memory_fraction=float(frac),
        published=tuple(published), notes=data.get("notes", ""), provenance=provenance, cpu_features=cpu_features,
        cpu_features_source=cpu_source, path=str(path), user_file=user_file, uncited=tuple(uncited),
        cpu_model=data.get("cpu_model", ""),
    )


def _rates(path: Path, key: str, block: dict) -> dict[str, float]:
    """A ``peak_flops``-style mapping: dtype -> positive FLOP/s, fp32 required."""
    out = {}
    for dtype, rate in block.items():
        if dtype not in DTYPES:
            raise _fail(path, f"{key}.{dtype}", f"is not a dtype; valid: {', '.join(DTYPES)}")
        out[dtype] = float(_positive(path, f"{key}.{dtype}", rate))
    if "fp32" not in out:
        raise _fail(path, f"{key}.fp32", "is missing (every device has an fp32 rate)")
    return out


def _parse_cpu_features(block: Any, path: Path, user_file: bool) -> tuple[str | None, FieldSource | None]:
    """``cpu_features: {set, kind, source}``: the CPU feature set llama.cpp is built for, and where that comes from
    (a user file may leave out both kind and source: then ``assumed``, "user file <path>")."""
    if block is None:
        return None, None
    valid = ", ".join(CPU_FEATURE_SETS)
    if isinstance(block, str):
        raise _fail(path, "cpu_features", f"must be a mapping: set: {block}, kind: (datasheet, derived, measured or "
                                          "assumed), source: (where it comes from)")
    unknown = sorted(set(block) - {"set", "kind", "source"})
    if unknown:
        raise _fail(path, f"cpu_features.{unknown[0]}", "is not a cpu_features field; valid: set, kind, source")
    if block.get("set") not in CPU_FEATURE_SETS:
        raise _fail(path, "cpu_features.set", f"is {block.get('set')!r}; valid: {valid}")
    if user_file and "kind" not in block and "source" not in block:  # like a figure with no provenance entry
        return block["set"], FieldSource("assumed", f"{user_source(path)} (no provenance given)")
    kind, source = block.get("kind"), block.get("source")
    if kind not in PROVENANCE_KINDS or kind == "calibrated":
        raise _fail(path, "cpu_features.kind", f"is {kind!r}; valid: datasheet, derived, measured, assumed")
    if not isinstance(source, str) or not source.strip():
        raise _fail(path, "cpu_features.source", f"must say where the feature set comes from (the core's manual, "
                                                 f"/proc/cpuinfo, the build's system_info), got {source!r}")
    return block["set"], FieldSource(kind, source)


# weight-only formats g4sim's own model runs (bf16 compute over packed int weights): efficiency.by_format keys
WEIGHT_ONLY_FORMATS = ("int8", "int4-g128")


def _efficiency_pairs(path: Path, eff: dict, block: str, keys: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """efficiency.<block>.<key>.{prefill_compute, decode_bandwidth}, each a fraction in (0, 1]."""
    out = {}
    for name, pair in (eff.get(block) or {}).items():
        if name not in keys or not isinstance(pair, dict):
            raise _fail(path, f"efficiency.{block}.{name}", f"must be one of ({', '.join(keys)}), a mapping")
        values = []
        for key in ("prefill_compute", "decode_bandwidth"):
            value = pair.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise _fail(path, f"efficiency.{block}.{name}.{key}", f"must be a fraction in (0, 1], got {value!r}")
            values.append(float(value))
        out[name] = (values[0], values[1])
    return out


BAND_PHASES, BAND_FIGURES = ("prefill", "decode"), ("median", "p90", "n")


def _efficiency_bands(path: Path, eff: dict) -> tuple[tuple[str, dict], ...]:
    """efficiency.bands.<phase>.{median, p90, n}: held-out |error| fractions (null where n is 0) and a row count."""
    block = eff.get("bands")
    if block is None:
        return ()
    if not isinstance(block, dict) or set(block) != set(BAND_PHASES):
        raise _fail(path, "efficiency.bands", f"must map each of {', '.join(BAND_PHASES)} to median, p90, n")
    out = []
    for phase in BAND_PHASES:
        b = block[phase]
        if not isinstance(b, dict) or set(b) != set(BAND_FIGURES):
            raise _fail(path, f"efficiency.bands.{phase}", "must have median, p90 and n")
        n = b["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _fail(path, f"efficiency.bands.{phase}.n", f"must be a count of rows >= 0, got {n!r}")
        for key in ("median", "p90"):
            v = b[key]
            if (v is None) != (n == 0) or (v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                                            or v < 0)):
                raise _fail(path, f"efficiency.bands.{phase}.{key}", f"must be a fraction >= 0 (null when n is 0), "
                                                                      f"got {v!r}")
        out.append((phase, {"median": b["median"], "p90": b["p90"], "n": n}))
    return tuple(out)


def numeric_fields(data: dict) -> list[str]:
    """The dotted paths of every numeric figure a profile mapping has, in file order: each needs a provenance entry.

    memory_bytes, memory_bandwidth_bytes_per_s, peak_flops.<dtype>, interconnect / host_link
    .bandwidth_bytes_per_s_per_direction (where the link is given), usable_memory_fraction (where written),
    reserved.{driver,display,os}_bytes, efficiency.{prefill_compute,decode_bandwidth},
    efficiency.by_dtype.<dtype>.{prefill_compute,decode_bandwidth}, efficiency.by_format.<format>.{...},
    efficiency.expert_gemm_half_rows and efficiency.bands.<phase>.{median,p90,n} (where written).
    ``published`` figures are not in it: each already carries its own source.
    """
    fields = ["memory_bytes", "memory_bandwidth_bytes_per_s"]
    fields += [f"peak_flops.{dtype}" for dtype in data.get("peak_flops") or {}]
    fields += [f"cpu_peak_flops.{dtype}" for dtype in data.get("cpu_peak_flops") or {}]
    fields += [f"{link}.{_LINK_FIGURE}" for link in ("interconnect", "host_link") if data.get(link)]
    if "usable_memory_fraction" in data:
        fields.append("usable_memory_fraction")
    fields += [f"reserved.{key}" for key in RESERVE_FIGURES]
    eff = data.get("efficiency") or {}
    fields += [f"efficiency.{key}" for key in _EFFICIENCY_FIGURES]
    for block in ("by_dtype", "by_format"):
        for name in eff.get(block) or {}:
            fields += [f"efficiency.{block}.{name}.{key}" for key in _EFFICIENCY_FIGURES]
    if "expert_gemm_half_rows" in eff:
        fields.append("efficiency.expert_gemm_half_rows")
    for phase, b in (eff.get("bands") or {}).items():
        fields += [f"efficiency.bands.{phase}.{key}" for key in BAND_FIGURES if isinstance(b, dict)
                   and b.get(key) is not None]
    return fields


def _parse_provenance(block: Any, fields: list[str], path: Path,
                      default: FieldSource | None = None) -> dict[str, FieldSource]:
    """Validate ``provenance``: one {kind, source} per numeric figure, no more, no less, in ``fields`` order
    (``default``: what a figure without an entry gets, in a user file; otherwise a missing entry is an error)."""
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
    if missing and default is not None:
        return {key: FieldSource(block[key]["kind"], block[key]["source"]) if key in block else default
                for key in fields}
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
    """Safe-load a YAML file; a syntax error (or a file that is not text) becomes ``error`` naming the file."""
    try:
        # libyaml's safe loader when the wheel has it (same safe subset, ~10x faster: plan starts sooner)
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path.name}: not valid YAML ({exc.__class__.__name__}{where})") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path.name}: not valid YAML (not UTF-8 text)") from exc


def load_profile(path: str | Path, user_file: bool = False) -> HardwareProfile:
    """One profile file (``user_file``: one the user brought, whose uncited figures are ``assumed``)."""
    p = Path(path)
    return parse_profile(read_yaml(p, ProfileError), p, user_file)


def profile_dirs() -> list[Path]:
    """The shipped profiles, plus any directories listed in G4SIM_HARDWARE_DIR (os.pathsep-separated)."""
    extra = [Path(d) for d in os.environ.get("G4SIM_HARDWARE_DIR", "").split(os.pathsep) if d]
    return [PROFILE_DIR, *extra]


@lru_cache(maxsize=None)
def _load_all(dirs: tuple[Path, ...]) -> dict[str, HardwareProfile]:
    profiles: dict[str, HardwareProfile] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            prof = load_profile(path, user_file=d != PROFILE_DIR)  # G4SIM_HARDWARE_DIR's are the user's files
            profiles[prof.name] = prof
    return profiles


# Profiles loaded from files named on the command line (--gpu ./my-device.yaml), by name, for this process: so that
# code that looks devices up by name (sweep's rows, a scenario) finds them.  A user file shadows a profile of its name.
_USER_FILES: dict[str, HardwareProfile] = {}


def load_profiles() -> dict[str, HardwareProfile]:
    profiles = _load_all(tuple(profile_dirs()))
    return {**profiles, **_USER_FILES} if _USER_FILES else profiles


def forget_user_files() -> None:
    """Drop the profiles registered from files named on the command line (tests; a long-lived process)."""
    _USER_FILES.clear()


def _looks_like_path(text: str) -> bool:
    """A profile file rather than a name: it has a folder separator or a .yaml / .yml suffix (names have neither)."""
    seps = {"/", os.sep, os.altsep} - {None}
    return any(sep in text for sep in seps) or text.lower().endswith((".yaml", ".yml")) or text.startswith("~")


def load_user_file(text: str) -> HardwareProfile:
    """The profile in the file ``text`` names (the user's own device), validated and registered under its name.

    A folder is not a device: the error names the profile files in it."""
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
        choices = (f"its profile files: {', '.join(files)}; give one of them (e.g. {Path(text) / files[0]})"
                   if files else "it holds no .yaml profile files")
        raise ProfileError(f"{text} is a folder, not a device: {choices}, or list the folder in G4SIM_HARDWARE_DIR "
                           "and name a profile")
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise ProfileError(f"hardware profile file {text} {what}; give a profile YAML file "
                           "(docs/hardware-profile.md) or a profile name (see `g4sim gpus`)")
    prof = load_profile(path.resolve(), user_file=True)
    _USER_FILES[prof.name] = prof
    return prof


def suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_profile(name: str) -> HardwareProfile:
    """A profile by name (or alias), or from the file a path names (``load_user_file``)."""
    if _looks_like_path(name.strip()):
        return load_user_file(name.strip())
    profiles = load_profiles()
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in profiles:
        if Path(name).is_dir():
            return load_user_file(name)  # a folder: says it is not a device and names its files
        choices = sorted(profiles)
        raise ProfileError(f"unknown GPU/device {name!r}{suggest(key, choices)}; valid: {', '.join(choices)}, "
                           "or a profile file (./my-device.yaml)")
    return profiles[key]


def parse_gpu_spec(text: str) -> tuple[HardwareProfile, int]:
    """'h100-sxm:8' -> (profile, 8); 'rtx4090' -> (profile, 1); './my-gpu.yaml:2' -> (its profile, 2)."""
    if _looks_like_path(text):  # a path may hold ':' itself: only a trailing ':N' of digits is a count
        head, sep, tail = text.rpartition(":")
        name, count = (head, tail) if sep and (tail.isdigit() or tail == "") else (text, "")
        if sep and tail == "":
            raise ProfileError(f"GPU count '' in {text!r} must be a whole number in 1..64")
    else:
        name, _, count = text.partition(":")
    if count and (not count.isdigit() or not 1 <= int(count) <= 64):
        raise ProfileError(f"GPU count {count!r} in {text!r} must be a whole number in 1..64")
    return get_profile(name), int(count or 1)
