"""Read an HF checkpoint directory header-only: config.json, the quantization it states, and every tensor.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(``{"name": {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}``,
offsets relative to the end of the header), then the data (huggingface/safetensors, "Format").  A
tensor's stored bytes are ``end - begin``; they are checked against shape x dtype size and against
the file's length (a shorter file is truncated).  No tensor data is read, and the ``safetensors``
package is not needed.  Shards: those ``model.safetensors.index.json`` names, else every
``*.safetensors`` in the directory.

The weight format comes from ``quantization_config`` in config.json (or ModelOpt's
``hf_quant_config.json``), as the producers write it and vLLM reads it:

* AutoAWQ / GPTQ: ``{"quant_method": "awq" | "gptq", "bits": 4, "group_size": 128, ...}``; tensors
  ``qweight`` (int32, eight 4-bit values each), ``qzeros`` (int32), ``scales`` (fp16), GPTQ's ``g_idx``
  -> ``int4-g<group_size>`` (``int8`` for 8 bits);
* llm-compressor ``compressed-tensors``: ``config_groups.<group>.weights`` with ``type`` int/float,
  ``num_bits``, ``strategy`` and ``group_size``, and a ``format`` (``pack-quantized``,
  ``float-quantized``, ``nvfp4-pack-quantized``, ...): int 4-bit -> ``int4-g<group_size>``, int
  8-bit -> ``int8``, float 8-bit -> ``fp8``, float 4-bit -> ``nvfp4`` (groups of 16) or ``mxfp4``;
* NVIDIA ModelOpt: ``{"quant_method": "modelopt", "quant_algo": "NVFP4" | "FP8" | ...}`` -> ``nvfp4`` /
  ``fp8`` (tensors ``weight`` as packed uint8, ``weight_scale`` fp8 per 16, ``weight_scale_2``);
* ``{"quant_method": "fp8"}`` (block-wise FP8) -> ``fp8``; ``{"quant_method": "mxfp4"}`` -> ``mxfp4``.
Without one, the checkpoint's dtype (``torch_dtype`` / ``dtype``, else its weights') gives bf16,
fp16 or fp32.  Whatever the label, the bytes planned are the tensors' own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from g4sim.spec import SpecError, load_config
from g4sim.weightfiles import (
    ATTENTION, AUDIO_TOWER, EXPERTS, LM_HEAD, MLP, NORMS, PLE_PROJECTIONS, PLE_TABLE, ROUTER, TOKEN_EMBEDDING, TOWERS,
    VISION_TOWER, FileTensor, WeightFile, WeightFileError, named_spec,
)

MAX_HEADER = 100_000_000  # safetensors refuses larger headers (MAX_HEADER_SIZE)
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
_FLOAT = {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}
_DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
_PREFIXES = ("model.language_model.", "language_model.model.", "language_model.", "model.", "")
_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
METHODS = ("awq", "gptq", "compressed-tensors", "modelopt", "fp8", "mxfp4")


def _fail(where: Path, what: str) -> WeightFileError:
    return WeightFileError(f"{where}: {what}")


# ---- safetensors headers -------------------------------------------------------------------

def read_header(path: Path) -> tuple[list[tuple[str, str, int]], int]:
    """([(name, dtype, bytes)], file size) of one safetensors file, from its header alone."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _fail(path, f"truncated: {size} bytes, shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise _fail(path, f"truncated: the header says it is {n:,} bytes long but the file has {size:,} bytes")
            if n > MAX_HEADER:
                raise _fail(path, f"corrupt header: {n:,} bytes (safetensors allows {MAX_HEADER:,})")
            raw = f.read(n)
    except OSError as exc:
        raise _fail(path, f"cannot read it ({exc.strerror or exc.__class__.__name__})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _fail(path, "corrupt header: not JSON (not a safetensors file?)") from None
    if not isinstance(header, dict):
        raise _fail(path, "corrupt header: not a JSON object")
    data_size = size - 8 - n
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            ok = (isinstance(dtype, str) and isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
                  and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _fail(path, f"corrupt header: tensor {name!r} needs dtype, shape and data_offsets [begin, end]")
        if end > data_size:
            raise _fail(path, f"truncated: tensor {name!r} ends at byte {8 + n + end:,} but the file has {size:,} bytes")
        if dtype in DTYPE_BYTES:
            count = 1
            for d in shape:
                count *= d
            if count * DTYPE_BYTES[dtype] != end - begin:
                raise _fail(path, f"corrupt header: tensor {name!r} is {dtype} {shape} ({count * DTYPE_BYTES[dtype]:,} "
                                  f"bytes) but its data_offsets span {end - begin:,} bytes")
        out.append((name, dtype, end - begin))
    return out, size


def shards(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise _fail(index, "corrupt: expected a JSON object with a weight_map") from None
        missing = [f for f in files if not (directory / f).is_file()]
        if missing:
            raise _fail(directory, f"shard {missing[0]} named in model.safetensors.index.json is missing")
        return [directory / f for f in files]
    found = sorted(directory.glob("*.safetensors"))
    if not found:
        raise _fail(directory, "no *.safetensors files (a checkpoint directory holds config.json and its weights)")
    return found


# ---- names -> components ---------------------------------------------------------------------

def component_of(name: str) -> tuple[str, int]:
    """(component, layer) of an HF Gemma 4 tensor name ("" when it is not one g4sim knows)."""
    if name.startswith("lm_head."):
        return LM_HEAD, -1
    for prefix in _PREFIXES:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if rest.startswith(("vision_tower.", "embed_vision.", "vision_model.", "multi_modal_projector.")):
            return VISION_TOWER, -1
        if rest.startswith(("audio_tower.", "embed_audio.")):
            return AUDIO_TOWER, -1
        m = _LAYER.match(rest)
        if m:
            layer, sub = int(m.group(1)), m.group(2)
            if sub.startswith("experts.") or ".experts." in sub:
                return EXPERTS, layer
            if sub.startswith("router."):
                return ROUTER, layer
            if sub.startswith("self_attn."):
                return ATTENTION, layer
            if sub.startswith("mlp."):
                return MLP, layer
            if sub.startswith(("per_layer_input_gate.", "per_layer_projection.")):
                return PLE_PROJECTIONS, layer
            if "norm" in sub or sub.startswith("layer_scalar"):
                return NORMS, layer
            return "", layer
        if rest.startswith("embed_tokens_per_layer."):
            return PLE_TABLE, -1
        if rest.startswith("embed_tokens."):
            return TOKEN_EMBEDDING, -1
        if rest.startswith(("per_layer_model_projection.", "per_layer_projection_norm.")):
            return PLE_PROJECTIONS, -1
        if rest.startswith("norm."):
            return NORMS, -1
    return "", -1


# ---- quantization_config -> format ------------------------------------------------------------

def _positive_int(where: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(where, f"quantization_config {key} = {value!r} is not a positive whole number")
    return value


def quantization(cfg: dict[str, Any], directory: Path) -> tuple[str, str] | None:
    """(label, g4sim format) the checkpoint's quantization_config states; None when it states none."""
    where = directory / "config.json"
    q = cfg.get("quantization_config")
    if q is None and isinstance(cfg.get("text_config"), dict):
        q = cfg["text_config"].get("quantization_config")
    if q is None and (directory / "hf_quant_config.json").is_file():  # ModelOpt's own file
        where = directory / "hf_quant_config.json"
        try:
            q = {"quant_method": "modelopt", **json.loads(where.read_text()).get("quantization", {})}
        except (ValueError, AttributeError, UnicodeDecodeError):
            raise _fail(where, "corrupt: not a JSON object with a quantization entry") from None
    if q is None:
        return None
    if not isinstance(q, dict):
        raise _fail(where, "quantization_config must be a JSON object")
    method = str(q.get("quant_method", "")).lower()
    if method in ("awq", "gptq"):
        bits = q.get("bits", q.get("w_bit"))
        group = q.get("group_size", q.get("q_group_size"))
        name = method.upper()
        if bits == 4:
            group = _positive_int(where, "group_size", group)
            return f"{name} int4 g{group}" + (f" ({q['version']})" if q.get("version") else ""), f"int4-g{group}"
        if bits == 8:
            return f"{name} int8", "int8"
        raise _fail(where, f"{name} with bits = {bits!r}; g4sim plans 4- and 8-bit {name} checkpoints")
    if method == "compressed-tensors":
        groups = q.get("config_groups") or {}
        schemes = [g["weights"] for g in groups.values() if isinstance(g, dict) and isinstance(g.get("weights"), dict)] \
            if isinstance(groups, dict) else []
        if not schemes:
            raise _fail(where, "compressed-tensors quantization_config has no config_groups.*.weights")
        w = schemes[0]
        kind, bits, group = w.get("type"), w.get("num_bits"), w.get("group_size")
        fmt_name = q.get("format") or "compressed"
        label = f"compressed-tensors {fmt_name} {kind}{bits}" + (f" g{group}" if group else "") + (
            f" (+{len(schemes) - 1} more schemes)" if len(schemes) > 1 else "")
        if kind == "int" and bits == 4:
            return label, f"int4-g{_positive_int(where, 'group_size', group) if group else 128}"
        if kind == "int" and bits == 8:
            return label, "int8"
        if kind == "float" and bits == 8:
            return label, "fp8"
        if kind == "float" and bits == 4:
            return label, "nvfp4" if group in (None, 16) or "nvfp4" in str(fmt_name) else "mxfp4"
        raise _fail(where, f"compressed-tensors weights of type {kind!r} with {bits!r} bits; g4sim plans int4, int8, "
                           "fp8 and fp4 schemes")
    if method in ("modelopt", "modelopt_fp4"):
        algo = str(q.get("quant_algo", "")).upper()
        if algo == "MIXED_PRECISION":
            layers = q.get("quantized_layers") or {}
            algos = {str(v.get("quant_algo", "")).upper() for v in layers.values() if isinstance(v, dict)}
            algo = "NVFP4" if any("NVFP4" in a for a in algos) else "FP8" if "FP8" in algos else algo
            label = f"ModelOpt mixed precision ({', '.join(sorted(algos))})"
        else:
            label = f"ModelOpt {algo}"
        if "NVFP4" in algo:
            return label, "nvfp4"
        if "FP8" in algo:
            return label, "fp8"
        raise _fail(where, f"ModelOpt quant_algo {algo!r}; g4sim plans NVFP4 and FP8 checkpoints")
    if method == "fp8":
        block = q.get("weight_block_size")
        return "FP8" + (f" (blocks {block[0]}x{block[1]})" if isinstance(block, list) and len(block) == 2 else ""), "fp8"
    if method == "mxfp4":
        return "MXFP4", "mxfp4"
    raise _fail(where, f"quantization_config quant_method {method!r} is not one g4sim plans; it reads: "
                       + ", ".join(METHODS))


def float_format(cfg: dict[str, Any], tensors: list[FileTensor]) -> str:
    """bf16 / fp16 / fp32: the dtype config.json states, else the one most of the text weights have."""
    for c in (cfg, cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}):
        for key in ("torch_dtype", "dtype"):
            if str(c.get(key)).lower() in _DTYPE_NAMES:
                return _DTYPE_NAMES[str(c[key]).lower()]
    by: dict[str, int] = {}
    for t in tensors:
        if t.type in _FLOAT and t.component not in TOWERS:
            by[t.type] = by.get(t.type, 0) + t.bytes
    return _FLOAT[max(by, key=by.get)] if by else "bf16"


# ---- the checkpoint ----------------------------------------------------------------------------

def read(path: str) -> WeightFile:
    """The WeightFile of an HF Gemma 4 checkpoint directory; WeightFileError when it is not one."""
    directory = Path(path)
    if not directory.is_dir():
        raise _fail(directory, "no such directory" if not directory.exists() else "not a directory")
    try:
        spec = load_config(directory)
    except SpecError as exc:
        msg = str(exc)
        raise WeightFileError(msg if str(directory) in msg else f"{directory}: {msg}") from None
    cfg = spec.raw_config
    arch = cfg.get("architectures") or []
    if isinstance(arch, list) and arch and not any(str(a).startswith("Gemma4") for a in arch):
        raise _fail(directory, f"architecture {arch[0]!r} is not Gemma 4; g4sim plans Gemma4ForCausalLM / "
                               "Gemma4ForConditionalGeneration checkpoints")
    spec = named_spec(spec, directory.resolve().name)
    t = spec.text
    tensors: list[FileTensor] = []
    seen: set[str] = set()
    size = 0
    files = shards(directory)
    for shard in files:
        entries, n = read_header(shard)
        size += n
        for name, dtype, nbytes in entries:
            if name in seen:
                raise _fail(shard, f"tensor {name!r} is also in another shard")
            seen.add(name)
            component, layer = component_of(name)
            if not component:
                raise _fail(shard, f"tensor {name!r} is not one g4sim can place in Gemma 4 (no component for it)")
            if layer >= t.num_layers:
                raise _fail(shard, f"tensor {name!r} is in layer {layer}, but config.json has {t.num_layers} layers")
            tensors.append(FileTensor(name, component, layer, dtype, nbytes))
    if not any(x.component == TOKEN_EMBEDDING for x in tensors):
        raise _fail(directory, "no embed_tokens tensor: not a Gemma 4 checkpoint g4sim can plan")
    tensors.sort(key=lambda x: (x.layer, x.name))  # shards interleave layers: list them model order first
    stated = quantization(cfg, directory)
    label, fmt = stated if stated else (None, float_format(cfg, tensors))
    return WeightFile(str(path), "safetensors", label or fmt.upper(), fmt, spec, tuple(tensors), size,
                      tuple(str(s) for s in files))
