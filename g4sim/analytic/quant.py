"""Weight and KV-cache storage formats: bytes per tensor, and which tensors keep higher precision.

GGML block sizes and type sizes come from the ``gguf`` package (``GGML_QUANT_SIZES``), never typed in.
The GGUF formats choose a type per tensor the way llama.cpp's quantizer does when it quantizes a
converted (F16, norms F32) checkpoint without an importance matrix -- ``src/llama-quant.cpp``
(ggml-org/llama.cpp@0c1e57098, vendored by llama-cpp-python 0.3.36), ``tensor_allows_quantization``,
``llama_tensor_get_type_impl`` and ``tensor_type_fallback``:

* never quantized, so they keep the converted file's type: 1-D tensors (norms, ``*.scale``,
  ``rope_freqs``, ``layer_output_scale``) and the MoE router ``ffn_gate_inp`` stay F32
  (``ggml_n_dims(tensor) < 2``, ``ffn_gate_inp.weight``); ``per_layer_model_proj`` stays F16
  ("these are not too big so keep them as it is");
* tied embeddings: ``token_embd`` *and* ``per_layer_token_embd`` (both match
  ``tensor_name_match_token_embd``, category TOKEN_EMBD) are quantized as the output tensor while no
  ``output.weight`` exists (``has_tied_embeddings``): Q8_0 if the row is not whole blocks of the
  default type, else Q6_K unless the default is Q8_0; an untied ``output.weight`` always takes that
  rule and the untied ``token_embd`` the default type;
* ``attn_v`` (counter ``i_attention_wv`` over the attn_v tensors, sorted by layer): Q4_K_M/Q5_K_M ->
  Q6_K on ``use_more_bits(i, n_attention_wv)``; Q4_K_S -> Q5_K for i < 4; Q3_K_M -> Q5_K for i < 2 else
  Q4_K; Q2_K -> Q4_K when n_gqa >= 4 else Q3_K; IQ4_XS -> Q5_K when n_gqa >= 4;
* ``ffn_down``: ``layer_info`` gives (layer, n_layer) with n_layer = ``n_ffn_down`` =
  ``hparams.n_layer_all`` -- the number of layers, not of ffn_down tensors -- and the layer is the
  counter ``i_ffn_down`` (dense models: one ffn_down per layer) or, with experts, parsed from the
  name ``blk.N.``, so a MoE layer's dense ``ffn_down`` and ``ffn_down_exps`` share its layer.
  Q4_K_M/Q5_K_M -> Q6_K on ``use_more_bits(layer, n_layer)``; Q4_K_S and IQ4_XS -> Q5_K for
  layer < n_layer/8; Q3_K_M -> Q5_K for layer < n_layer/16 else Q4_K; Q2_K -> Q3_K;
* ``attn_output``: Q2_K -> Q3_K, Q3_K_M -> Q4_K (models with other than 8 experts);
* a row length not divisible by the chosen type's block falls back (Q4_K->Q5_0, Q5_K->Q5_1,
  Q6_K->Q8_0, Q2_K/Q3_K->Q4_0, IQ4_XS->IQ4_NL; F16 if that still does not fit): Gemma 4's 2112- and
  704-wide FFNs hit this.
Every figure is checked against llama.cpp's own dry-run quantizer on header-only full-depth files of
all four variants (scripts/llamacpp_quantize_check.py, tests/test_llamacpp_quantize.py).  A GGUF
file also stores tensors that are not model parameters (``Tensor.parameter`` False: ``rope_freqs``,
``layer_output_scale``); they cost bytes in GGUF formats only.

``litertlm`` is the file LiteRT-LM loads as litert-community ships it (gemma-4-E2B-it.litertlm, ...): one
bundle of the decoder's prefill / decode graphs, the embedder and per-layer embedder (looked up on the
CPU), both encoders and the tokenizer.  Its quantization recipe is not published (litert-torch's
``export_hf`` default, ``dynamic_wi8_afp32``, would make E2B about 5 GB, twice the shipped file), so
g4sim prices it as the nearest uniform width: every weight matrix -- embedding, PLE table, encoders
included -- at 4 bits with one fp32 scale per row, norms fp32.  Checked against the published sizes
(tests/test_litertlm.py): E2B 2,559,047,824 B vs 2,583,085,056 B (-0.9 %; the engine adds the file's
remaining sections), E4B 3,979,941,008 B vs 3,654 MB (+8.9 %, on the safe side).

Non-GGUF formats follow the common engine practice (vLLM / torchao / ModelOpt): only Linear weights
are quantized; embeddings, PLE table, norms and router stay bf16; towers stay bf16.

MLX formats (family ``mlx``, ``mlx-4bit-g64`` / ``mlx-8bit-g64``) are what ``mlx_lm.convert -q``
writes (ml-explore/mlx-lm@d78bf58e, 0.32.0.dev): ``mlx_lm/utils.py`` ``quantize_model`` calls
``nn.quantize`` on every module that has ``to_quantized`` -- ``nn.Linear``, ``nn.Embedding`` (so the
tied token embedding and the PLE table are quantized too) and the experts' ``SwitchLinear`` -- whose
``weight.shape[-1]`` is a multiple of the group size (affine mode defaults: group 64, 4 bits);
``mlx_lm/models/gemma4_text.py`` ``quant_predicate`` gives ``router.proj`` 8 bits, group 64.  Affine
storage (``mlx.core.quantize``): the weights packed into uint32 (bits / 8 bytes per element), plus a
scale and a bias per group in the checkpoint's dtype (bf16: 4 bytes per group).  1-D tensors (norms,
``router.scale``, ``per_expert_scale``) stay bf16; mlx-lm drops the towers
(``models/gemma4.py`` ``sanitize``), which are priced 16-bit if asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as GGML


# (block, bytes per block) by GGML type name, read once from the gguf package (enum look-ups are slow in hot loops)
_GGML_SIZES: dict[str, tuple[int, int]] = {t.name: GGML_QUANT_SIZES[t] for t in GGML if t in GGML_QUANT_SIZES}


def ggml_bytes(ggml_type: str, n_elements: int, row_length: int | None = None) -> int:
    """Bytes of ``n_elements`` stored as GGML type ``ggml_type`` (rows must hold whole blocks)."""
    block, type_size = _GGML_SIZES[ggml_type]
    if n_elements % block:
        raise ValueError(f"{n_elements} elements are not whole {ggml_type} blocks of {block}")
    return n_elements // block * type_size


def ggml_bits_per_weight(ggml_type: str) -> Fraction:
    block, type_size = _GGML_SIZES[ggml_type]
    return Fraction(8 * type_size, block)


@dataclass(frozen=True)
class Tensor:
    """One weight tensor as the formats see it: a matrix of ``rows`` x ``cols`` (cols = input dim)."""

    component: str
    # token_embd (incl. an untied lm_head), ple_table, attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up,
    # ffn_down, router, norm (any 1-D vector: norms, scales, rope factors), other
    kind: str
    rows: int
    cols: int
    layer: int = -1
    count: int = 1  # identical tensors (e.g. experts stacked)
    ordinal: int = -1  # position among the file's tensors of the same kind (llama.cpp's i_attention_wv)
    name: str = ""  # the tensor's name in a GGUF file (tensors.gguf_name); "" when a text GGUF has none
    parameter: bool = True  # False: stored by GGUF files only (rope_freqs, layer_output_scale)

    @property
    def numel(self) -> int:
        return self.rows * self.cols * self.count


@dataclass(frozen=True)
class QuantContext:
    """Facts about the whole model that per-tensor choices depend on (llama.cpp counters)."""

    n_layers: int  # llama.cpp's n_ffn_down (hparams.n_layer_all)
    n_attn_v: int  # number of attn_v tensors in the file
    n_ffn_down: int  # number of ffn_down tensors (dense + experts); llama.cpp's rule does not use it
    n_gqa: int  # query heads per KV head on layer 0
    n_expert: int
    tied_embeddings: bool = True  # no output.weight: token tables are quantized as the output tensor


# tensor_allows_quantization: 2-D tensors that are never quantized keep the converted file's F16
_KEPT_AS_CONVERTED = ("per_layer_model_proj",)


def _use_more_bits(i: int, n: int) -> bool:
    # llama-quant.cpp: use_more_bits(i_layer, n_layers)
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


# llama-quant.cpp tensor_type_fallback
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q2_K": "Q4_0", "Q3_K": "Q4_0", "IQ4_XS": "IQ4_NL"}


@dataclass(frozen=True)
class QuantFormat:
    """A weight format.  ``loss_rank``: 0 = lossless; larger = more quality lost."""

    name: str
    family: str  # "float", "int", "fp4", "gguf"
    loss_rank: int
    description: str
    linear_bits: Fraction = Fraction(16)  # non-GGUF: storage bits per Linear weight, scales excluded
    group_size: int = 0  # elements sharing one scale (0 = per output channel)
    scale_bytes_per_group: Fraction = Fraction(0)  # scale (+ zero) bytes per group / per row
    high_precision_bytes: int = 2  # embeddings, PLE, norms, router, towers
    ggml_default: str = ""  # GGUF: the ftype's base type
    kv_dtype: str = ""  # the KV dtype a file of this format fixes in its graphs ("": the engine's / user's choice)

    @cached_property
    def _full_precision(self) -> bool:  # Fraction comparisons are slow; formats are priced per tensor
        return self.linear_bits >= 16

    # ---- per-tensor storage ------------------------------------------------
    def tensor_bytes(self, t: Tensor, ctx: QuantContext) -> int:
        if self.family == "gguf":
            return self._gguf_bytes(t, ctx)
        if self.family == "mlx":
            return self._mlx_bytes(t)
        if self.family == "litertlm":
            return self._litertlm_bytes(t)
        if not t.parameter:
            return 0  # only GGUF files store it
        if t.kind in ("norm", "router", "token_embd", "ple_table", "other") or self._full_precision:
            return t.numel * self.high_precision_bytes
        return self.linear_bytes(t)

    def linear_bytes(self, t: Tensor) -> int:
        """``t`` stored as this format stores a Linear weight (non-GGUF, non-MLX formats): the payload plus a
        scale (and zero) per group, or per output row."""
        payload = Fraction(t.numel) * self.linear_bits / 8
        if self.group_size:
            groups = t.rows * -(-t.cols // self.group_size) * t.count
        else:
            groups = t.rows * t.count  # one scale per output channel
        return int(payload + groups * self.scale_bytes_per_group)

    def gguf_type(self, t: Tensor, ctx: QuantContext) -> str:
        """The GGML type llama.cpp's quantizer picks for ``t`` under this ftype (no imatrix)."""
        if t.kind in ("norm", "router"):  # 1-D tensors and ffn_gate_inp: F32 in the file, never quantized
            return "F32"
        if any(k in t.name for k in _KEPT_AS_CONVERTED):
            return "F16"
        if t.component in ("vision_tower", "audio_tower"):  # the towers ship as a separate F16 mmproj file
            return "F16"
        ftype, base = self.name, self.ggml_default
        new = base
        if t.kind in ("token_embd", "ple_table"):
            if t.component == "lm_head" or ctx.tied_embeddings:  # quantized as the output tensor
                if t.cols % _GGML_SIZES[base][0] or base == "Q8_0":
                    new = "Q8_0"
                else:
                    new = "Q6_K"
        elif t.kind == "attn_v":
            i, n = t.ordinal, ctx.n_attn_v
            if ftype == "q2_k":
                new = "Q4_K" if ctx.n_gqa >= 4 else "Q3_K"
            elif ftype == "q3_k_m":
                new = "Q5_K" if i < 2 else "Q4_K"
            elif ftype == "iq4_xs" and ctx.n_gqa >= 4:
                new = "Q5_K"
            elif ftype in ("q4_k_m", "q5_k_m") and _use_more_bits(i, n):
                new = "Q6_K"
            elif ftype == "q4_k_s" and i < 4:
                new = "Q5_K"
        elif t.kind == "ffn_down":
            i, n = t.layer, ctx.n_layers  # layers, not tensors: dense and expert ffn_down share a layer
            if ftype == "q2_k":
                new = "Q3_K"
            elif ftype == "q3_k_m":
                new = "Q5_K" if i < n // 16 else "Q4_K"
            elif ftype in ("q4_k_m", "q5_k_m") and _use_more_bits(i, n):
                new = "Q6_K"
            elif ftype in ("q4_k_s", "iq4_xs") and i < n // 8:
                new = "Q5_K"
        elif t.kind == "attn_output" and ctx.n_expert != 8:
            new = {"q2_k": "Q3_K", "q3_k_m": "Q4_K"}.get(ftype, new)
        block = _GGML_SIZES[new][0]
        if t.cols % block:
            new = _FALLBACK.get(new, new)
            if t.cols % _GGML_SIZES[new][0]:
                new = "F16"
        return new

    def _gguf_bytes(self, t: Tensor, ctx: QuantContext) -> int:
        return ggml_bytes(self.gguf_type(t, ctx), t.numel)

    def _mlx_bytes(self, t: Tensor) -> int:
        """mlx_lm.convert's affine quantization (see the module docstring)."""
        if not t.parameter:
            return 0  # as for every non-GGUF format: rope_freqs is computed; layer_scalar is one value per layer
        if t.kind == "norm" or t.component in ("vision_tower", "audio_tower") or t.cols % self.group_size:
            return t.numel * self.high_precision_bytes  # not quantized: 1-D, towers, or rows not whole groups
        bits, group = (8, 64) if t.kind == "router" else (int(self.linear_bits), self.group_size)
        return t.numel * bits // 8 + t.rows * (t.cols // group) * t.count * int(self.scale_bytes_per_group)

    def _litertlm_bytes(self, t: Tensor) -> int:
        """The .litertlm files litert-community ships, priced as every weight matrix -- the embedding and PLE
        tables and both encoders too -- at 4 bits with one fp32 scale per row (see the module docstring)."""
        if not t.parameter:
            return 0
        if t.kind == "norm":
            return t.numel * 4  # 1-D, float32 (the exporter traces in float32)
        if t.component in ("vision_tower", "audio_tower"):
            return t.numel * 4 // 8  # the towers are priced as lumps: no rows to give scales
        return t.numel * 4 // 8 + t.rows * t.count * 4

    @property
    def bits_per_linear_weight(self) -> Fraction:
        """Nominal storage of a quantized Linear weight, scales included (for display)."""
        if self.family == "gguf":
            return ggml_bits_per_weight(self.ggml_default)
        if self.linear_bits >= 16:
            return self.linear_bits
        per = self.group_size or 4096
        return self.linear_bits + self.scale_bytes_per_group * 8 / per


def _int4(group: int) -> QuantFormat:
    return QuantFormat(
        f"int4-g{group}", "int", 70, f"int4 weight-only, group-wise (group {group}), fp16 scale + fp16 zero per group",
        linear_bits=Fraction(4), group_size=group, scale_bytes_per_group=Fraction(4),
    )


def _mlx(bits: int, group: int, rank: int) -> QuantFormat:
    return QuantFormat(
        f"mlx-{bits}bit-g{group}", "mlx", rank,
        f"MLX affine {bits}-bit, group {group} (mlx_lm.convert -q): packed weights + bf16 scale and bias per group "
        f"({float(bits + Fraction(32, group)):g} bpw); embeddings and PLE table quantized, router 8-bit, norms bf16",
        linear_bits=Fraction(bits), group_size=group, scale_bytes_per_group=Fraction(4),
    )


def _gguf(name: str, base: str, rank: int, description: str) -> QuantFormat:
    return QuantFormat(name, "gguf", rank, description, ggml_default=base)


# Ordered from least to most quality loss.  Ranks follow llama.cpp's published perplexity deltas
# (tools/quantize/README.md) for the GGUF types, and bits per weight for the others.
QUANT_FORMATS: dict[str, QuantFormat] = {
    f.name: f
    for f in sorted(
        [
            QuantFormat("fp32", "float", 0, "float32 everywhere", linear_bits=Fraction(32), high_precision_bytes=4),
            QuantFormat("bf16", "float", 1, "bfloat16 everywhere (the released checkpoints)"),
            QuantFormat("fp16", "float", 2, "float16 everywhere"),
            _gguf("q8_0", "Q8_0", 10, "GGUF Q8_0: 8-bit blocks of 32 with an fp16 scale (8.5 bpw)"),
            QuantFormat("fp8", "float", 11, "fp8 e4m3 Linear weights, one fp32 scale per output channel",
                        linear_bits=Fraction(8), scale_bytes_per_group=Fraction(4)),
            QuantFormat("int8", "int", 12, "int8 weight-only, per output channel, one fp32 scale per row",
                        linear_bits=Fraction(8), scale_bytes_per_group=Fraction(4)),
            _mlx(8, 64, 13),
            _gguf("q6_k", "Q6_K", 20, "GGUF Q6_K (6.56 bpw)"),
            _gguf("q5_k_m", "Q5_K", 30, "GGUF Q5_K_M: Q5_K with Q6_K attn_v / ffn_down on some layers"),
            _gguf("q5_0", "Q5_0", 35, "GGUF Q5_0 (5.5 bpw, legacy)"),
            QuantFormat("nvfp4", "fp4", 40, "NVFP4: e2m1 values, fp8 e4m3 scale per 16, fp32 per-tensor scale",
                        linear_bits=Fraction(4), group_size=16, scale_bytes_per_group=Fraction(1)),
            _gguf("q4_k_m", "Q4_K", 50, "GGUF Q4_K_M: Q4_K with Q6_K attn_v / ffn_down on some layers"),
            QuantFormat("mxfp4", "fp4", 55, "MXFP4 (OCP): e2m1 values, e8m0 scale per 32",
                        linear_bits=Fraction(4), group_size=32, scale_bytes_per_group=Fraction(1)),
            _gguf("q4_k_s", "Q4_K", 60, "GGUF Q4_K_S: Q4_K, Q5_K on early attn_v / ffn_down"),
            _gguf("iq4_xs", "IQ4_XS", 65, "GGUF IQ4_XS (4.25 bpw, non-linear)"),
            _mlx(4, 64, 68),  # group 64 with a bias: finer than int4-g128, coarser than the K-quants' mixes
            _int4(128),
            _gguf("q4_0", "Q4_0", 75, "GGUF Q4_0 (4.5 bpw, legacy)"),
            QuantFormat("litertlm", "litertlm", 78, "the .litertlm file litert-community ships (LiteRT-LM): its recipe "
                        "is unpublished; priced as every weight matrix at 4 bits, one fp32 scale per row",
                        linear_bits=Fraction(4), scale_bytes_per_group=Fraction(4), high_precision_bytes=4,
                        kv_dtype="fp32"),
            _gguf("q3_k_m", "Q3_K", 80, "GGUF Q3_K_M"),
            _gguf("q2_k", "Q2_K", 90, "GGUF Q2_K"),
        ],
        key=lambda f: f.loss_rank,
    )
}

_QUANT_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "f16": "fp16", "f32": "fp32",
                  "fp8_e4m3": "fp8", "int4": "int4-g128", "w8a16": "int8", "w4a16": "int4-g128",
                  "mlx-4bit": "mlx-4bit-g64", "mlx-8bit": "mlx-8bit-g64"}


@lru_cache(maxsize=256)  # searches and sweeps look the same names up many times
def get_quant(name: str) -> QuantFormat:
    """Look a weight format up by name (case-insensitive).  int4-gN builds any group size."""
    key = name.strip().lower().replace("-", "_") if name.lower().startswith("q") or name.lower().startswith("iq") \
        else name.strip().lower()
    key = _QUANT_ALIASES.get(key, key)
    if key in QUANT_FORMATS:
        return QUANT_FORMATS[key]
    if key.startswith("int4-g") and key[6:].isdigit() and int(key[6:]) > 0:
        return _int4(int(key[6:]))
    raise KeyError(name)


@dataclass(frozen=True)
class KVDtype:
    """A KV-cache element format: ``block_bytes`` per ``block`` elements."""

    name: str
    block: int
    block_bytes: int
    description: str

    def bytes_for(self, n_elements: int) -> int:
        return -(-n_elements // self.block) * self.block_bytes


def _ggml_kv(name: str, ggml_type: str, description: str) -> KVDtype:
    block, size = _GGML_SIZES[ggml_type]
    return KVDtype(name, block, size, description)


KV_DTYPES: dict[str, KVDtype] = {
    "fp32": KVDtype("fp32", 1, 4, "float32"),
    "bf16": KVDtype("bf16", 1, 2, "bfloat16"),
    "fp16": KVDtype("fp16", 1, 2, "float16"),
    "fp8": KVDtype("fp8", 1, 1, "fp8 e4m3 (vLLM --kv-cache-dtype fp8)"),
    "q8_0": _ggml_kv("q8_0", "Q8_0", "GGUF Q8_0 blocks (llama.cpp -ctk/-ctv q8_0)"),
    "q4_0": _ggml_kv("q4_0", "Q4_0", "GGUF Q4_0 blocks (llama.cpp -ctk/-ctv q4_0)"),
}


@lru_cache(maxsize=64)
def get_kv_dtype(name: str) -> KVDtype:
    key = {"float16": "fp16", "f16": "fp16", "bfloat16": "bf16", "fp8_e4m3": "fp8", "float32": "fp32"}.get(
        name.strip().lower(), name.strip().lower())
    if key not in KV_DTYPES:
        raise KeyError(name)
    return KV_DTYPES[key]
