"""External check of g4sim's llama.cpp rule against a real llama.cpp (llama-cpp-python).

Writes small random-weight gemma4 GGUF files with the `gguf` package (metadata keys and tensor names
as llama.cpp's gemma4 loader reads them: src/models/gemma4.cpp, src/llama-arch.cpp), loads each in a
subprocess with llama_cpp.Llama(verbose=True) across contexts, micro-batch sizes, flash attention
on/off, swa_full on/off and f16 / q8_0 caches, parses the KV-cache lines of llama.cpp's log
(`llama_kv_cache: size = ... MiB (N cells, L layers, ...), K (...): ... MiB, V (...): ... MiB`), and
compares them with g4sim.engines.llamacpp.  Prints the table and writes tests/data/llamacpp_logged.csv.

Run: pip install llama-cpp-python && python scripts/llamacpp_check.py
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from g4sim.engines import get_engine  # noqa: E402
from g4sim.spec import FULL, SLIDING, TextSpec  # noqa: E402

from g4sim.measure.gguf_files import add_gemma4_metadata  # noqa: E402  (one gemma4 GGUF metadata writer)
from g4sim.measure.llamacpp import run_llamacpp  # noqa: E402

S, F = SLIDING, FULL
SPECS = {
    "e2b-like": TextSpec(hidden_size=128, num_layers=10, layer_types=(S, S, S, S, F) * 2, sliding_window=64,
                         num_heads=4, num_kv_heads=1, num_global_kv_heads=None, head_dim=32, global_head_dim=64,
                         attention_k_eq_v=False, num_kv_shared_layers=5, intermediate_size=256,
                         use_double_wide_mlp=True, vocab_size=512, hidden_size_per_layer_input=16,
                         vocab_size_per_layer_input=512),
    "26b-like": TextSpec(hidden_size=128, num_layers=6, layer_types=(S, S, F) * 2, sliding_window=128, num_heads=4,
                         num_kv_heads=2, num_global_kv_heads=1, head_dim=32, global_head_dim=64,
                         attention_k_eq_v=True, num_kv_shared_layers=0, intermediate_size=64,
                         use_double_wide_mlp=False, vocab_size=512, enable_moe_block=True, num_experts=8,
                         top_k_experts=2, moe_intermediate_size=32),
    "31b-like": TextSpec(hidden_size=128, num_layers=6, layer_types=(S, S, S, S, S, F), sliding_window=128,
                         num_heads=8, num_kv_heads=4, num_global_kv_heads=2, head_dim=32, global_head_dim=64,
                         attention_k_eq_v=True, num_kv_shared_layers=0, intermediate_size=256,
                         use_double_wide_mlp=False, vocab_size=512),
}
CASES = [  # (spec, n_ctx, n_ubatch, flash_attn, swa_full, cache type)
    ("e2b-like", 1000, 512, True, False, "f16"), ("e2b-like", 4096, 512, False, False, "f16"),
    ("e2b-like", 4096, 128, True, True, "f16"), ("e2b-like", 2048, 512, True, False, "q8_0"),
    ("26b-like", 3000, 512, True, False, "f16"), ("26b-like", 3000, 256, False, False, "f16"),
    ("26b-like", 8192, 512, True, True, "q8_0"), ("31b-like", 700, 512, True, False, "f16"),
    ("31b-like", 5000, 64, True, False, "q8_0"), ("31b-like", 5000, 512, True, True, "f16"),
]
GGML_TYPE = {"f16": 1, "q8_0": 8}
KV_NAME = {"f16": "fp16", "q8_0": "q8_0"}


def write_gguf(t: TextSpec, path: Path) -> None:
    import gguf

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "gemma4")
    add_gemma4_metadata(w, t, file_type=0)  # 0: LLAMA_FTYPE_ALL_F32, as every tensor below
    L = t.num_layers

    def add(name: str, *shape: int) -> None:  # numpy shape = ggml ne reversed
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    def ones(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    h, V = t.hidden_size, t.vocab_size
    add("token_embd.weight", V, h)
    ones("output_norm.weight", h)
    full = [i for i in range(L) if not t.is_sliding(i)]
    if full:
        w.add_tensor("rope_freqs.weight", np.ones(t.global_head_dim // 2, dtype=np.float32))
    if t.has_ple:
        P = t.hidden_size_per_layer_input
        add("per_layer_token_embd.weight", V, L * P)
        add("per_layer_model_proj.weight", L * P, h)
        ones("per_layer_proj_norm.weight", P)
    for i in range(L):
        hd, b = t.head_dim_of(i), f"blk.{i}"
        ones(f"{b}.attn_norm.weight", h)
        add(f"{b}.attn_q.weight", t.num_heads * hd, h)
        ones(f"{b}.attn_q_norm.weight", hd)
        if not t.is_kv_shared(i):
            add(f"{b}.attn_k.weight", t.kv_heads(i) * hd, h)
            ones(f"{b}.attn_k_norm.weight", hd)
            if not t.k_eq_v(i):
                add(f"{b}.attn_v.weight", t.kv_heads(i) * hd, h)
        add(f"{b}.attn_output.weight", h, t.num_heads * hd)
        ones(f"{b}.post_attention_norm.weight", h)
        ones(f"{b}.ffn_norm.weight", h)
        ff = t.mlp_intermediate(i)
        add(f"{b}.ffn_gate.weight", ff, h)
        add(f"{b}.ffn_up.weight", ff, h)
        add(f"{b}.ffn_down.weight", h, ff)
        ones(f"{b}.post_ffw_norm.weight", h)
        if t.enable_moe_block:
            E, Im = t.num_experts, t.moe_intermediate_size
            add(f"{b}.ffn_gate_inp.weight", E, h)
            ones(f"{b}.ffn_gate_inp.scale", h)
            for name in ("pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2"):
                ones(f"{b}.{name}.weight", h)
            add(f"{b}.ffn_gate_up_exps.weight", E, 2 * Im, h)
            add(f"{b}.ffn_down_exps.weight", E, h, Im)
            ones(f"{b}.ffn_down_exps.scale", E)
        if t.has_ple:
            P = t.hidden_size_per_layer_input
            add(f"{b}.inp_gate.weight", P, h)
            add(f"{b}.proj.weight", h, P)
            ones(f"{b}.post_norm.weight", h)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


CHILD = r"""
import json, sys, llama_cpp
a = json.loads(sys.argv[1])
kw = dict(model_path=a["path"], n_ctx=a["n_ctx"], n_batch=a["n_ubatch"], n_ubatch=a["n_ubatch"], verbose=True,
          flash_attn=a["flash_attn"], type_k=a["type"], type_v=a["type"], n_gpu_layers=0)
try:
    llama_cpp.Llama(swa_full=a["swa_full"], **kw)
except TypeError:
    llama_cpp.Llama(**kw)
"""

_BUFFERS = re.compile(r"(model|compute) buffer size = +([\d.]+) MiB")
_KV = re.compile(r"size = +([\d.]+) MiB \( *(\d+) cells, +(\d+) layers.*K \((\w+)\): +([\d.]+) MiB, V \((\w+)\): +([\d.]+) MiB")


def run_case(path: Path, n_ctx: int, n_ubatch: int, fa: bool, swa_full: bool, cache: str) -> list[dict]:
    args = {"path": str(path), "n_ctx": n_ctx, "n_ubatch": n_ubatch, "flash_attn": fa, "swa_full": swa_full,
            "type": GGML_TYPE[cache]}
    log = run_llamacpp(CHILD, args, timeout=300)
    rows = [dict(zip(("mib", "cells", "layers", "k_type", "k_mib", "v_type", "v_mib"), m.groups())) for m in _KV.finditer(log)]
    if not rows:
        raise RuntimeError(f"no KV lines in llama.cpp's log:\n{log[-3000:]}")
    buffers = {kind: float(mib) for kind, mib in _BUFFERS.findall(log)}
    for r in rows:
        r["model_mib"], r["compute_mib"] = buffers.get("model"), buffers.get("compute")
    return rows


def predicted_weights_bytes(t: TextSpec) -> int:
    """F32 GGUF: every parameter at 4 bytes, plus the rope_freqs vector llama.cpp adds for full layers."""
    from g4sim.analytic import count_params
    from g4sim.spec import ModelSpec

    return 4 * count_params(ModelSpec("check", t)).total + 4 * (t.global_head_dim // 2)


def predicted(t: TextSpec, n_ctx: int, n_ubatch: int, fa: bool, swa_full: bool, cache: str) -> list[dict]:
    eng = get_engine("llamacpp", n_ubatch=n_ubatch, flash_attn=fa, swa_full=swa_full)
    out = []
    for sliding in (False, True):
        layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
        if not layers:
            continue
        k = sum(eng.kv_layer_bytes(t, i, n_ctx, KV_NAME[cache], KV_NAME[cache])[0] for i in layers)
        v = sum(eng.kv_layer_bytes(t, i, n_ctx, KV_NAME[cache], KV_NAME[cache])[1] for i in layers)
        out.append({"cells": eng.kv_cells(t, layers[0], n_ctx), "layers": len(layers), "k_bytes": k, "v_bytes": v})
    return out


def main() -> None:
    import llama_cpp

    rows = []
    print(f"{'case':<50}{'cache':<6}{'cells log/pred':>16}{'layers':>7}{'K MiB log/pred':>18}{'V MiB log/pred':>18}")
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for name, spec in SPECS.items():
            paths[name] = Path(d) / f"{name}.gguf"
            write_gguf(spec, paths[name])
        for name, n_ctx, ub, fa, swa_full, cache in CASES:
            logged = run_case(paths[name], n_ctx, ub, fa, swa_full, cache)
            pred = predicted(SPECS[name], n_ctx, ub, fa, swa_full, cache)
            for group, (lg, pr) in zip(("full", "swa"), zip(logged, pred)):
                label = f"{name} n_ctx={n_ctx} ub={ub} fa={int(fa)} swa_full={int(swa_full)} {group}"
                print(f"{label:<50}{cache:<6}{lg['cells']:>8}/{pr['cells']:<7}{lg['layers']:>7}"
                      f"{lg['k_mib']:>10}/{pr['k_bytes'] / 2**20:<7.2f}{lg['v_mib']:>10}/{pr['v_bytes'] / 2**20:<7.2f}")
                rows.append({"spec": name, "n_ctx": n_ctx, "n_ubatch": ub, "flash_attn": fa, "swa_full": swa_full,
                             "cache_type": cache, "group": group, "logged_cells": lg["cells"],
                             "logged_layers": lg["layers"], "logged_k_mib": lg["k_mib"], "logged_v_mib": lg["v_mib"],
                             "logged_model_mib": lg["model_mib"], "logged_compute_mib": lg["compute_mib"],
                             "llama_cpp_python": llama_cpp.__version__,
                             "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                             "command": "python scripts/llamacpp_check.py"})
    print(f"\n{'spec':<10}{'model buffer MiB log/pred':>28}{'compute buffer MiB log/est (n_ubatch)':>40}")
    for name in SPECS:
        for r in [r for r in rows if r["spec"] == name and r["group"] == "full"]:
            est = get_engine("llamacpp", n_ubatch=r["n_ubatch"], flash_attn=r["flash_attn"]).activation_terms(
                SPECS[name], ctx=r["n_ctx"], batch=1, quant="fp32")[0].bytes / 2**20
            print(f"{name:<10}{r['logged_model_mib']:>18}/{predicted_weights_bytes(SPECS[name]) / 2**20:<9.2f}"
                  f"{r['logged_compute_mib']:>24}/{est:<9.2f}({r['n_ubatch']})")
    out = ROOT / "tests" / "data" / "llamacpp_logged.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
