"""llama.cpp's load log at full width: model, KV, output, compute and CPU extra (repack) buffers.

What it does:

1. Writes full-width, reduced-depth gemma4 GGUF files with random weights (``--models``): the real
   hidden sizes, 262,144-token vocabulary and head geometry of each variant, one or two whole periods
   of its layer pattern (``DEPTHS``: e2b 10 layers of which the last 5 are KV-shared, 26b-a4b 6 layers,
   31b 6 layers).  The metadata keys and tensor names are those llama.cpp's gemma4 loader reads
   (``src/models/gemma4.cpp`` ``load_arch_hparams`` / ``load_arch_tensors``, ``src/llama-arch.cpp``),
   as ``scripts/llamacpp_check.py`` writes them, with the tensors llama.cpp's converter adds
   (``rope_freqs``, ``blk.N.layer_output_scale``); 2-D weights F16, 1-D tensors and the MoE router F32
   (``conversion/base.py`` prepare_tensors).  The tensor table below is this script's own, not g4sim's.
   Data: N(0, 0.02) from numpy's PCG64 (seed 0), written tensor by tensor so RAM stays low.
2. Quantizes each F16 file to Q4_K_M with llama.cpp's own quantizer (``llama_model_quantize``, a real
   run, not a dry run; nthread 2, no imatrix).
3. Loads each file in a fresh subprocess through llama_cpp's C API (``llama_model_load_from_file`` +
   ``llama_init_from_model``: defaults of ``llama_model_default_params`` / ``llama_context_default_params``
   except what a case sets), CPU only (``n_gpu_layers = 0``), with every log line (DEBUG included)
   captured through ``llama_log_set``, across context (4096, 32768 and off-grid), micro-batch (512,
   2048 and off-grid; ``n_batch = n_ubatch``), flash attention on/off, K/V cache types (f16, q8_0; a
   few f32 / bf16 / q4_0 and q8_0 K beside f16 V; a quantized V only with flash attention),
   ``swa_full`` on/off, weight repacking (``use_extra_bufts``: llama-server's ``--repack`` /
   ``--no-repack``), the reserved outputs (``n_outputs_max``: 0 = n_batch, the C API's default; the
   sequence count = what llama-server sets for ``-np``: ``tools/server/server-context.cpp``
   ``server_output_limits``) and 1 or 4 sequences (unified KV cache or not).  ggml's features on this
   CPU: ``llama_print_system_info`` (provenance.json; ``REPACK = 1``, AVX2, no AMX).
4. Parses, per device / buffer type: ``load_tensors: <buft> model buffer size`` (``CPU_Mapped``, and
   ``CPU_REPACK`` when weights were repacked), ``llama_context: <buft> output buffer size``,
   ``llama_kv_cache: <buft> KV buffer size`` and the per-cache ``size = ... (cells, layers, ...)`` lines,
   ``sched_reserve: <buft> compute buffer size`` (2 decimals) and, at ``llama_free``, ``compute buffer
   size is X MiB`` (DEBUG, 4 decimals), plus ``llama_model_size`` (exact tensor bytes) and the loader's
   repack lines.  Writes ``tests/data/llamacpp_loader/loads.csv`` (one row per load) and
   ``provenance.json`` (llama-cpp-python version, llama.cpp commit, ggml system info, CPU model and
   flags from /proc/cpuinfo, date, command).
5. ``--full-depth``: the four variants at full depth (e2b, e4b, 26b-a4b, 31b) as header-only files (the
   data region a hole: no disk, no RAM), loaded with ``no_alloc`` -- llama.cpp's memory-fit pass, which
   reserves the same compute graph without allocating anything -- into ``full_depth.csv``.

RAM: the largest file is 26b-a4b at 6 layers, 10.5 GiB F16 (memory-mapped, never all resident); the
largest buffer reserved is 31b's no-flash-attention compute buffer at 32k x 2048 (8.7 GiB, reserved by
malloc, never touched).  During the runs ``free`` showed about 4 GiB used besides the page cache.

Run: python scripts/llamacpp_loader_check.py                 (all reduced models; ~30 GB of files, ~20 min on 2 cores)
     python scripts/llamacpp_loader_check.py --models e2b    (one model)
     python scripts/llamacpp_loader_check.py --keep DIR      (keep / reuse the GGUF files in DIR)
     python scripts/llamacpp_loader_check.py --full-depth    (the full-depth rows, seconds)
Needs llama-cpp-python 0.3.36 (scripts/llamacpp_quantize_check.py builds it: GGML_NATIVE=OFF, AMX off).
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import datetime as dt
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from g4sim.spec import TextSpec, get_variant  # noqa: E402  (the architecture facts only)

from g4sim.measure.gguf_files import write_gguf  # noqa: E402  (one gemma4 GGUF layout)
from g4sim.measure.llamacpp import CHILD_PREAMBLE, quantize, run_llamacpp  # noqa: E402  (one llama.cpp child, one quantizer)

OUT_DIR = ROOT / "tests" / "data" / "llamacpp_loader"
LLAMA_CPP_COMMIT = "0c1e57098"  # vendored by llama-cpp-python 0.3.36 (its CHANGELOG.md)
DEPTHS = {"e2b": (10, 5), "26b-a4b": (6, 0), "31b": (6, 0)}  # (layers, KV-shared layers): whole periods
FORMATS = ("f16", "q4_k_m")  # the F16 file as written, and llama_model_quantize's Q4_K_M of it
GGML_TYPE = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2}  # enum ggml_type


def reduced_spec(model: str) -> TextSpec:
    layers, shared = DEPTHS[model]
    return get_variant(model).reduced(layers, shared).text


# ---- 2./3. llama.cpp in a subprocess ------------------------------------------

CHILD = CHILD_PREAMBLE + r"""
mp = llama_cpp.llama_model_default_params()
mp.n_gpu_layers = 0
mp.use_extra_bufts = a["repack"]
if a.get("no_alloc"):  # metadata only (llama.cpp's memory-fit pass): nothing allocated, no data read
    mp.no_alloc = True
    mp.load_mode = 0  # LLAMA_LOAD_MODE_NONE: no_alloc requires no mmap
model = llama_cpp.llama_model_load_from_file(a["path"].encode(), mp)
if not model:
    print("\nLOAD_FAILED", flush=True)
    sys.exit(1)
print(f"\nMODEL_SIZE_BYTES={llama_cpp.llama_model_size(model)}", flush=True)
cp = llama_cpp.llama_context_default_params()
cp.n_ctx = a["n_ctx"]
cp.n_batch = a["n_ubatch"]
cp.n_ubatch = a["n_ubatch"]
cp.n_seq_max = a["n_seq_max"]
cp.kv_unified = a["kv_unified"]
cp.n_outputs_max = a["n_outputs_max"]
cp.n_threads = cp.n_threads_batch = 2
cp.flash_attn_type = 1 if a["flash_attn"] else 0
cp.type_k = a["type_k"]
cp.type_v = a["type_v"]
cp.swa_full = a["swa_full"]
ctx = llama_cpp.llama_init_from_model(model, cp)
print("\nCONTEXT_OK" if ctx else "\nCONTEXT_FAILED", flush=True)
if ctx:
    llama_cpp.llama_free(ctx)  # logs, at DEBUG, the compute buffer to 4 decimals (not with no_alloc)
llama_cpp.llama_model_free(model)
"""


def run_child(args: dict, timeout: int = 1800) -> str:
    return run_llamacpp(CHILD, args, timeout)


_MODEL_BUF = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB")
_OUTPUT_BUF = re.compile(r"llama_context:\s+(\S+)\s+output buffer size =\s+([\d.]+) MiB")
_KV_BUF = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+([\d.]+) MiB")
_KV = re.compile(r"llama_kv_cache: size = +([\d.]+) MiB \( *(\d+) cells, +(\d+) layers.*?K \((\w+)\): +([\d.]+) MiB, "
                 r"V \((\w+)\): +([\d.]+) MiB")
_COMPUTE = re.compile(r"sched_reserve:\s+(\S+) compute buffer size =\s+([\d.]+) MiB")
_COMPUTE_FINE = re.compile(r"~llama_context:\s+(\S+) compute buffer size (?:is|of)\s+([\d.]+) MiB")
_GRAPH = re.compile(r"sched_reserve: graph.*?nodes = ([\d /]+), splits = ([\d /]+)")
_REPACKED = re.compile(r"repack: repack tensor (\S+) with (\w+)")
_NOT_REPACKED = re.compile(r"done_getting_tensors: tensor .*? cannot be used with preferred buffer type \S+, "
                           r"using \S+ instead")


def repack_summary(log: str) -> str:
    """What the loader said about repacking: how many tensors into which layouts, and the first refusal."""
    done = _REPACKED.findall(log)
    layouts = sorted({layout for _, layout in done})
    refused = _NOT_REPACKED.search(log)
    return "; ".join(([f"repacked {len(done)} tensors ({', '.join(layouts)})"] if done else [])
                     + ([refused.group(0)] if refused else []))


def parse_load(log: str) -> dict:
    """The buffers of one load, per buffer type (``name=MiB;...``), as the log prints them."""
    if "CONTEXT_OK" not in log:
        raise RuntimeError(f"llama.cpp did not create the context:\n{log[-4000:]}")

    def joined(pairs) -> str:
        return ";".join(f"{k}={v}" for k, v in pairs)

    kv = _KV.findall(log)
    graph = _GRAPH.search(log)
    return {
        "model_buffers_mib": joined(_MODEL_BUF.findall(log)),
        "model_size_bytes": int(re.search(r"MODEL_SIZE_BYTES=(\d+)", log).group(1)),
        "output_buffers_mib": joined(_OUTPUT_BUF.findall(log)),
        "kv_buffers_mib": joined(_KV_BUF.findall(log)),
        "kv_caches": ";".join(f"{c}c/{n}L/K {kt} {k}/V {vt} {v}" for _, c, n, kt, k, vt, v in kv),
        "compute_buffers_mib": joined(_COMPUTE.findall(log)),
        "compute_buffers_mib_4dp": joined(_COMPUTE_FINE.findall(log)),
        "graph_nodes": graph.group(1).strip() if graph else "",
        "graph_splits": graph.group(2).strip() if graph else "",
        "repack_log": repack_summary(log),
    }


# ---- the cases ------------------------------------------------------------------

def cases(model: str, fmt: str, quick: bool = False) -> list[dict]:
    """The loads of one file: a grid of context x micro-batch x (flash attention, K/V type) x swa_full x
    reserved outputs (0: the C API's n_batch; 1: llama-server's -np 1), repacking on, one sequence; for Q4_K_M
    the same grid at n_ctx 4096 with repacking off; then a few off-grid loads (context not a multiple of 256,
    other micro-batches, a q8_0 K cache beside an f16 V, 4 sequences with and without a unified KV cache)."""
    out = []
    attn = [(False, "f16", "f16"), (True, "f16", "f16"), (True, "q8_0", "q8_0")]  # quantized V needs FA
    base = {"model": model, "format": fmt, "n_seq_max": 1, "kv_unified": False, "no_alloc": False}
    for n_ctx, ub, (fa, tk, tv), swa_full, outputs in itertools.product(
            (4096, 32768), (512, 2048), attn, (False, True), (0, 1)):
        if quick and (n_ctx, swa_full) != (4096, False):
            continue
        case = {**base, "n_ctx": n_ctx, "n_ubatch": ub, "flash_attn": fa, "type_k": tk, "type_v": tv,
                "swa_full": swa_full, "repack": True, "n_outputs_max": outputs}
        out.append(case)
        if fmt != "f16" and n_ctx == 4096:
            out.append({**case, "repack": False})
    if not quick:
        extra = [  # (n_ctx, n_ubatch, (fa, K, V), n_outputs_max, n_seq_max, kv_unified)
            (12000, 1024, attn[0], 0, 1, False), (12000, 1024, attn[1], 1, 1, False),
            (65536, 256, attn[2], 0, 1, False), (65536, 256, attn[0], 1, 1, False),
            (3000, 4096, attn[1], 0, 1, False), (3000, 4096, attn[0], 1, 1, False),
            (8192, 512, (False, "q8_0", "f16"), 1, 1, False), (8192, 512, (True, "q8_0", "f16"), 1, 1, False),
            (16384, 512, attn[1], 4, 4, False), (16384, 512, attn[1], 4, 4, True),
            (16384, 512, attn[0], 4, 4, False), (16384, 2048, attn[2], 4, 4, True),
            (4096, 512, (True, "f32", "f32"), 1, 1, False), (4096, 512, (False, "f32", "f32"), 0, 1, False),
            (4096, 512, (True, "bf16", "bf16"), 1, 1, False), (4096, 512, (True, "q4_0", "q4_0"), 1, 1, False)]
        for n_ctx, ub, (fa, tk, tv), outputs, seqs, unified in extra:
            out.append({**base, "n_ctx": n_ctx, "n_ubatch": ub, "flash_attn": fa, "type_k": tk, "type_v": tv,
                        "swa_full": False, "repack": True, "n_outputs_max": outputs, "n_seq_max": seqs,
                        "kv_unified": unified})
    return out


# full-depth variants, header-only files (the data region a hole), llama.cpp's metadata-only load (no_alloc)
FULL_DEPTH = ("e2b", "e4b", "26b-a4b", "31b")


def full_depth_cases(model: str) -> list[dict]:
    out = []
    for n_ctx, ub, fa, outputs in itertools.product((4096, 32768, 131072), (512, 2048), (False, True), (0, 1)):
        out.append({"model": model, "format": "f16", "n_ctx": n_ctx, "n_ubatch": ub, "flash_attn": fa,
                    "type_k": "f16", "type_v": "f16", "swa_full": False, "repack": True, "n_outputs_max": outputs,
                    "n_seq_max": 1, "kv_unified": False, "no_alloc": True})
    out.append({**out[-1], "type_k": "q8_0", "type_v": "q8_0", "n_ctx": 65536})
    out.append({**out[-1], "n_seq_max": 2, "n_outputs_max": 2, "n_ctx": 32768})
    return out


def load(path: Path, case: dict) -> dict:
    args = {"mode": "load", "path": str(path), "n_ctx": case["n_ctx"], "n_ubatch": case["n_ubatch"],
            "flash_attn": case["flash_attn"], "type_k": GGML_TYPE[case["type_k"]],
            "type_v": GGML_TYPE[case["type_v"]], "swa_full": case["swa_full"], "repack": case["repack"],
            "n_outputs_max": case["n_outputs_max"], "n_seq_max": case["n_seq_max"],
            "kv_unified": case["kv_unified"], "no_alloc": case.get("no_alloc", False)}
    t0 = time.time()
    log = run_child(args)
    row = {**case, **parse_load(log), "load_s": round(time.time() - t0, 1)}
    return row, log


# ---- provenance -------------------------------------------------------------------

def cpu_info() -> tuple[str, str]:
    model, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model, flags


def build_info() -> dict[str, str]:
    import llama_cpp

    lib_dir, out = Path(llama_cpp.__file__).parent / "lib", {}
    for lib_name, fn in (("libggml-base", "ggml_version"), ("libggml-base", "ggml_commit"),
                         ("libllama", "llama_version")):
        try:
            lib = ctypes.CDLL(str(next(p for p in sorted(lib_dir.iterdir()) if p.name.startswith(lib_name + "."))))
            f = getattr(lib, fn)
            f.restype = ctypes.c_char_p
            out[fn] = f().decode()
        except (StopIteration, AttributeError, OSError) as e:
            out[fn] = f"unavailable ({e})"
    return out


def system_info() -> str:
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()


FIELDS = ["model", "format", "n_ctx", "n_ubatch", "flash_attn", "type_k", "type_v", "swa_full", "repack",
          "n_outputs_max", "n_seq_max", "kv_unified", "no_alloc", "model_buffers_mib", "model_size_bytes",
          "output_buffers_mib", "kv_buffers_mib",
          "kv_caches", "compute_buffers_mib", "compute_buffers_mib_4dp", "graph_nodes", "graph_splits",
          "repack_log", "load_s"]


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _run(path: Path, todo: list[dict], rows: list[dict], out: Path, logs: Path | None) -> None:
    for case in todo:
        row, log = load(path, case)
        if logs:
            logs.mkdir(parents=True, exist_ok=True)
            key = "-".join(str(case[k]) for k in ("model", "format", "n_ctx", "n_ubatch", "flash_attn", "type_k",
                                                  "type_v", "swa_full", "repack", "n_outputs_max", "n_seq_max",
                                                  "kv_unified", "no_alloc"))
            (logs / f"{key}.log").write_text(log)
        rows.append(row)
        print(f"{case['model']} {case['format']} ctx={case['n_ctx']} ub={case['n_ubatch']} fa={int(case['flash_attn'])} "
              f"{case['type_k']}/{case['type_v']} swa_full={int(case['swa_full'])} repack={int(case['repack'])} "
              f"outputs={case['n_outputs_max']} seqs={case['n_seq_max']}{'u' if case['kv_unified'] else ''}: "
              f"model {row['model_buffers_mib']} | KV {row['kv_buffers_mib']} | out {row['output_buffers_mib']} | "
              f"compute {row['compute_buffers_mib_4dp'] or row['compute_buffers_mib']} ({row['load_s']} s)", flush=True)
        _write(out, rows)  # after every load: a crash keeps what was measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(DEPTHS))
    ap.add_argument("--formats", nargs="*", default=list(FORMATS))
    ap.add_argument("--full-depth", nargs="*", default=None, metavar="MODEL",
                    help=f"instead: the full-depth variants ({', '.join(FULL_DEPTH)} when none named), header-only")
    ap.add_argument("--keep", type=Path, help="directory to keep (and reuse) the GGUF files in")
    ap.add_argument("--quick", action="store_true", help="only n_ctx 4096 without swa_full")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--logs", type=Path, help="directory to write every raw log to")
    args = ap.parse_args()
    import llama_cpp

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    d = args.keep or Path(tmp.name)
    d.mkdir(parents=True, exist_ok=True)
    try:
        if args.full_depth is not None:
            csv_path = args.out / "full_depth.csv"
            rows: list[dict] = []
            for model in args.full_depth or FULL_DEPTH:
                t = get_variant(model).text
                path = d / f"{model}-{t.num_layers}L-F16-header-only.gguf"
                size = write_gguf(t, path, sparse=True)
                print(f"{model}: wrote {path.name} ({size / 2**30:.1f} GiB apparent, "
                      f"{os.stat(path).st_blocks * 512 / 2**20:.1f} MiB on disk)", flush=True)
                _run(path, full_depth_cases(model), rows, csv_path, args.logs)
                path.unlink()
        else:
            csv_path = args.out / "loads.csv"
            rows = [r for r in csv.DictReader(csv_path.open())
                    if r["model"] not in args.models or r["format"] not in args.formats] if csv_path.exists() else []
            for model in args.models:
                t = reduced_spec(model)
                f16 = d / f"{model}-{t.num_layers}L-F16.gguf"
                if not f16.exists():
                    t0 = time.time()
                    size = write_gguf(t, f16)
                    print(f"{model}: wrote {f16.name} ({size / 2**30:.2f} GiB) in {time.time() - t0:.0f} s", flush=True)
                for fmt in args.formats:
                    path = f16 if fmt == "f16" else d / f"{model}-{t.num_layers}L-{fmt.upper()}.gguf"
                    if not path.exists():
                        t0 = time.time()
                        quantize(f16, path, fmt)
                        print(f"{model}: quantized {path.name} ({path.stat().st_size / 2**30:.2f} GiB) "
                              f"in {time.time() - t0:.0f} s", flush=True)
                    _run(path, cases(model, fmt, args.quick), rows, csv_path, args.logs)
                    if path != f16 and args.keep is None:
                        path.unlink()
                if args.keep is None:
                    f16.unlink()
    finally:
        if tmp is not None:
            tmp.cleanup()
    model_name, flags = cpu_info()
    prov_path = args.out / "provenance.json"
    provenance = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    provenance.update({
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_commit": f"ggml-org/llama.cpp@{LLAMA_CPP_COMMIT} (llama-cpp-python {llama_cpp.__version__} "
                            "CHANGELOG.md)",
        **build_info(),
        "build": "pip install --no-cache-dir --no-binary llama-cpp-python llama-cpp-python==0.3.36 with CMAKE_ARGS="
                 "\"-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX512=OFF\"",
        "ggml_system_info": system_info(),
        "cpu_model": model_name,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    })
    key = "full_depth" if args.full_depth is not None else "loads"
    provenance[key] = {
        "file": csv_path.name,
        "rows": len(rows),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(["scripts/llamacpp_loader_check.py", *sys.argv[1:]]),
        "models": ({m: {"layers": get_variant(m).text.num_layers, "kv_shared_layers":
                        get_variant(m).text.num_kv_shared_layers} for m in (args.full_depth or FULL_DEPTH)}
                   if key == "full_depth" else
                   {m: {"layers": DEPTHS[m][0], "kv_shared_layers": DEPTHS[m][1]} for m in DEPTHS}),
        "method": ("full-depth gemma4 F16 GGUFs with the metadata and tensor table only (the data region a hole); "
                   "llama_model_load_from_file with no_alloc (llama.cpp's memory-fit pass: nothing allocated, "
                   "model and KV buffers print 0.00) + llama_init_from_model; the compute buffer is the same "
                   "reserve as a real load (checked on the reduced files), printed to 2 decimals"
                   if key == "full_depth" else
                   "full-width reduced-depth gemma4 GGUFs, random N(0, 0.02) F16 weights (seed 0), Q4_K_M by "
                   "llama_model_quantize (nthread 2, no imatrix); each load a fresh process: "
                   "llama_model_load_from_file (n_gpu_layers 0, use_extra_bufts = repack, default mmap / lazy "
                   "modes) + llama_init_from_model (n_batch = n_ubatch, n_threads 2, the row's n_seq_max, "
                   "kv_unified, n_outputs_max), log via llama_log_set"),
    }
    prov_path.write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {csv_path} ({len(rows)} rows) and {prov_path.name}")


if __name__ == "__main__":
    main()
