"""The exact file a user downloads: a GGUF file or an HF safetensors checkpoint, read header-only.

A ``WeightFile`` is what g4sim plans when it is given a file instead of a variant and a format:
the model the file holds (a ``ModelSpec`` built from the file's own metadata or config.json),
the weight format it plans as, and every tensor with its real stored type and byte size, mapped
to g4sim's component vocabulary (the string values of ``g4sim.analytic.components.Component``)
and to its layer.  A ``Workload`` carries one (``Workload.file``); the engines then price weights
from these tensors instead of from the spec (``g4sim/engines``), and the speed model reads their
bytes (``g4sim/analytic/work.py``).

Readers: ``gguf.read_gguf`` (GGUF v2/v3 header: metadata and tensor table; the tensor data is
never read) and ``safetensors.read_checkpoint`` (config.json plus each shard's 8-byte length and
JSON header).  A file g4sim cannot plan -- not Gemma 4, corrupt, truncated -- raises
``WeightFileError`` (a ValueError) whose one-line message names the file and what is wrong.
No torch import; this package sits at the analytic level of the pipeline (it imports only
``g4sim.spec`` and ``g4sim.units``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from g4sim.spec import VARIANTS, ModelSpec


class WeightFileError(ValueError):
    """A weight file g4sim cannot plan; the message names the file and what is wrong (one line)."""


# The weight components of g4sim's vocabulary (g4sim.analytic.components.Component values).
TOKEN_EMBEDDING, PLE_TABLE, PLE_PROJECTIONS = "token_embedding", "ple_table", "ple_projections"
ATTENTION, MLP, EXPERTS, ROUTER, NORMS = "attention", "mlp", "experts", "router", "norms"
LM_HEAD, VISION_TOWER, AUDIO_TOWER = "lm_head", "vision_tower", "audio_tower"
COMPONENTS = (TOKEN_EMBEDDING, PLE_TABLE, PLE_PROJECTIONS, ATTENTION, MLP, EXPERTS, ROUTER, NORMS, LM_HEAD,
              VISION_TOWER, AUDIO_TOWER)
INPUT_TABLES = (TOKEN_EMBEDDING, PLE_TABLE)  # read a row per token (llama.cpp keeps them in host memory)
TOWERS = (VISION_TOWER, AUDIO_TOWER)


class FileTensor(NamedTuple):
    """One tensor as stored: its name in the file, g4sim component, layer (-1: none), type, bytes."""

    name: str
    component: str
    layer: int
    type: str  # GGML type (Q4_K, F16, ...) or safetensors dtype (BF16, I32, F8_E4M3, ...)
    bytes: int


@dataclass(frozen=True)
class WeightFile:
    """A weight file as g4sim plans it (frozen and hashable: workloads carrying it are cached)."""

    def __hash__(self) -> int:  # hashed on every cached evaluation: hash the tensor table once
        try:
            return self.__dict__["_hash"]
        except KeyError:
            h = hash(tuple(getattr(self, f.name) for f in fields(self) if f.compare))
            object.__setattr__(self, "_hash", h)
            return h

    def __getstate__(self) -> dict:  # a cached hash is only valid in the process that computed it
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    path: str  # as given (a GGUF file, or a checkpoint directory)
    kind: str  # "gguf" or "safetensors"
    label: str  # what the file says it is: "Q4_K_M", "AWQ int4 g128", "bf16", ...
    format: str  # the g4sim weight format it plans as (engine compatibility, compute dtype)
    spec: ModelSpec  # the model the file holds
    tensors: tuple[FileTensor, ...]
    size_bytes: int = field(default=0, compare=False)  # on disk, all parts (header and padding included)
    parts: tuple[str, ...] = field(default=(), compare=False)  # the files read (GGUF splits, safetensors shards)

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.tensors)

    def text_tensors(self) -> tuple[FileTensor, ...]:
        """Tensors of the text decoder (everything but the vision / audio towers)."""
        return tuple(t for t in self.tensors if t.component not in TOWERS)

    def has(self, component: str) -> bool:
        return any(t.component == component for t in self.tensors)

    def by_component(self, tensors: Iterable[FileTensor] | None = None) -> dict[str, int]:
        """Bytes per component, in the vocabulary's order."""
        out: dict[str, int] = {}
        for t in self.tensors if tensors is None else tensors:
            out[t.component] = out.get(t.component, 0) + t.bytes
        return {c: out[c] for c in COMPONENTS if c in out}

    def by_type(self) -> dict[str, int]:
        """Bytes per stored type, largest first."""
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.type] = out.get(t.type, 0) + t.bytes
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def name(self) -> str:
        return Path(self.path).name

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no tensor table)."""
        t = self.spec.text
        return {"path": self.path, "kind": self.kind, "label": self.label, "format": self.format,
                "model": self.spec.name, "layers": t.num_layers, "hidden_size": t.hidden_size,
                "tensors": len(self.tensors), "tensor_bytes": self.total_bytes, "size_bytes": self.size_bytes,
                "parts": list(self.parts)}


def named_spec(spec: ModelSpec, fallback: str, *, variant_towers: bool = False) -> ModelSpec:
    """``spec`` named after the published variant whose text decoder it is exactly (with that variant's
    towers when ``variant_towers``: a text-only GGUF's vision / audio towers ship as a separate
    mmproj file), else named ``fallback``."""
    for name, variant in VARIANTS.items():
        if spec.text == variant.text:
            return variant if variant_towers else replace(spec, name=name)
    return replace(spec, name=fallback)


def _stamp(path: Path) -> tuple:
    """What changes when a file is rewritten: (size, mtime) of the file, or of every file in a folder."""
    try:
        if path.is_dir():
            return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()))
        st = path.stat()
        parts = ()
        if "-of-" in path.name:  # a split GGUF: its other parts too
            prefix = path.name.rsplit("-", 3)[0]
            parts = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                 for p in path.parent.glob(f"{glob.escape(prefix)}-*-of-*{path.suffix}")))
        return (st.st_size, st.st_mtime_ns, parts)
    except OSError:
        return ()


def read_weight_file(path: str | os.PathLike[str]) -> WeightFile:
    """A GGUF file (``*.gguf`` or anything starting with the GGUF magic) or a checkpoint directory."""
    p = Path(path)
    if not p.exists():
        raise WeightFileError(f"{p}: no such file or directory")
    if p.is_dir():
        return read_checkpoint(p)
    if p.name == "config.json" or p.suffix == ".safetensors":
        return read_checkpoint(p.parent)
    return read_gguf(p)


def read_gguf(path: str | os.PathLike[str]) -> WeightFile:
    from g4sim.weightfiles import gguf

    return _cached(gguf.read, str(path), _stamp(Path(path)))


def read_checkpoint(path: str | os.PathLike[str]) -> WeightFile:
    from g4sim.weightfiles import safetensors

    return _cached(safetensors.read, str(path), _stamp(Path(path)))


@lru_cache(maxsize=16)  # plan and --from read the same file more than once; a rewritten file has a new stamp
def _cached(reader, path: str, stamp: tuple) -> WeightFile:
    return reader(path)


__all__ = ["COMPONENTS", "FileTensor", "INPUT_TABLES", "TOWERS", "WeightFile", "WeightFileError", "read_checkpoint",
           "read_gguf", "read_weight_file"]
