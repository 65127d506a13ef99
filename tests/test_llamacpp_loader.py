"""g4sim's llama.cpp buffers against llama.cpp's own load log at full width (tests/data/llamacpp_loader).

The data is made by ``python scripts/llamacpp_loader_check.py`` (llama-cpp-python 0.3.36, llama.cpp
0c1e57098, CPU build; provenance.json): ``loads.csv`` holds real loads of full-width reduced-depth gemma4
GGUFs (random weights, F16 and Q4_K_M quantized by llama.cpp) across context, micro-batch, flash
attention, K/V types, swa_full, repacking, reserved outputs and sequences; ``full_depth.csv`` holds
llama.cpp's metadata-only load (``no_alloc``) of header-only full-depth files of all four variants.

Every figure goes through the public path (``g4sim.engines.estimate_memory`` with a ``LlamaCppEngine``
set as the load was, device kind ``cpu``) and is held to the log's own precision, so a figure that moves
by one unit of its last printed digit fails (``test_a_one_unit_change_is_caught``):

* weights: the sum of the weight terms equals ``llama_model_size`` to the byte; without repacking the
  ``CPU_Mapped`` buffer equals it to 0.01 MiB;
* KV cache: cells per cache and K / V MiB of each cache (``llama_kv_cache: size = ...``) and the KV buffers;
* compute buffer: equal to ``~llama_context: CPU compute buffer size is X MiB`` (4 decimals; the
  full-depth rows 2 decimals, ``sched_reserve``) -- far inside the 3 % asked for;
* output buffer: ``llama_context: CPU output buffer size``;
* extra buffers: ``CPU_REPACK model buffer size`` equals the CPU_REPACK term (x86-avx2); none without
  repacking or for F16.

No constant is fitted: the compute buffer is llama.cpp's own reserve graph placed by a port of ggml-alloc.
The rule was developed against the graphs of the four DEVELOPMENT loads (dumped node by node); every
other row is held out.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from g4sim.analytic.components import Category, Component, Location
from g4sim.engines import Workload, estimate_memory
from g4sim.engines.llamacpp import LlamaCppEngine
from g4sim.spec import get_variant

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "llamacpp_loader"
PROVENANCE = json.loads((DATA / "provenance.json").read_text())
LOADS = list(csv.DictReader((DATA / "loads.csv").open()))
FULL = list(csv.DictReader((DATA / "full_depth.csv").open()))
KV_NAME = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "q8_0": "q8_0", "q4_0": "q4_0"}
QUANT = {"f16": "fp16", "q4_k_m": "q4_k_m"}

# the loads whose graphs were dumped while the rule was written (model, format, n_ctx, n_ubatch, flash_attn,
# type_k, swa_full, n_outputs_max, n_seq_max); nothing was fitted to them
DEVELOPMENT = {("e2b", "f16", "4096", "512", "True", "f16", "False", "1", "1"),
               ("e2b", "f16", "4096", "512", "False", "f16", "False", "0", "1"),
               ("26b-a4b", "f16", "4096", "512", "True", "q8_0", "False", "1", "1"),
               ("31b", "f16", "4096", "512", "False", "f16", "False", "0", "1")}


def _key(r: dict) -> tuple:
    return tuple(r[k] for k in ("model", "format", "n_ctx", "n_ubatch", "flash_attn", "type_k", "swa_full",
                                "n_outputs_max", "n_seq_max"))


def _buffers(text: str) -> list[tuple[str, float]]:
    return [(k, float(v)) for k, v in (x.split("=") for x in text.split(";") if x)]


def _spec(r: dict):
    if r["no_alloc"] == "True":
        return get_variant(r["model"])
    depth = PROVENANCE["loads"]["models"][r["model"]]
    return get_variant(r["model"]).reduced(depth["layers"], depth["kv_shared_layers"])


def _engine(r: dict) -> LlamaCppEngine:
    seqs, outputs = int(r["n_seq_max"]), int(r["n_outputs_max"])
    return LlamaCppEngine(
        n_ubatch=int(r["n_ubatch"]), n_batch=int(r["n_ubatch"]), flash_attn=r["flash_attn"] == "True",
        swa_full=r["swa_full"] == "True", kv_unified=r["kv_unified"] == "True", n_gpu_layers=0,
        repack=r["repack"] == "True", cpu_features="x86-avx2",
        cache_type_v=None if r["type_v"] == r["type_k"] else KV_NAME[r["type_v"]],
        n_outputs_max=None if outputs == seqs else outputs)  # None: llama-server's rule (the -np slots)


def _memory(r: dict):
    seqs = int(r["n_seq_max"])
    return estimate_memory(_spec(r), ctx=int(r["n_ctx"]) // seqs, batch=seqs, quant=QUANT[r["format"]],
                           kv_dtype=KV_NAME[r["type_k"]], engine=_engine(r), device_kind="cpu")


def _terms(m, prefix: str) -> int:
    return sum(t.bytes for t in m.terms if t.component in (Component.COMPUTE_BUFFER, Component.REPACKED_WEIGHTS)
               and t.source.startswith(prefix))


def _mib(n: int, places: int = 2) -> str:
    return f"{n / 2**20:.{places}f}"


def check_row(r: dict) -> None:
    """Every buffer of one load, as g4sim computes it, against the log."""
    m = _memory(r)
    seqs = int(r["n_seq_max"])
    spec = _spec(r)
    t = spec.text
    eng = _engine(r).bind(Workload(spec, int(r["n_ctx"]) // seqs, seqs, QUANT[r["format"]], KV_NAME[r["type_k"]]))
    # weights: llama_model_size (every tensor's ggml_nbytes) to the byte
    weights = sum(x.bytes for x in m.terms if x.category is Category.WEIGHTS and x.component is not Component.REPACKED_WEIGHTS)
    assert weights == int(r["model_size_bytes"])
    model_buffers = dict(_buffers(r["model_buffers_mib"]))
    if r["no_alloc"] == "False":
        if r["repack"] == "True" and "CPU_REPACK" in model_buffers:
            assert f"{model_buffers['CPU_Mapped']:.2f}" <= _mib(weights)  # the mapped range, repacked ends cut off
        else:
            assert f"{model_buffers['CPU_Mapped']:.2f}" == _mib(weights)
        # extra buffers: CPU_REPACK as modelled for this CPU (x86-avx2), none where none is logged
        assert _mib(_terms(m, "CPU_REPACK")) == f"{model_buffers.get('CPU_REPACK', 0.0):.2f}"
        assert _terms(m, "AMX") == 0
    # KV cache: the full cache first, then the SWA cache, as llama_kv_cache_iswa creates them
    logged = re.findall(r"(\d+)c/(\d+)L/K \w+ ([\d.]+)/V \w+ ([\d.]+)", r["kv_caches"])
    cells_ctx = int(r["n_ctx"]) if r["kv_unified"] == "True" else int(r["n_ctx"]) // seqs
    streams = 1 if r["kv_unified"] == "True" else seqs
    k_type, v_type = KV_NAME[r["type_k"]], KV_NAME[r["type_v"]]
    kv_buffers = _buffers(r["kv_buffers_mib"])
    for (cells, layers, k_mib, v_mib), sliding, component, (_, buf) in zip(
            logged, (False, True), (Component.KV_FULL, Component.KV_SLIDING), kv_buffers):
        group = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
        assert int(layers) == len(group)
        assert int(cells) == eng.kv_cells(t, group[0], cells_ctx)  # cells per stream (the log: "N/N seqs")
        k = sum(eng.kv_layer_bytes(t, i, cells_ctx, k_type, v_type)[0] for i in group) * streams
        v = sum(eng.kv_layer_bytes(t, i, cells_ctx, k_type, v_type)[1] for i in group) * streams
        assert (_mib(k), _mib(v)) == (k_mib, v_mib)
        assert m.get(component, None) == k + v
        if r["no_alloc"] == "False":
            assert _mib(k + v) == f"{buf:.2f}"
    # compute buffer: the CPU compute buffer llama.cpp reserved
    compute = _terms(m, "compute buffer")
    ((_, fine),) = _buffers(r["compute_buffers_mib_4dp"]) if r["compute_buffers_mib_4dp"] else [(None, None)]
    ((_, coarse),) = _buffers(r["compute_buffers_mib"])
    assert _mib(compute) == f"{coarse:.2f}"
    if fine is not None:
        assert _mib(compute, 4) == f"{fine:.4f}"
    assert abs(compute / 2**20 - (fine or coarse)) <= 0.03 * (fine or coarse)
    # output buffer: n_vocab x slots x 4 B in host memory
    ((_, out),) = _buffers(r["output_buffers_mib"])
    assert _mib(m.get(Component.LOGITS, Location.HOST)) == f"{out:.2f}"


def _id(r: dict) -> str:
    return "-".join(r[k] for k in ("model", "format", "n_ctx", "n_ubatch")) + (
        f"-fa{r['flash_attn'][0]}-{r['type_k']}-{r['type_v']}-swafull{r['swa_full'][0]}-repack{r['repack'][0]}"
        f"-out{r['n_outputs_max']}-seq{r['n_seq_max']}{'u' if r['kv_unified'] == 'True' else ''}")


@pytest.mark.parametrize("row", LOADS, ids=_id)
def test_reduced_depth_load_matches_the_log(row):
    check_row(row)


@pytest.mark.parametrize("row", FULL, ids=lambda r: "full-" + _id(r))
def test_full_depth_reserve_matches_the_log(row):
    check_row(row)


def test_split_development_and_held_out():
    development = [r for r in LOADS if _key(r) in DEVELOPMENT]
    held_out = [r for r in LOADS if _key(r) not in DEVELOPMENT] + FULL
    assert len(development) == len(DEVELOPMENT) and len(held_out) > 20 * len(development)
    for rows in (development, held_out):  # both exact: no constant fitted to either
        worst = max(abs(_terms(_memory(r), "compute buffer") / 2**20 - float(
            (r["compute_buffers_mib_4dp"] or r["compute_buffers_mib"]).split("=")[1])) for r in rows)
        assert worst <= 0.005


def test_data_covers_the_mechanisms():
    assert {(r["model"], r["format"]) for r in LOADS} == {(m, f) for m in ("e2b", "26b-a4b", "31b")
                                                         for f in ("f16", "q4_k_m")}
    for field, values in (("flash_attn", {"True", "False"}), ("swa_full", {"True", "False"}),
                          ("repack", {"True", "False"}), ("kv_unified", {"True", "False"}),
                          ("n_ctx", {"4096", "32768"}), ("n_ubatch", {"512", "2048"}),
                          ("type_k", {"f16", "q8_0", "f32", "bf16", "q4_0"}), ("n_outputs_max", {"0", "1", "4"})):
        assert values <= {r[field] for r in LOADS}, field
    assert {r["model"] for r in FULL} == {"e2b", "e4b", "26b-a4b", "31b"} and all(r["no_alloc"] == "True" for r in FULL)
    assert any("CPU_REPACK" in r["model_buffers_mib"] for r in LOADS)


def test_provenance_names_the_build_and_the_cpu():
    p = PROVENANCE
    assert p["llama_cpp_python"] == "0.3.36" and "0c1e57098" in p["llama_cpp_commit"]
    assert p["cpu_model"] and "avx2" in p["cpu_flags"].split() and "amx_int8" not in p["cpu_flags"].split()
    assert "REPACK = 1" in p["ggml_system_info"]
    for key in ("loads", "full_depth"):
        assert p[key]["date_utc"] and p[key]["command"].startswith("python scripts/llamacpp_loader_check.py")


@pytest.mark.parametrize("field,delta", [("model_size_bytes", 1), ("compute_buffers_mib_4dp", 0.0001),
                                         ("output_buffers_mib", 0.01), ("kv_buffers_mib", 0.01),
                                         ("kv_caches", 1), ("model_buffers_mib", 0.01)])
def test_a_one_unit_change_is_caught(field, delta):
    """Each figure of a row, moved by one unit of its last printed digit, fails check_row."""
    row = next(r for r in LOADS if r["format"] == "q4_k_m" and r["repack"] == "True" and r["flash_attn"] == "True"
               and r["n_seq_max"] == "1")
    check_row(row)
    bumped = dict(row)
    if field == "model_size_bytes":
        bumped[field] = str(int(row[field]) + delta)
    elif field == "kv_caches":
        bumped[field] = re.sub(r"^(\d+)c", lambda m: f"{int(m.group(1)) + delta}c", row[field])
    else:
        places = 4 if field.endswith("4dp") else 2
        name, value = row[field].split(";")[-1].split("=")
        bumped[field] = ";".join(row[field].split(";")[:-1] + [f"{name}={float(value) + delta:.{places}f}"])
    with pytest.raises(AssertionError):
        check_row(bumped)


def test_repacking_is_a_setting_and_only_on_a_cpu():
    r = next(r for r in LOADS if r["format"] == "q4_k_m" and r["repack"] == "True")
    spec = _spec(r)
    on = estimate_memory(spec, ctx=4096, quant="q4_k_m", kv_dtype="fp16", device_kind="cpu",
                         engine=LlamaCppEngine(n_gpu_layers=0))
    off = estimate_memory(spec, ctx=4096, quant="q4_k_m", kv_dtype="fp16", device_kind="cpu",
                          engine=LlamaCppEngine(n_gpu_layers=0, repack=False))
    gpu = estimate_memory(spec, ctx=4096, quant="q4_k_m", kv_dtype="fp16", device_kind="gpu",
                          engine=LlamaCppEngine())
    assert _terms(on, "CPU_REPACK") > 0 and _terms(off, "CPU_REPACK") == 0 and _terms(gpu, "CPU_REPACK") == 0
    # --no-repack round-trips through the command line
    parsed = LlamaCppEngine.parse_command("llama-server -m x-Q4_K_M.gguf -np 1 --no-repack -b 1024")
    assert parsed.engine.repack is False and parsed.engine.n_batch == 1024
    # x86 repacks Q4_K but not Q6_K; ARM (NEON + dotprod) also Q6_K, the tied output among them
    arm = estimate_memory(spec, ctx=4096, quant="q4_k_m", kv_dtype="fp16", device_kind="cpu",
                          engine=LlamaCppEngine(n_gpu_layers=0, cpu_features="arm-dotprod"))
    assert _terms(arm, "CPU_REPACK") > _terms(on, "CPU_REPACK")


@pytest.mark.llamacpp
def test_live_full_depth_reserve(tmp_path):
    """Rerun one committed row against the installed llama.cpp: e2b at full depth, header-only (no data)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/llamacpp_quantize_check.py)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("llamacpp_loader_check",
                                                  ROOT / "scripts" / "llamacpp_loader_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    committed = next(r for r in FULL if r["model"] == "e2b" and r["n_ctx"] == "4096" and r["n_ubatch"] == "512"
                     and r["flash_attn"] == "True" and r["n_outputs_max"] == "1")
    path = tmp_path / "e2b-header-only.gguf"
    script.write_gguf(get_variant("e2b").text, path, sparse=True)
    case = {k: committed[k] for k in ("model", "format")} | {
        "n_ctx": 4096, "n_ubatch": 512, "flash_attn": True, "type_k": "f16", "type_v": "f16", "swa_full": False,
        "repack": True, "n_outputs_max": 1, "n_seq_max": 1, "kv_unified": False, "no_alloc": True}
    row, _log = script.load(path, case)
    live = {k: str(v) for k, v in row.items()}
    for field in ("compute_buffers_mib", "kv_caches", "output_buffers_mib", "model_size_bytes"):
        assert live[field] == committed[field], field
    check_row(committed | {f: live[f] for f in ("compute_buffers_mib", "kv_caches", "model_size_bytes")})
