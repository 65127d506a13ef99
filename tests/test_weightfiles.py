"""Plan the exact file: GGUF and safetensors readers, and the engines and speed model pricing a file's bytes.

The oracles are the files' own headers as the ``gguf`` package's ``GGUFReader`` and the
``safetensors`` package read them (each tensor's type and ``n_bytes`` / dtype and shape), llama.cpp's
quantizer output for real-layout files (tests/data/llamacpp_quantize, the per-tensor types and bytes
its dry run wrote), and ``get_variant`` for the architecture of real-layout files.  The files are
written here with ``gguf.GGUFWriter`` and ``safetensors.numpy``: small reduced-depth, reduced-width
Gemma 4 shapes, an imatrix / unsloth-style mix of per-tensor types, an AutoAWQ checkpoint.

The GGUF tensor table (names, numpy shapes, converter dtypes) is ``gguf_tensor_table`` of
``g4sim/measure/gguf_files.py`` -- llama.cpp's gemma4 loader names, validated by
llama.cpp's own loader -- and the metadata is what llama.cpp's converter writes
(``conversion/gemma.py`` Gemma4Model.set_gguf_parameters: ``feed_forward_length`` is an array only
for double-wide MLPs, ``head_count_kv`` only when full layers have their own KV-head count).  None of
it comes from g4sim's own tensor list.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from g4sim.analytic.components import Component
from g4sim.analytic.work import prefill_weight_bytes
from g4sim.engines import Workload, get_engine
from g4sim.evaluation import Request, evaluate
from g4sim.hardware import get_profile
from g4sim.spec import FULL, SLIDING, VARIANTS, TextSpec, get_variant
from g4sim.measure.gguf_files import gguf_tensor_table
from g4sim.weightfiles import WeightFileError, read_checkpoint, read_gguf
from g4sim.weightfiles.safetensors import quantization as sw_quantization

ROOT = Path(__file__).resolve().parent.parent

S, F = SLIDING, FULL
# 26B-A4B's shape at reduced depth and width: MoE beside a dense MLP, k_eq_v full layers, 2 KV-head counts
TINY_MOE = TextSpec(
    hidden_size=256, num_layers=6, layer_types=(S,) * 5 + (F,), sliding_window=128, num_heads=4, num_kv_heads=2,
    num_global_kv_heads=1, head_dim=64, global_head_dim=128, attention_k_eq_v=True, num_kv_shared_layers=0,
    intermediate_size=512, use_double_wide_mlp=False, vocab_size=1024, hidden_size_per_layer_input=0,
    enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=256, max_position_embeddings=8192)
# E2B's shape at reduced depth and width: PLE, KV-shared layers, double-wide MLP on the shared layers
TINY_PLE = TextSpec(
    hidden_size=256, num_layers=10, layer_types=((S,) * 4 + (F,)) * 2, sliding_window=128, num_heads=4,
    num_kv_heads=1, num_global_kv_heads=None, head_dim=64, global_head_dim=128, attention_k_eq_v=False,
    num_kv_shared_layers=5, intermediate_size=256, use_double_wide_mlp=True, vocab_size=1024,
    hidden_size_per_layer_input=64, vocab_size_per_layer_input=1024, max_position_embeddings=8192)
# 31B's shape at reduced depth and width: dense, k_eq_v full layers
TINY_DENSE = TextSpec(
    hidden_size=256, num_layers=6, layer_types=(S,) * 5 + (F,), sliding_window=128, num_heads=4, num_kv_heads=2,
    num_global_kv_heads=1, head_dim=64, global_head_dim=128, attention_k_eq_v=True, num_kv_shared_layers=0,
    intermediate_size=512, use_double_wide_mlp=False, vocab_size=1024, hidden_size_per_layer_input=0,
    max_position_embeddings=8192)


def converter_metadata(w, t: TextSpec, arch: str = "gemma4", file_type: int = 1) -> None:
    L = t.num_layers
    w.add_uint32("general.file_type", file_type)
    w.add_uint32(f"{arch}.context_length", t.max_position_embeddings)
    w.add_uint32(f"{arch}.embedding_length", t.hidden_size)
    w.add_uint32(f"{arch}.block_count", L)
    if t.use_double_wide_mlp:
        w.add_array(f"{arch}.feed_forward_length", [t.mlp_intermediate(i) for i in range(L)])
    else:
        w.add_uint32(f"{arch}.feed_forward_length", t.intermediate_size)
    w.add_uint32(f"{arch}.attention.head_count", t.num_heads)
    if t.num_global_kv_heads is not None:
        w.add_array(f"{arch}.attention.head_count_kv", [t.kv_heads(i) for i in range(L)])
    else:
        w.add_uint32(f"{arch}.attention.head_count_kv", t.num_kv_heads)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", t.rms_norm_eps)
    w.add_uint32(f"{arch}.attention.key_length", t.global_head_dim)
    w.add_uint32(f"{arch}.attention.value_length", t.global_head_dim)
    w.add_uint32(f"{arch}.attention.key_length_swa", t.head_dim)
    w.add_uint32(f"{arch}.attention.value_length_swa", t.head_dim)
    w.add_float32(f"{arch}.rope.freq_base", t.rope_full.theta)
    if t.final_logit_softcapping:
        w.add_float32(f"{arch}.final_logit_softcapping", t.final_logit_softcapping)
    w.add_uint32(f"{arch}.attention.sliding_window", t.sliding_window)
    w.add_uint32(f"{arch}.attention.shared_kv_layers", t.num_kv_shared_layers)
    w.add_uint32(f"{arch}.embedding_length_per_layer_input", t.hidden_size_per_layer_input)
    w.add_array(f"{arch}.attention.sliding_window_pattern", [t.is_sliding(i) for i in range(L)])
    w.add_uint32(f"{arch}.rope.dimension_count", t.global_head_dim)
    w.add_uint32(f"{arch}.rope.dimension_count_swa", t.head_dim)
    if t.enable_moe_block:
        w.add_uint32(f"{arch}.expert_count", t.num_experts)
        w.add_uint32(f"{arch}.expert_used_count", t.top_k_experts)
        w.add_uint32(f"{arch}.expert_feed_forward_length", t.moe_intermediate_size)


def converted_type(name: str, shape: tuple[int, ...], dtype) -> str:
    """What convert_hf_to_gguf.py --outtype f16 stores: F32 for 1-D / router, F16 for the rest."""
    return "F32" if dtype == np.float32 else "F16"


def imatrix_mix(name: str, shape: tuple[int, ...], dtype) -> str:
    """An unsloth-dynamic / imatrix-style mix: Q6_K embeddings, ffn_down Q8_0 on the first, second and
    last layers and Q4_K elsewhere, Q6_K attn_v, IQ4_XS fused expert gate/up, Q5_0 expert down."""
    if dtype == np.float32:
        return "F32"
    if name == "token_embd.weight":
        return "Q6_K"
    if name.endswith(".ffn_down.weight"):
        return "Q8_0" if int(name.split(".")[1]) in (0, 1, 5) else "Q4_K"
    if name.endswith(".attn_v.weight"):
        return "Q6_K"
    if name.endswith("ffn_gate_up_exps.weight"):
        return "IQ4_XS"
    if name.endswith("ffn_down_exps.weight"):
        return "Q5_0"
    if shape[-1] % 256 == 0:
        return "Q4_K"
    return "Q8_0" if shape[-1] % 32 == 0 else "F16"


def write_gguf(path: Path, t: TextSpec, type_of=converted_type, *, arch: str = "gemma4", file_type: int = 1,
               data: bool = True, tokens: int = 0, merges: int = 0, table=None, metadata=converter_metadata,
               split_max_tensors: int = 0) -> Path:
    """A GGUF file of ``t`` (tensor data zeros; ``data=False``: header only, the data region a hole;
    ``split_max_tensors``: gguf-split parts ``*-00001-of-0000N.gguf``, the first part returned)."""
    import gguf
    from gguf.quants import quant_shape_to_byte_shape

    w = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    metadata(w, t, arch, file_type)
    if tokens:
        w.add_token_list([f"<t{i}>" for i in range(tokens)])
        w.add_token_scores([0.0] * tokens)
    if merges:
        w.add_token_merges([f"a{i} b{i}" for i in range(merges)])
    total = 0
    for name, shape, dtype in (table if table is not None else gguf_tensor_table(t)):
        kind = type_of(name, shape, dtype)
        q = gguf.GGMLQuantizationType[kind]
        block, size = gguf.GGML_QUANT_SIZES[q]
        nbytes = int(np.prod(shape)) // block * size
        if data:
            if kind in ("F32", "F16"):
                w.add_tensor(name, np.zeros(shape, np.float32 if kind == "F32" else np.float16))
            else:
                w.add_tensor(name, np.zeros(quant_shape_to_byte_shape(shape, q), np.uint8), raw_dtype=q)
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=q)
            total += gguf.GGUFWriter.ggml_pad(nbytes, w.data_alignment)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    if data:
        w.write_tensors_to_file()
        w.close()
        parts = sorted(path.parent.glob(path.stem + "-0*-of-0*.gguf"))
        return parts[0] if split_max_tensors and parts else path
    w.write_ti_data_to_file()
    f = w.fout[0]
    w.write_padding(f, f.tell())
    f.truncate(f.tell() + total)  # the tensor data: a hole
    w.close()
    return path


# ---- checkpoints ------------------------------------------------------------------------------

def text_config(t: TextSpec) -> dict:
    """config.json keys of a Gemma4TextConfig (as transformers writes them)."""
    return {
        "model_type": "gemma4_text", "architectures": ["Gemma4ForCausalLM"], "torch_dtype": "bfloat16",
        "hidden_size": t.hidden_size, "num_hidden_layers": t.num_layers, "layer_types": list(t.layer_types),
        "sliding_window": t.sliding_window, "num_attention_heads": t.num_heads, "num_key_value_heads": t.num_kv_heads,
        "num_global_key_value_heads": t.num_global_kv_heads, "head_dim": t.head_dim, "global_head_dim": t.global_head_dim,
        "attention_k_eq_v": t.attention_k_eq_v, "num_kv_shared_layers": t.num_kv_shared_layers,
        "intermediate_size": t.intermediate_size, "use_double_wide_mlp": t.use_double_wide_mlp,
        "vocab_size": t.vocab_size, "hidden_size_per_layer_input": t.hidden_size_per_layer_input,
        "vocab_size_per_layer_input": t.vocab_size_per_layer_input, "enable_moe_block": t.enable_moe_block,
        "num_experts": t.num_experts or None, "top_k_experts": t.top_k_experts or None,
        "moe_intermediate_size": t.moe_intermediate_size or None,
        "max_position_embeddings": t.max_position_embeddings, "final_logit_softcapping": t.final_logit_softcapping,
        "rms_norm_eps": t.rms_norm_eps, "tie_word_embeddings": True,
        "rope_parameters": {S: {"rope_type": "default", "rope_theta": 10000.0},
                            F: {"rope_type": "proportional", "rope_theta": 1000000.0, "partial_rotary_factor": 0.25}},
    }


def hf_linears(t: TextSpec) -> list[tuple[str, int, int]]:
    """(name, in_features, out_features) of every Linear of a dense / PLE text decoder (transformers names)."""
    h, out = t.hidden_size, []
    for i in range(t.num_layers):
        p, hd = f"model.layers.{i}.", t.head_dim_of(i)
        out += [(p + "self_attn.q_proj", h, t.num_heads * hd), (p + "self_attn.o_proj", t.num_heads * hd, h)]
        if not t.is_kv_shared(i):
            out.append((p + "self_attn.k_proj", h, t.kv_heads(i) * hd))
            if not t.k_eq_v(i):
                out.append((p + "self_attn.v_proj", h, t.kv_heads(i) * hd))
        ff = t.mlp_intermediate(i)
        out += [(p + "mlp.gate_proj", h, ff), (p + "mlp.up_proj", h, ff), (p + "mlp.down_proj", ff, h)]
        if t.has_ple:
            P = t.hidden_size_per_layer_input
            out += [(p + "per_layer_input_gate", h, P), (p + "per_layer_projection", P, h)]
    if t.has_ple:
        out.append(("model.per_layer_model_projection", h, t.num_layers * t.hidden_size_per_layer_input))
    return out


def hf_others(t: TextSpec) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of the non-Linear tensors (embeddings, norms, layer scalars), kept in 16-bit."""
    h = t.hidden_size
    out = [("model.embed_tokens.weight", (t.vocab_size, h)), ("model.norm.weight", (h,))]
    if t.has_ple:
        P = t.hidden_size_per_layer_input
        out += [("model.embed_tokens_per_layer.weight", (t.vocab_size_per_layer_input, t.num_layers * P)),
                ("model.per_layer_projection_norm.weight", (P,))]
        out += [(f"model.layers.{i}.post_per_layer_input_norm.weight", (h,)) for i in range(t.num_layers)]
    for i in range(t.num_layers):
        p, hd = f"model.layers.{i}.", t.head_dim_of(i)
        out += [(p + n, (h,)) for n in ("input_layernorm.weight", "post_attention_layernorm.weight",
                                        "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight")]
        out += [(p + "self_attn.q_norm.weight", (hd,)), (p + "layer_scalar", (1,))]
        if not t.is_kv_shared(i):
            out.append((p + "self_attn.k_norm.weight", (hd,)))
    return out


def write_awq_checkpoint(directory: Path, t: TextSpec, group: int = 128, shards: int = 2) -> Path:
    """An AutoAWQ (GEMM) checkpoint: qweight int32 [in, out/8], qzeros int32 [in/group, out/8],
    scales fp16 [in/group, out] per Linear; everything else fp16; split into ``shards`` files + index."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    for name, fin, fout in hf_linears(t):
        tensors[name + ".qweight"] = np.zeros((fin, fout // 8), np.int32)
        tensors[name + ".qzeros"] = np.zeros((fin // group, fout // 8), np.int32)
        tensors[name + ".scales"] = np.zeros((fin // group, fout), np.float16)
    for name, shape in hf_others(t):
        tensors[name] = np.zeros(shape, np.float16)
    cfg = {**text_config(t), "torch_dtype": "float16",
           "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": group, "zero_point": True,
                                   "version": "gemm", "modules_to_not_convert": None}}
    (directory / "config.json").write_text(json.dumps(cfg))
    names = list(tensors)
    weight_map = {}
    for k in range(shards):
        part = names[k::shards]
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n] for n in part}, str(directory / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def write_bf16_checkpoint(directory: Path, t: TextSpec) -> Path:
    """An unquantized checkpoint (bf16 stored as raw 2-byte values) in one model.safetensors."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name + ".weight": np.zeros((fout, fin), np.float16) for name, fin, fout in hf_linears(t)}
    tensors.update({name: np.zeros(shape, np.float16) for name, shape in hf_others(t)})
    save_file(tensors, str(directory / "model.safetensors"))
    raw = (directory / "model.safetensors").read_bytes()  # relabel F16 -> BF16 (same size): a bf16 checkpoint
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].rstrip().replace(b'"F16"', b'"BF16"')
    header += b" " * (-len(header) % 8)
    (directory / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + n:])
    (directory / "config.json").write_text(json.dumps(text_config(t)))
    return directory


# ---- the test's own statement of where each tensor belongs ---------------------------------------

_ATTN = {"attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm"}
_PLE = {"inp_gate", "proj"}


def expected_component(name: str, t: TextSpec) -> tuple[str, int]:
    """(component, layer) of a llama.cpp gemma4 tensor name, written down here independently of g4sim."""
    parts = name.split(".")
    if parts[0] == "blk":
        layer, base, suffix = int(parts[1]), parts[2], parts[3]
        if base in _ATTN:
            return "attention", layer
        if base in ("ffn_gate", "ffn_up", "ffn_down"):
            return "mlp", layer
        if base == "ffn_gate_inp" or (base == "ffn_down_exps" and suffix == "scale"):
            return "router", layer
        if base.endswith("_exps"):
            return "experts", layer
        if base in _PLE:
            return "ple_projections", layer
        return "norms", layer
    return {"token_embd": ("token_embedding", -1), "per_layer_token_embd": ("ple_table", -1),
            "per_layer_model_proj": ("ple_projections", -1), "per_layer_proj_norm": ("ple_projections", -1),
            "output_norm": ("norms", -1), "output": ("lm_head", -1),
            "rope_freqs": ("attention", t.layer_types.index(FULL))}[parts[0]]


def reader_tensors(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (GGML type, n_bytes) as the gguf package's own reader reports them."""
    import gguf

    return {t.name: (t.tensor_type.name, int(t.n_bytes)) for t in gguf.GGUFReader(str(path)).tensors}


def llamacpp_placement(path: Path, t: TextSpec, n_gpu_layers: int = 999, n_cpu_moe: int = 0) -> dict:
    """(component, location) -> bytes under llama.cpp's rules (src/llama-model.cpp), from the reader's bytes:
    input tables on the host; blocks i >= n_layer + 1 - ngl on the GPU (experts of blocks < n_cpu_moe on
    the host); the output layer (output norm, the tied embedding's second copy) on the GPU when
    ngl > n_layer; rope_freqs with the first full layer."""
    out: dict[tuple[str, str], int] = {}
    gpu_start, output_on_gpu = max(t.num_layers + 1 - n_gpu_layers, 0), n_gpu_layers > t.num_layers

    def add(key, n):
        out[key] = out.get(key, 0) + n

    for name, (_, n) in reader_tensors(path).items():
        component, layer = expected_component(name, t)
        if component in ("token_embedding", "ple_table"):
            add((component, "host"), n)
            if component == "token_embedding" and output_on_gpu:
                add(("output_copy", "accelerator"), n)
        elif layer < 0:
            add((component, "accelerator" if output_on_gpu else "host"), n)
        else:
            on_gpu = layer >= gpu_start and not (component == "experts" and layer < n_cpu_moe)
            add((component, "accelerator" if on_gpu else "host"), n)
    return out


def terms_of(memory) -> dict[tuple[str, str], int]:
    return {(t.component.value, t.location.value): t.bytes for t in memory.terms if t.category.value == "weights"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("weightfiles")
    return {
        "mix": write_gguf(d / "gemma-4-tiny-moe-UD-Q4_K_XL.gguf", TINY_MOE, imatrix_mix, file_type=15, tokens=1024,
                          merges=5000),
        "ple": write_gguf(d / "tiny-ple-mix.gguf", TINY_PLE, imatrix_mix, file_type=15),
        "f16": write_gguf(d / "tiny-moe-F16.gguf", TINY_MOE),
        "awq": write_awq_checkpoint(d / "tiny-dense-awq", TINY_DENSE),
        "bf16": write_bf16_checkpoint(d / "tiny-ple-bf16", TINY_PLE),
    }


# ---- GGUF ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which,spec", [("mix", TINY_MOE), ("ple", TINY_PLE), ("f16", TINY_MOE)])
def test_every_tensor_has_the_gguf_readers_type_and_bytes(files, which, spec):
    wf = read_gguf(files[which])
    theirs = reader_tensors(files[which])
    assert {x.name: (x.type, x.bytes) for x in wf.tensors} == theirs
    assert wf.total_bytes == sum(n for _, n in theirs.values())
    assert wf.spec.text == spec and wf.kind == "gguf"
    assert {x.name: (x.component, x.layer) for x in wf.tensors} == {n: expected_component(n, spec) for n in theirs}
    assert {x.component for x in wf.tensors} <= {c.value for c in Component}


def test_a_split_file_is_read_part_by_part(tmp_path):
    first = write_gguf(tmp_path / "tiny-moe-Q4_K_M.gguf", TINY_MOE, imatrix_mix, file_type=15, split_max_tensors=50)
    parts = sorted(tmp_path.glob("*.gguf"))
    assert first.name == "tiny-moe-Q4_K_M-00001-of-00003.gguf" and len(parts) == 3
    theirs = {name: v for part in parts for name, v in reader_tensors(part).items()}
    wf = read_gguf(first)
    assert {x.name: (x.type, x.bytes) for x in wf.tensors} == theirs and len(wf.parts) == 3
    assert wf.spec.text == TINY_MOE and wf.spec.name == "tiny-moe-Q4_K_M"
    with pytest.raises(WeightFileError, match="give its first part"):
        read_gguf(parts[1])
    parts[2].unlink()
    with pytest.raises(WeightFileError, match="00003-of-00003.gguf of this split GGUF is missing"):
        read_gguf(first)


def test_the_mix_keeps_its_per_tensor_types(files):
    wf = read_gguf(files["mix"])
    types = {x.name: x.type for x in wf.tensors}
    assert types["token_embd.weight"] == "Q6_K" and types["blk.1.ffn_down.weight"] == "Q8_0"
    assert types["blk.2.ffn_down.weight"] == "Q4_K" and types["blk.0.ffn_gate_up_exps.weight"] == "IQ4_XS"
    assert (wf.label, wf.format) == ("Q4_K_M", "q4_k_m")  # what general.file_type says; the bytes are the file's
    assert wf.spec.name == "gemma-4-tiny-moe-UD-Q4_K_XL"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_real_layout_files_are_the_published_variants(tmp_path, variant):
    """A header-only, full-depth file as llama.cpp's converter writes it reads back as get_variant(...)."""
    path = write_gguf(tmp_path / f"{variant}.gguf", get_variant(variant).text, data=False)
    wf = read_gguf(path)
    assert wf.spec == get_variant(variant) and wf.spec.name == variant
    assert wf.total_bytes == sum(n for _, n in reader_tensors(path).values())


def _llamacpp_types(variant: str, fmt: str) -> dict[str, tuple[str, int]]:
    rows = csv.DictReader((ROOT / "tests" / "data" / "llamacpp_quantize" / f"{variant}.csv").open(newline=""))
    return {r["tensor"]: (r["type"], int(r["bytes"])) for r in rows if r["format"] == fmt}


@pytest.mark.parametrize("variant,fmt", [("26b-a4b", "q4_k_m"), ("e2b", "q3_k_m"), ("31b", "iq4_xs")])
def test_a_file_llama_cpp_quantized_plans_as_its_format(tmp_path, variant, fmt):
    """Types from llama.cpp's own quantizer (dry run): the file's bytes are llama.cpp's, and planning the
    file equals planning the variant in that format, term by term, offloaded or not, and in speed."""
    theirs = _llamacpp_types(variant, fmt)
    ftype = {"q4_k_m": 15, "q3_k_m": 12, "iq4_xs": 30}[fmt]
    path = write_gguf(tmp_path / f"{variant}-{fmt}.gguf", get_variant(variant).text, lambda n, s, d: theirs[n][0],
                      data=False, file_type=ftype)
    wf = read_gguf(path)
    assert {x.name: (x.type, x.bytes) for x in wf.tensors} == theirs
    assert wf.format == fmt and wf.spec == get_variant(variant)
    spec, device = get_variant(variant), get_profile("rtx4090")
    for ngl, cpu_moe in ((999, 0), (spec.text.num_layers // 2, 3), (0, 0)):
        engine = get_engine("llamacpp", n_gpu_layers=ngl, n_cpu_moe=cpu_moe)
        by_format = evaluate(Request(Workload(spec, 32768, 2, fmt, "q8_0"), device, engine))
        by_file = evaluate(Request(Workload(wf.spec, 32768, 2, wf.format, "q8_0", file=wf), device, engine))
        assert terms_of(by_file.memory) == terms_of(by_format.memory) == llamacpp_placement(path, spec.text, ngl, cpu_moe)
        assert by_file.memory.total(None) == by_format.memory.total(None)
        assert by_file.speed.decode_step_bytes == by_format.speed.decode_step_bytes
        assert by_file.speed.prefill_seconds == by_format.speed.prefill_seconds


@pytest.mark.parametrize("ngl,cpu_moe", [(999, 0), (3, 0), (4, 5), (0, 0)])
def test_llama_cpp_places_the_file_tensor_by_tensor(files, ngl, cpu_moe):
    wf = read_gguf(files["mix"])
    engine = get_engine("llamacpp", n_gpu_layers=ngl, n_cpu_moe=cpu_moe)
    terms = engine.weight_terms(wf.spec, wf.format, vision=False, audio=False, file=wf)
    assert {(t.component.value, t.location.value): t.bytes for t in terms} == llamacpp_placement(
        files["mix"], TINY_MOE, ngl, cpu_moe)


def test_speed_reads_the_files_bytes(tmp_path):
    """Two files that differ only in the dense ffn_down types: a decode step moves exactly the difference."""
    a = write_gguf(tmp_path / "a.gguf", TINY_MOE, imatrix_mix)
    c = write_gguf(tmp_path / "c.gguf", TINY_MOE, lambda n, s, d: "Q8_0" if n.endswith(".ffn_down.weight")
                   else imatrix_mix(n, s, d))
    extra = sum(n for _, n in reader_tensors(c).values()) - sum(n for _, n in reader_tensors(a).values())
    assert extra > 0
    wa, wc = read_gguf(a), read_gguf(c)
    engine, device = get_engine("llamacpp"), get_profile("rtx4090")
    sa, sc = (evaluate(Request(Workload(w.spec, 4096, 1, w.format, file=w), device, engine)).speed for w in (wa, wc))
    assert sc.decode_step_bytes - sa.decode_step_bytes == extra  # every dense weight is read once a step
    assert prefill_weight_bytes(wc.spec, wc.format, wc) - prefill_weight_bytes(wa.spec, wa.format, wa) == extra


def test_a_workload_carries_its_file_only_in_its_format(files):
    wf = read_gguf(files["mix"])
    w = Workload(wf.spec, 8192, 1, wf.format, file=wf)
    assert w.file is wf and hash(w) == hash(Workload(wf.spec, 8192, 1, "q4_k_m", file=read_gguf(files["mix"])))
    assert replace(w, ctx=4096).file is wf  # searches over context and batch keep the file
    assert replace(w, quant="q8_0").file is None  # another format is another file: priced from the spec
    with pytest.raises(ValueError, match="holds"):
        Workload(get_variant("e2b"), 8192, 1, wf.format, file=wf)


def test_vllm_and_the_base_rule_refuse_a_gguf_and_llama_cpp_a_checkpoint(files):
    gguf_file, ckpt = read_gguf(files["mix"]), read_checkpoint(files["awq"])
    device = get_profile("h100-sxm")
    w = Workload(gguf_file.spec, 8192, 1, gguf_file.format, file=gguf_file)
    assert "does not load GGUF files" in get_engine("vllm").compatibility(w, device, 1)
    assert get_engine("llamacpp").compatibility(w, device, 1) is None
    w = Workload(ckpt.spec, 8192, 1, ckpt.format, file=ckpt)
    assert "does not load safetensors checkpoints" in get_engine("llamacpp").compatibility(w, device, 1)
    assert get_engine("vllm").compatibility(w, device, 1) is None


# ---- safetensors checkpoints ------------------------------------------------------------------------

def safetensors_headers(directory: Path) -> dict[str, tuple[str, int]]:
    """name -> (dtype, bytes) as the safetensors package reads each shard's header."""
    from safetensors import safe_open

    sizes = {"F16": 2, "BF16": 2, "F32": 4, "I32": 4, "U8": 1, "I8": 1, "F8_E4M3": 1}
    out = {}
    for shard in sorted(directory.glob("*.safetensors")):
        with safe_open(str(shard), "numpy") as f:
            for name in f.keys():
                s = f.get_slice(name)
                out[name] = (s.get_dtype(), int(np.prod(s.get_shape())) * sizes[s.get_dtype()])
    return out


def test_awq_checkpoint_tensors_are_its_headers(files):
    wf = read_checkpoint(files["awq"])
    theirs = safetensors_headers(files["awq"])
    assert {x.name: (x.type, x.bytes) for x in wf.tensors} == theirs
    assert len(wf.parts) == 2 and wf.total_bytes == sum(n for _, n in theirs.values())
    assert (wf.label, wf.format, wf.kind) == ("AWQ int4 g128 (gemm)", "int4-g128", "safetensors")
    assert wf.spec.text == TINY_DENSE
    q = {x.name: x.type for x in wf.tensors if "layers.0.mlp.down_proj" in x.name}
    assert q == {"model.layers.0.mlp.down_proj.qweight": "I32", "model.layers.0.mlp.down_proj.qzeros": "I32",
                 "model.layers.0.mlp.down_proj.scales": "F16"}
    comps = {x.name: x.component for x in wf.tensors}
    assert comps["model.layers.3.self_attn.k_proj.qweight"] == "attention"
    assert comps["model.layers.3.mlp.up_proj.scales"] == "mlp" and comps["model.embed_tokens.weight"] == "token_embedding"
    assert comps["model.layers.3.layer_scalar"] == "norms"


def test_vllm_prices_a_checkpoint_at_its_bytes_on_the_gpu(files):
    wf = read_checkpoint(files["bf16"])
    assert (wf.format, wf.label) == ("bf16", "BF16") and wf.spec.text == TINY_PLE
    terms = get_engine("vllm").weight_terms(wf.spec, wf.format, vision=False, audio=False, file=wf)
    assert {t.location.value for t in terms} == {"accelerator"}
    assert sum(t.bytes for t in terms) == sum(n for _, n in safetensors_headers(files["bf16"]).values())


_CT = {"quant_method": "compressed-tensors", "quantization_status": "compressed"}


@pytest.mark.parametrize("qc,fmt", [
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}, "int4-g128"),
    ({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True}, "int4-g32"),
    ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "int8"),
    ({**_CT, "format": "pack-quantized", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 128}}}}, "int4-g128"),
    ({**_CT, "format": "pack-quantized", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "group_size": None}}}}, "int8"),
    ({**_CT, "format": "float-quantized", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 8, "type": "float", "strategy": "channel"}, "input_activations": {"num_bits": 8, "type": "float",
                                                                                      "dynamic": True}}}}, "fp8"),
    ({**_CT, "format": "nvfp4-pack-quantized", "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
        "num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16}}}}, "nvfp4"),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16}, "nvfp4"),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, "fp8"),
    ({"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "quantized_layers": {
        "model.layers.0.mlp.experts": {"quant_algo": "NVFP4", "group_size": 16},
        "model.layers.0.self_attn.q_proj": {"quant_algo": "FP8"}}}, "nvfp4"),
    ({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}, "fp8"),
    ({"quant_method": "mxfp4"}, "mxfp4"),
])
def test_quantization_configs_as_producers_write_them(tmp_path, qc, fmt):
    assert sw_quantization({"quantization_config": qc}, tmp_path)[1] == fmt


def test_modelopt_hf_quant_config_and_unknown_methods(tmp_path):
    (tmp_path / "hf_quant_config.json").write_text(json.dumps(
        {"producer": {"name": "modelopt", "version": "0.29.0"}, "quantization": {"quant_algo": "NVFP4", "group_size": 16}}))
    assert sw_quantization({}, tmp_path) == ("ModelOpt NVFP4", "nvfp4")
    with pytest.raises(WeightFileError, match="bitsandbytes"):
        sw_quantization({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}, tmp_path)


# ---- what g4sim refuses, in one line naming the file ---------------------------------------------------

def _cut(src: Path, dst: Path, keep: int) -> Path:
    dst.write_bytes(src.read_bytes()[:keep])
    return dst


def test_corrupt_and_foreign_files_are_one_line_errors(files, tmp_path):
    src = files["mix"]
    size = src.stat().st_size
    cases = {
        _cut(src, tmp_path / "cut-data.gguf", size - 64): "truncated: tensor",  # past the last padding
        _cut(src, tmp_path / "cut-header.gguf", 300): "truncated header",
        _cut(src, tmp_path / "empty.gguf", 0): "empty file",
        write_gguf(tmp_path / "llama.gguf", TINY_MOE, arch="llama"): "general.architecture is 'llama'",
    }
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04" + bytes(100))
    cases[junk] = "not a GGUF file"
    for path, needle in cases.items():
        with pytest.raises(WeightFileError) as exc:
            read_gguf(path)
        msg = str(exc.value)
        assert needle in msg and str(path) in msg and "\n" not in msg, msg


def test_a_gguf_missing_a_gemma4_key_names_it(tmp_path):
    def without_window(w, t, arch, file_type):
        converter_metadata(w, t, arch, file_type)
        w.kv_data[0].pop(f"{arch}.attention.sliding_window")

    path = write_gguf(tmp_path / "nowindow.gguf", TINY_MOE, metadata=without_window)
    with pytest.raises(WeightFileError, match="gemma4.attention.sliding_window is missing"):
        read_gguf(path)


def test_broken_checkpoints_are_one_line_errors(files, tmp_path):
    import shutil

    bad = shutil.copytree(files["awq"], tmp_path / "cut")
    shard = sorted(bad.glob("*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(WeightFileError, match="truncated: tensor") as exc:
        read_checkpoint(bad)
    assert shard.name in str(exc.value)
    gone = shutil.copytree(files["awq"], tmp_path / "gone")
    sorted(gone.glob("*.safetensors"))[0].unlink()
    with pytest.raises(WeightFileError, match="is missing"):
        read_checkpoint(gone)
    junk = shutil.copytree(files["bf16"], tmp_path / "junk")
    (junk / "model.safetensors").write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}")
    with pytest.raises(WeightFileError, match="not JSON"):
        read_checkpoint(junk)
    other = shutil.copytree(files["bf16"], tmp_path / "llama")
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(WeightFileError, match="not Gemma 4"):
        read_checkpoint(other)
