"""Full-width gemma4 GGUF files as llama.cpp's converter writes them: the measured engines' inputs.

Owns the tensor table and metadata keys of a converted Gemma 4 text decoder (llama.cpp's
``conversion/gemma.py`` Gemma4Model and ``conversion/base.py`` prepare_tensors: 1-D tensors,
``*_norm.weight``, ``ffn_gate_inp`` and non-``.weight`` tensors F32, every other weight F16; the
converter adds ``rope_freqs.weight`` and maps each layer's ``layer_scalar`` to
``blk.N.layer_output_scale.weight``; names and shapes from ``src/models/gemma4.cpp`` and
``src/llama-arch.cpp``).  The table is read from the architecture facts (``TextSpec``), never from
g4sim's analytic pricing, so llama.cpp's quantizer and loader check that pricing independently.
Used by the llama.cpp scripts in ``scripts/`` and by ``g4sim profile --impl llamacpp``.
numpy and ``gguf`` only; no llama.cpp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from g4sim.spec import TextSpec

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)


def gguf_tensor_table(t: TextSpec) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """(name, numpy shape = ggml ne reversed, dtype) of every tensor a converted checkpoint holds."""
    h, V, L = t.hidden_size, t.vocab_size, t.num_layers
    out: list[tuple[str, tuple[int, ...], np.dtype]] = [("token_embd.weight", (V, h), F16)]
    if t.has_ple:
        P = t.hidden_size_per_layer_input
        out += [("per_layer_token_embd.weight", (t.vocab_size_per_layer_input, L * P), F16),
                ("per_layer_model_proj.weight", (L * P, h), F16),
                ("per_layer_proj_norm.weight", (P,), F32)]
    if not t.tie_word_embeddings:
        out.append(("output.weight", (V, h), F16))
    out += [("output_norm.weight", (h,), F32), ("rope_freqs.weight", (t.global_head_dim // 2,), F32)]
    for i in range(L):
        hd, b, nq = t.head_dim_of(i), f"blk.{i}", t.num_heads
        out += [(f"{b}.attn_norm.weight", (h,), F32), (f"{b}.attn_q.weight", (nq * hd, h), F16),
                (f"{b}.attn_q_norm.weight", (hd,), F32)]
        if not t.is_kv_shared(i):
            kv = t.kv_heads(i) * hd
            out += [(f"{b}.attn_k.weight", (kv, h), F16), (f"{b}.attn_k_norm.weight", (hd,), F32)]
            if not t.k_eq_v(i):
                out.append((f"{b}.attn_v.weight", (kv, h), F16))
        ff = t.mlp_intermediate(i)
        out += [(f"{b}.attn_output.weight", (h, nq * hd), F16), (f"{b}.post_attention_norm.weight", (h,), F32),
                (f"{b}.layer_output_scale.weight", (1,), F32), (f"{b}.ffn_norm.weight", (h,), F32),
                (f"{b}.ffn_gate.weight", (ff, h), F16), (f"{b}.ffn_up.weight", (ff, h), F16),
                (f"{b}.ffn_down.weight", (h, ff), F16), (f"{b}.post_ffw_norm.weight", (h,), F32)]
        if t.enable_moe_block:
            E, Im = t.num_experts, t.moe_intermediate_size
            out += [(f"{b}.ffn_gate_inp.weight", (E, h), F32), (f"{b}.ffn_gate_inp.scale", (h,), F32),
                    (f"{b}.pre_ffw_norm_2.weight", (h,), F32), (f"{b}.post_ffw_norm_1.weight", (h,), F32),
                    (f"{b}.post_ffw_norm_2.weight", (h,), F32),
                    (f"{b}.ffn_gate_up_exps.weight", (E, 2 * Im, h), F16),
                    (f"{b}.ffn_down_exps.weight", (E, h, Im), F16), (f"{b}.ffn_down_exps.scale", (E,), F32)]
        if t.has_ple:
            P = t.hidden_size_per_layer_input
            out += [(f"{b}.inp_gate.weight", (P, h), F16), (f"{b}.proj.weight", (h, P), F16),
                    (f"{b}.post_norm.weight", (h,), F32)]
    return out


def add_gemma4_metadata(w, t: TextSpec, file_type: int = 1) -> None:
    """The gemma4 metadata keys llama.cpp's converter writes and its gemma4 loader reads (one array per layer)."""
    arch, L = "gemma4", t.num_layers
    w.add_uint32("general.file_type", file_type)  # 1: LLAMA_FTYPE_MOSTLY_F16, as convert_hf_to_gguf.py --outtype f16
    w.add_uint32(f"{arch}.context_length", t.max_position_embeddings)
    w.add_uint32(f"{arch}.embedding_length", t.hidden_size)
    w.add_uint32(f"{arch}.block_count", L)
    w.add_array(f"{arch}.feed_forward_length", [t.mlp_intermediate(i) for i in range(L)])
    w.add_array(f"{arch}.attention.head_count", [t.num_heads] * L)
    w.add_array(f"{arch}.attention.head_count_kv", [t.kv_heads(i) for i in range(L)])
    w.add_uint32(f"{arch}.attention.key_length", t.global_head_dim)
    w.add_uint32(f"{arch}.attention.value_length", t.global_head_dim)
    w.add_uint32(f"{arch}.attention.key_length_swa", t.head_dim)
    w.add_uint32(f"{arch}.attention.value_length_swa", t.head_dim)
    w.add_uint32(f"{arch}.rope.dimension_count", t.global_head_dim)
    w.add_uint32(f"{arch}.rope.dimension_count_swa", int(t.head_dim * t.rope_sliding.partial_rotary_factor))
    w.add_uint32(f"{arch}.attention.sliding_window", t.sliding_window)
    w.add_array(f"{arch}.attention.sliding_window_pattern", [t.is_sliding(i) for i in range(L)])
    w.add_uint32(f"{arch}.attention.shared_kv_layers", t.num_kv_shared_layers)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", t.rms_norm_eps)
    w.add_float32(f"{arch}.rope.freq_base", t.rope_full.theta)
    w.add_float32(f"{arch}.rope.freq_base_swa", t.rope_sliding.theta)
    if t.final_logit_softcapping:
        w.add_float32(f"{arch}.final_logit_softcapping", t.final_logit_softcapping)
    w.add_uint32(f"{arch}.embedding_length_per_layer_input", t.hidden_size_per_layer_input)
    w.add_uint32(f"{arch}.vocab_size", t.vocab_size)
    if t.enable_moe_block:
        w.add_uint32(f"{arch}.expert_count", t.num_experts)
        w.add_uint32(f"{arch}.expert_used_count", t.top_k_experts)
        w.add_uint32(f"{arch}.expert_feed_forward_length", t.moe_intermediate_size)
    w.add_string("tokenizer.ggml.model", "no_vocab")


def write_gguf(t: TextSpec, path: Path, seed: int = 0, sparse: bool = False) -> int:
    """Write an F16 gemma4 GGUF with random weights, tensor by tensor (chunks of rows). Returns its size.

    ``sparse``: write the metadata and tensor table only; the data region is a hole (truncate), for
    llama.cpp's metadata-only load (``no_alloc``), which reads no tensor data."""
    import gguf

    w = gguf.GGUFWriter(str(path), "gemma4")
    add_gemma4_metadata(w, t)
    table = gguf_tensor_table(t)
    for name, shape, dtype in table:
        w.add_tensor_info(name, shape, dtype, int(np.prod(shape)) * dtype.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    f = w.fout[0]
    if sparse:
        w.write_padding(f, f.tell())
        size = f.tell() + sum(gguf.GGUFWriter.ggml_pad(int(np.prod(shape)) * dtype.itemsize, w.data_alignment)
                              for _, shape, dtype in table)
        f.truncate(size)
        f.close()
        w.fout = None
        return size
    rng = np.random.default_rng(seed)
    chunk = 1 << 25  # elements per write
    for name, shape, dtype in table:
        w.write_padding(f, f.tell())
        n = int(np.prod(shape))
        if dtype == F32:  # norms, scales, rope factors, router: around 1 (router random)
            data = (1.0 + 0.02 * rng.standard_normal(n, dtype=np.float32)) if "ffn_gate_inp.weight" not in name \
                else 0.02 * rng.standard_normal(n, dtype=np.float32)
            data.astype(F32).tofile(f)
        else:
            for start in range(0, n, chunk):
                (0.02 * rng.standard_normal(min(chunk, n - start), dtype=np.float32)).astype(F16).tofile(f)
        w.write_padding(f, n * dtype.itemsize)
    size = f.tell()
    w.fout[0].close()
    w.fout = None
    return size


