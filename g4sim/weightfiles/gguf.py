"""Read a Gemma 4 GGUF file's header: its architecture and every tensor's real type and bytes.

The layout is the GGUF specification (ggml-org/ggml ``docs/gguf.md``, versions 2 and 3): magic,
version, tensor count, metadata count, the metadata key/value pairs, the tensor infos (name,
dimensions, GGML type, offset into the data region), padding to ``general.alignment``, then the
data.  The type ids, block sizes and byte sizes come from the ``gguf`` package
(``GGMLQuantizationType``, ``GGML_QUANT_SIZES``, ``GGUFValueType``, ``LlamaFileType``); a
tensor's bytes are ``n_elements / block_size x type_size``, as the ``gguf`` package's reader and
llama.cpp's ``ggml_nbytes`` compute them.  The file is memory-mapped and only the header is
touched; the tensor data is never read.

Why not ``gguf.GGUFReader``: it builds a numpy view per element of every metadata array, and a
Gemma 4 file carries 262,144 tokens, their scores and types and the BPE merges -- several seconds
(8 s measured for the token list alone) before a plan could start.  This reader walks the same
bytes and keeps only the length of long arrays; the tests use ``gguf.GGUFReader`` as the oracle
for every tensor's type and ``n_bytes``.

The architecture comes from the ``gemma4.*`` keys llama.cpp's converter writes
(``conversion/gemma.py`` Gemma4Model.set_gguf_parameters; read by ``src/llama-model.cpp``):
block_count, embedding_length, feed_forward_length (an array when KV-shared layers are double
wide), attention.head_count, attention.head_count_kv (an array when full layers have their own
KV-head count), attention.key_length (full layers) / key_length_swa (sliding layers),
attention.sliding_window, attention.sliding_window_pattern (one bool per layer, true = sliding),
attention.shared_kv_layers, embedding_length_per_layer_input, expert_count / expert_used_count /
expert_feed_forward_length, context_length, final_logit_softcapping, layer_norm_rms_epsilon and
rope.freq_base(_swa).  From the tensor table: the vocabulary (token_embd's rows), the PLE vocabulary
(per_layer_token_embd's rows), tied embeddings (no ``output.weight``) and attention_k_eq_v (full
layers without ``attn_v``).  Split files (``*-00001-of-0000N.gguf``) are read part by part.
"""

from __future__ import annotations

import mmap
import re
import struct
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType
from gguf.constants import LlamaFileType

from g4sim.spec import FULL, SLIDING, ModelSpec, RopeSpec, SpecError, TextSpec
from g4sim.weightfiles import (
    ATTENTION, EXPERTS, LM_HEAD, MLP, NORMS, PLE_PROJECTIONS, PLE_TABLE, ROUTER, TOKEN_EMBEDDING, FileTensor,
    WeightFile, WeightFileError, named_spec,
)

ARCH = "gemma4"
KEEP_ARRAY = 4096  # longer metadata arrays (token lists, scores, merges) keep only their length
MAX_DIMS = 4  # GGML_MAX_DIMS
_SCALAR = {GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H", GGUFValueType.INT16: "h",
           GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i", GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?",
           GGUFValueType.UINT64: "Q", GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d"}

# llama_ftype -> the g4sim format it plans as (the ftypes g4sim prices natively) ...
_FTYPE_FORMAT = {0: "fp32", 1: "fp16", 32: "bf16", 7: "q8_0", 18: "q6_k", 17: "q5_k_m", 8: "q5_0", 15: "q4_k_m",
                 14: "q4_k_s", 30: "iq4_xs", 2: "q4_0", 12: "q3_k_m", 10: "q2_k"}
# ... and, for any other mix, the g4sim format of the GGML type holding most of the bytes
_TYPE_FORMAT = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "Q8_0": "q8_0", "Q6_K": "q6_k", "Q5_K": "q5_k_m",
                "Q5_0": "q5_0", "Q5_1": "q5_0", "Q4_K": "q4_k_m", "IQ4_XS": "iq4_xs", "IQ4_NL": "iq4_xs",
                "Q4_0": "q4_0", "Q4_1": "q4_0", "MXFP4": "q4_0", "NVFP4": "q4_0", "Q3_K": "q3_k_m", "IQ3_S": "q3_k_m",
                "IQ3_XXS": "q3_k_m", "Q2_K": "q2_k", "IQ2_XXS": "q2_k", "IQ2_XS": "q2_k", "IQ2_S": "q2_k",
                "IQ1_S": "q2_k", "IQ1_M": "q2_k", "TQ1_0": "q2_k", "TQ2_0": "q2_k", "Q1_0": "q2_k"}

# GGUF tensor name (after ``blk.N.``) -> component; the names of llama.cpp's gemma4 loader
# (src/llama-arch.cpp, src/models/gemma4.cpp) as the converter writes them (g4sim.analytic.tensors).
_BLOCK = {
    "attn_q": ATTENTION, "attn_k": ATTENTION, "attn_v": ATTENTION, "attn_output": ATTENTION,
    "attn_q_norm": ATTENTION, "attn_k_norm": ATTENTION,
    "ffn_gate": MLP, "ffn_up": MLP, "ffn_down": MLP,
    "ffn_gate_up_exps": EXPERTS, "ffn_gate_exps": EXPERTS, "ffn_up_exps": EXPERTS, "ffn_down_exps": EXPERTS,
    "ffn_gate_inp": ROUTER,
    "inp_gate": PLE_PROJECTIONS, "proj": PLE_PROJECTIONS,
    "attn_norm": NORMS, "post_attention_norm": NORMS, "ffn_norm": NORMS, "post_ffw_norm": NORMS,
    "pre_ffw_norm_2": NORMS, "post_ffw_norm_1": NORMS, "post_ffw_norm_2": NORMS, "post_norm": NORMS,
    "layer_output_scale": NORMS,
}
_GLOBAL = {"token_embd": TOKEN_EMBEDDING, "per_layer_token_embd": PLE_TABLE, "per_layer_model_proj": PLE_PROJECTIONS,
           "per_layer_proj_norm": PLE_PROJECTIONS, "output_norm": NORMS, "output": LM_HEAD, "rope_freqs": ATTENTION}
_BLK = re.compile(r"^blk\.(\d+)\.([A-Za-z0-9_]+)\.(.+)$")
_SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")


class _Skipped:
    """A long metadata array: only its length is kept."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class _Header:
    """Metadata and tensor table of one GGUF file (one part of a split file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open("rb") as f:
                self.size = f.seek(0, 2)
                if self.size == 0:
                    raise WeightFileError(f"{path}: empty file, not a GGUF file")
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                    self._parse(buf)
        except OSError as exc:
            raise WeightFileError(f"{path}: cannot read it ({exc.strerror or exc.__class__.__name__})") from None

    # ---- low level -----------------------------------------------------------------------
    def _fail(self, what: str) -> WeightFileError:
        return WeightFileError(f"{self.path}: {what}")

    def _take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise self._fail(f"truncated header (ends at byte {len(self.buf):,}, reading byte {self.pos + size:,})")
        out = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def _u32(self) -> int:
        return self._take("I")[0]

    def _u64(self) -> int:
        return self._take("Q")[0]

    def _string(self) -> str:
        n = self._u64()
        if n > len(self.buf) - self.pos:
            raise self._fail(f"truncated header (a string of {n:,} bytes at byte {self.pos:,})")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(f"corrupt header: a string at byte {self.pos - n:,} is not UTF-8") from None

    def _value(self, vtype: int, depth: int = 0) -> Any:
        try:
            vt = GGUFValueType(vtype)
        except ValueError:
            raise self._fail(f"corrupt header: unknown metadata value type {vtype} at byte {self.pos:,}") from None
        if vt == GGUFValueType.STRING:
            return self._string()
        if vt in _SCALAR:
            return self._take(_SCALAR[vt])[0]
        if depth > 2:
            raise self._fail("corrupt header: metadata arrays nested too deep")
        itype, n = self._u32(), self._u64()
        if itype == GGUFValueType.STRING and n > KEEP_ARRAY:  # token lists, merges: walk the lengths only
            buf, pos, end, order = self.buf, self.pos, len(self.buf), self.order + "Q"
            for _ in range(n):
                if pos + 8 > end:
                    raise self._fail(f"truncated header (inside a {n:,}-string array)")
                pos += 8 + struct.unpack_from(order, buf, pos)[0]
            if pos > end:
                raise self._fail(f"truncated header (inside a {n:,}-string array)")
            self.pos = pos
            return _Skipped(n)
        if itype in _SCALAR.keys() and itype != GGUFValueType.STRING:
            fmt = _SCALAR[GGUFValueType(itype)]
            size = struct.calcsize(fmt) * n
            if self.pos + size > len(self.buf):
                raise self._fail(f"truncated header (an array of {n:,} values at byte {self.pos:,})")
            if n > KEEP_ARRAY:
                self.pos += size
                return _Skipped(n)
            return list(self._take(f"{n}{fmt}"))
        if n > len(self.buf) - self.pos:
            raise self._fail(f"corrupt header: an array of {n:,} entries at byte {self.pos:,}")
        return [self._value(itype, depth + 1) for _ in range(n)]

    # ---- the header -------------------------------------------------------------------------
    def _parse(self, buf) -> None:
        self.buf, self.pos, self.order = buf, 0, "<"
        if len(buf) < 4 or struct.unpack_from("<I", buf, 0)[0] != GGUF_MAGIC:
            raise self._fail("not a GGUF file (no GGUF magic at its start)")
        self.pos = 4
        version = self._u32()
        if version & 0xFFFF == 0:  # written on a machine of the other byte order
            self.order, self.pos = ">", 4
            version = self._u32()
        if version not in (2, 3):
            raise self._fail(f"GGUF version {version}; g4sim reads versions 2 and 3")
        n_tensors, n_kv = self._u64(), self._u64()
        if n_tensors > len(buf) or n_kv > len(buf):
            raise self._fail(f"corrupt header: {n_tensors:,} tensors and {n_kv:,} metadata keys in {len(buf):,} bytes")
        self.meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string()
            if key in self.meta:
                raise self._fail(f"corrupt header: metadata key {key!r} appears twice")
            self.meta[key] = self._value(self._u32())
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._u32()
            if not 1 <= n_dims <= MAX_DIMS:
                raise self._fail(f"corrupt tensor info: {name!r} has {n_dims} dimensions (GGUF allows 1..{MAX_DIMS})")
            dims = self._take(f"{n_dims}Q")
            type_id, offset = self._u32(), self._u64()
            try:
                ggml_type = GGMLQuantizationType(type_id)
            except ValueError:
                raise self._fail(f"corrupt tensor info: {name!r} has unknown GGML type id {type_id}") from None
            if ggml_type not in GGML_QUANT_SIZES:
                raise self._fail(f"tensor {name!r}: GGML type {ggml_type.name} has no known block size")
            infos.append((name, dims, ggml_type, offset))
        alignment = self.meta.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise self._fail(f"corrupt header: general.alignment = {alignment!r} is not a power of two")
        data_start = -(-self.pos // alignment) * alignment
        self.tensors: list[tuple[str, tuple[int, ...], str, int]] = []
        seen: set[str] = set()
        for name, dims, ggml_type, offset in infos:
            if name in seen:
                raise self._fail(f"corrupt tensor table: tensor {name!r} appears twice")
            seen.add(name)
            block, type_size = GGML_QUANT_SIZES[ggml_type]
            if any(d == 0 for d in dims) or dims[0] % block:
                raise self._fail(f"corrupt tensor info: {name!r} has shape {list(dims)}, not whole {ggml_type.name} "
                                 f"blocks of {block}")
            n = 1
            for d in dims:
                n *= d
            nbytes = n // block * type_size
            if offset % alignment:
                raise self._fail(f"corrupt tensor info: {name!r} starts at offset {offset:,}, not a multiple of the "
                                 f"alignment {alignment}")
            end = data_start + offset + nbytes
            if end > self.size:
                raise self._fail(f"truncated: tensor {name!r} ends at byte {end:,} but the file has {self.size:,} bytes")
            self.tensors.append((name, tuple(dims), ggml_type.name, nbytes))


def _parts(path: Path, first: _Header) -> list[_Header]:
    """All parts of a split file (llama.cpp's gguf-split naming), or just this one."""
    count = first.meta.get("split.count", 1)
    if not isinstance(count, int) or count <= 1:
        return [first]
    m = _SPLIT.match(path.name)
    if not m or int(m.group(2)) != 1 or int(m.group(3)) != count:
        raise WeightFileError(f"{path}: first part of a {count}-part split GGUF, named other than "
                              f"…-00001-of-{count:05d}.gguf (llama.cpp's gguf-split names), so its other parts "
                              "cannot be found")
    out = [first]
    for i in range(2, count + 1):
        part = path.with_name(f"{m.group(1)}-{i:05d}-of-{count:05d}.gguf")
        if not part.is_file():
            raise WeightFileError(f"{path}: part {part.name} of this split GGUF is missing")
        out.append(_Header(part))
    return out


# ---- metadata -> spec ----------------------------------------------------------------------

def _key(h: _Header, key: str, default: Any = ...) -> Any:
    value = h.meta.get(f"{ARCH}.{key}", default)
    if value is ...:
        raise WeightFileError(f"{h.path}: metadata key {ARCH}.{key} is missing (every Gemma 4 GGUF states it)")
    return value


def _int(h: _Header, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WeightFileError(f"{h.path}: metadata key {ARCH}.{key} = {value!r} is not a whole number")
    return value


def _per_layer(h: _Header, key: str, value: Any, n: int) -> list[int]:
    """A per-layer value written as one number or as an array of one per layer."""
    if isinstance(value, list):
        if len(value) != n:
            raise WeightFileError(f"{h.path}: metadata key {ARCH}.{key} has {len(value)} entries for {n} layers")
        return [_int(h, key, v) for v in value]
    return [_int(h, key, value)] * n


def _float(value: Any) -> float:
    """A float32 metadata value as the decimal it was written from (1e-06, not 9.99999997e-07)."""
    import numpy as np

    return float(str(np.float32(value)))


def _uniform(h: _Header, key: str, values: list[int]) -> int:
    if len(set(values)) != 1:
        raise WeightFileError(f"{h.path}: metadata key {ARCH}.{key} = {values} varies in a way Gemma 4 does not")
    return values[0]


def build_spec(h: _Header, shapes: dict[str, tuple[int, ...]]) -> ModelSpec:
    """The ModelSpec a gemma4 GGUF's metadata and tensor table describe."""
    L = _int(h, "block_count", _key(h, "block_count"))
    if L < 1:
        raise WeightFileError(f"{h.path}: metadata key {ARCH}.block_count = 0")
    pattern = _key(h, "attention.sliding_window_pattern")
    if not isinstance(pattern, list) or len(pattern) != L or not all(isinstance(b, bool) for b in pattern):
        raise WeightFileError(f"{h.path}: metadata key {ARCH}.attention.sliding_window_pattern must be {L} booleans")
    types = tuple(SLIDING if b else FULL for b in pattern)
    heads = _uniform(h, "attention.head_count", _per_layer(h, "attention.head_count", _key(h, "attention.head_count"), L))
    kv = _per_layer(h, "attention.head_count_kv", _key(h, "attention.head_count_kv"), L)
    kv_sliding = _uniform(h, "attention.head_count_kv", [k for k, t in zip(kv, types) if t == SLIDING] or kv[:1])
    kv_full = _uniform(h, "attention.head_count_kv", [k for k, t in zip(kv, types) if t == FULL] or kv[:1])
    shared = _int(h, "attention.shared_kv_layers", _key(h, "attention.shared_kv_layers", 0))
    first_shared = L - shared
    has_v = {int(m.group(1)) for m in map(_BLK.match, shapes) if m and m.group(2) == "attn_v"}
    full_owners = [i for i in range(min(first_shared, L)) if types[i] == FULL]
    k_eq_v = bool(full_owners) and not any(i in has_v for i in full_owners)
    if kv_full != kv_sliding and not k_eq_v:
        raise WeightFileError(f"{h.path}: full layers have {kv_full} KV heads and sliding layers {kv_sliding}, but "
                              "full layers also have attn_v (g4sim models separate full-layer KV heads only with "
                              "attention_k_eq_v)")
    ff = _per_layer(h, "feed_forward_length", _key(h, "feed_forward_length"), L)
    double = any(ff[i] != ff[0] for i in range(L))
    key_length = _int(h, "attention.key_length", _key(h, "attention.key_length"))
    ple = _int(h, "embedding_length_per_layer_input", _key(h, "embedding_length_per_layer_input", 0))
    experts = _int(h, "expert_count", _key(h, "expert_count", 0))
    if "token_embd.weight" not in shapes:
        raise WeightFileError(f"{h.path}: no token_embd.weight tensor (every Gemma 4 GGUF holds one)")
    vocab = shapes["token_embd.weight"][-1] if len(shapes["token_embd.weight"]) == 2 else 0
    ple_shape = shapes.get("per_layer_token_embd.weight")
    softcap = _key(h, "final_logit_softcapping", None)
    try:
        text = TextSpec(
            hidden_size=_int(h, "embedding_length", _key(h, "embedding_length")), num_layers=L, layer_types=types,
            sliding_window=_int(h, "attention.sliding_window", _key(h, "attention.sliding_window")),
            num_heads=heads, num_kv_heads=kv_sliding, num_global_kv_heads=kv_full if kv_full != kv_sliding else None,
            head_dim=_int(h, "attention.key_length_swa", _key(h, "attention.key_length_swa", key_length)),
            global_head_dim=key_length, attention_k_eq_v=k_eq_v, num_kv_shared_layers=shared,
            intermediate_size=ff[0], use_double_wide_mlp=double, vocab_size=vocab,
            hidden_size_per_layer_input=ple,
            vocab_size_per_layer_input=ple_shape[-1] if ple and ple_shape else TextSpec.vocab_size_per_layer_input,
            enable_moe_block=experts > 0, num_experts=experts,
            top_k_experts=_int(h, "expert_used_count", _key(h, "expert_used_count", 0)),
            moe_intermediate_size=_int(h, "expert_feed_forward_length", _key(h, "expert_feed_forward_length", 0)),
            max_position_embeddings=_int(h, "context_length", _key(h, "context_length")),
            final_logit_softcapping=_float(softcap) if softcap is not None else None,
            rms_norm_eps=_float(_key(h, "attention.layer_norm_rms_epsilon", 1e-6)),
            tie_word_embeddings="output.weight" not in shapes,
            rope_sliding=RopeSpec(theta=_float(_key(h, "rope.freq_base_swa", 10_000.0))),
            rope_full=RopeSpec(theta=_float(_key(h, "rope.freq_base", 1_000_000.0)), partial_rotary_factor=0.25,
                               rope_type="proportional"),
        )
    except SpecError as exc:
        raise WeightFileError(f"{h.path}: the metadata does not describe a valid Gemma 4 decoder ({exc})") from None
    if vocab < 1:
        raise WeightFileError(f"{h.path}: token_embd.weight has shape {list(shapes['token_embd.weight'])}, not "
                              "[hidden, vocab]")
    wrong = [i for i in range(L) if ff[i] != text.mlp_intermediate(i)]
    if wrong:
        raise WeightFileError(f"{h.path}: feed_forward_length of layer {wrong[0]} is {ff[wrong[0]]}; Gemma 4 widens "
                              "only its KV-shared layers, by 2")
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", h.path.name.removesuffix(".gguf"))
    return named_spec(ModelSpec(name=stem, text=text), stem, variant_towers=True)


def component_of(name: str, t: TextSpec) -> tuple[str, int]:
    """(component, layer) of a GGUF tensor name; rope_freqs goes with the first full layer, as llama.cpp
    creates it (g4sim.analytic.tensors)."""
    m = _BLK.match(name)
    if m:
        layer, base, rest = int(m.group(1)), m.group(2), m.group(3)
        if base in ("ffn_gate_inp", "ffn_down_exps") and rest == "scale":
            return ROUTER, layer  # router.scale and router.per_expert_scale
        if base in _BLOCK:
            return _BLOCK[base], layer
        if "exps" in base:
            return EXPERTS, layer
        if base.startswith("attn"):
            return ATTENTION, layer
        if "norm" in base or "scale" in base:
            return NORMS, layer
        if base.startswith("ffn"):
            return MLP, layer
        return "", layer
    base = name.split(".", 1)[0]
    if base == "rope_freqs":
        return ATTENTION, t.layer_types.index(FULL) if FULL in t.layer_types else -1
    return _GLOBAL.get(base, ""), -1


def _label_and_format(h: _Header, tensors: list[FileTensor]) -> tuple[str, str]:
    ftype = h.meta.get("general.file_type")
    by_type: dict[str, int] = {}
    for t in tensors:
        if t.component not in (NORMS, ROUTER):
            by_type[t.type] = by_type.get(t.type, 0) + t.bytes
    dominant = max(by_type, key=by_type.get) if by_type else "F16"
    try:
        label = LlamaFileType(ftype).name.removeprefix("MOSTLY_").removeprefix("ALL_") if ftype is not None else ""
    except ValueError:
        label = f"file type {ftype}"
    fmt = _FTYPE_FORMAT.get(ftype) if isinstance(ftype, int) else None
    return label or f"{dominant} (no general.file_type)", fmt or _TYPE_FORMAT.get(dominant, "q4_0")


def read(path: str) -> WeightFile:
    """The WeightFile of a Gemma 4 GGUF (its first part when split); WeightFileError when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise WeightFileError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    first = _Header(p)
    count, no = first.meta.get("split.count", 1), first.meta.get("split.no", 0)
    if isinstance(no, int) and no > 0:
        raise WeightFileError(f"{p}: part {no + 1} of a {count}-part split GGUF; give its first part "
                              f"(…-00001-of-{count:05d}.gguf)")
    arch = first.meta.get("general.architecture")
    if arch != ARCH:
        raise WeightFileError(f"{p}: general.architecture is {arch!r}, not {ARCH!r}; g4sim plans Gemma 4 files")
    parts = _parts(p, first)
    shapes: dict[str, tuple[int, ...]] = {}
    raw: list[tuple[str, str, int]] = []
    for part in parts:
        for name, dims, type_name, nbytes in part.tensors:
            if name in shapes:
                raise WeightFileError(f"{part.path}: tensor {name!r} is also in another part of the split file")
            shapes[name] = dims
            raw.append((name, type_name, nbytes))
    spec = build_spec(first, shapes)
    t = spec.text
    tensors = []
    for name, type_name, nbytes in raw:
        component, layer = component_of(name, t)
        if not component:
            raise WeightFileError(f"{p}: tensor {name!r} is not one g4sim can place in Gemma 4 (no component for it)")
        if layer >= t.num_layers:
            raise WeightFileError(f"{p}: tensor {name!r} is in block {layer}, but block_count is {t.num_layers}")
        tensors.append(FileTensor(name, component, layer, type_name, nbytes))
    label, fmt = _label_and_format(first, tensors)
    return WeightFile(str(path), "gguf", label, fmt, spec, tuple(tensors), sum(x.size for x in parts),
                      tuple(str(x.path) for x in parts))
