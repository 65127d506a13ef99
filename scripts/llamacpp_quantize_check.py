"""llama.cpp's own quantizer as the oracle for g4sim's GGUF per-tensor types and file bytes.

What it does, for the four Gemma 4 text decoders (e2b, e4b, 26b-a4b, 31b):

1. Installs (if missing) a pinned llama-cpp-python, built from its sdist with
   ``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX512=OFF"``.
   Native and AMX are off on purpose: a ``GGML_NATIVE=ON`` build compiles ggml for the build machine's
   CPU, and on some of the CPUs this project runs on that build segfaults on decode in ggml's AMX path.
   The quantizer's dry run does no arithmetic, but the same library also loads the files (step 3), so
   one portable build serves every check.  ``--no-cache-dir`` keeps pip from reusing a wheel that an
   earlier build made with other flags (pip's wheel cache does not key on CMAKE_ARGS).
2. Writes header-only ("sparse") full-depth GGUF files with the ``gguf`` package: the ``gemma4``
   metadata keys and the tensor table exactly as llama.cpp's converter writes a Hugging Face
   checkpoint (``conversion/gemma.py`` Gemma4Model, ``conversion/base.py`` prepare_tensors: 1-D
   tensors, ``*_norm.weight``, ``ffn_gate_inp`` and non-``.weight`` tensors F32, every other weight
   F16; the converter adds ``rope_freqs.weight`` and maps each layer's ``layer_scalar`` buffer to
   ``blk.N.layer_output_scale.weight``), with no tensor data: the data region is a hole made with
   truncate, so the 60 GB 31B file takes no disk.  The tensor names and shapes are this script's own
   (from llama.cpp's ``src/models/gemma4.cpp`` loader and ``src/llama-arch.cpp`` names), not g4sim's,
   and every file is first loaded by llama.cpp's model loader with ``no_alloc`` (metadata only, no
   data read), which rejects a missing, misshapen or unexpected tensor.
3. Runs ``llama_model_quantize`` with ``llama_model_quantize_params.dry_run = True`` (through
   llama_cpp's ctypes API) for every GGUF format g4sim lists, one subprocess per run, capturing
   llama.cpp's log through ``llama_log_set``.  The dry run prints one line per tensor:
   ``[  12/ 601] blk.0.attn_v.weight - [  2816,   2048, 1, 1], type = f16, size = ... MiB -> ... MiB (q6_K)``
   (the type it converts to; no ``->`` when the tensor is kept as is) and a final ``quant size``.
   The bytes of each tensor are ``nrows * ggml_row_size(type, ne0)`` -- the formula the dry run
   itself uses (``src/llama-quant.cpp``), evaluated by calling ``ggml_row_size`` in the installed
   libggml -- and are checked against the MiB the log prints (rounded as printed), and their sum
   against the logged ``quant size``.
4. Writes ``tests/data/llamacpp_quantize/<variant>.csv`` (variant, format, tensor, type, bytes, ne),
   ``totals.csv`` and ``provenance.json``; ``tests/test_llamacpp_quantize.py`` compares g4sim with them.

Run: python scripts/llamacpp_quantize_check.py            (installs the pin if needed, ~4-11 min on 2 cores)
     python scripts/llamacpp_quantize_check.py --install   (only build/install the pinned llama-cpp-python)
No model weights are downloaded: the files hold only the tensor table.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from g4sim.measure.gguf_files import write_gguf  # noqa: E402
from g4sim.measure.llamacpp import CHILD_PREAMBLE, FTYPES as LLAMA_FTYPES, run_llamacpp  # noqa: E402
from g4sim.spec import get_variant  # noqa: E402

PIN = "0.3.36"  # newest llama-cpp-python on PyPI with gemma4 and llama_model_quantize_params.dry_run
LLAMA_CPP_COMMIT = "0c1e57098"  # the llama.cpp commit llama-cpp-python 0.3.36 vendors (its CHANGELOG.md)
CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX512=OFF"
INSTALL_CMD = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-binary", "llama-cpp-python",
               f"llama-cpp-python=={PIN}"]

VARIANTS = ("e2b", "e4b", "26b-a4b", "31b")
# g4sim's quantized GGUF formats -> llama_ftype (include/llama.h; one table: g4sim/measure/llamacpp.py)
FTYPES = {fmt: ftype for fmt, ftype in LLAMA_FTYPES.items() if fmt not in ("fp16", "bf16")}
OUT_DIR = ROOT / "tests" / "data" / "llamacpp_quantize"


# ---- 1. the pinned llama-cpp-python ---------------------------------------

def installed_version() -> str | None:
    out = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_llama_cpp(log: Path) -> None:
    if installed_version() == PIN:
        return
    print(f"building llama-cpp-python=={PIN} from source (CMAKE_ARGS={CMAKE_ARGS}); log: {log}", flush=True)
    with log.open("w") as f:
        rc = subprocess.run(INSTALL_CMD, env={**os.environ, "CMAKE_ARGS": CMAKE_ARGS}, stdout=f,
                            stderr=subprocess.STDOUT).returncode
    if rc != 0 or installed_version() != PIN:
        sys.exit(f"pip install failed (exit {rc}); see {log}")


# ---- 2./3. llama.cpp in a subprocess (the files: g4sim/measure/gguf_files.py) -------------

CHILD = CHILD_PREAMBLE + r"""
if a["mode"] == "load":
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.no_alloc = True  # metadata only: creates every tensor the gemma4 loader asks for, reads no data
    mp.load_mode = 0  # LLAMA_LOAD_MODE_NONE: no_alloc requires no mmap
    mp.lazy_mode = 0
    model = llama_cpp.llama_model_load_from_file(a["path"].encode(), mp)
    print("\nLOAD_OK" if model else "\nLOAD_FAILED", flush=True)
    if model:
        llama_cpp.llama_model_free(model)
else:
    qp = llama_cpp.llama_model_quantize_default_params()
    qp.ftype = a["ftype"]
    qp.dry_run = True
    qp.nthread = 1
    rc = llama_cpp.llama_model_quantize(a["path"].encode(), a["out"].encode(), ctypes.byref(qp))
    print(f"\nQUANTIZE_RC={rc}", flush=True)
"""


def run_child(args: dict) -> str:
    return run_llamacpp(CHILD, args, timeout=600)


_LINE = re.compile(r"\[\s*\d+/\s*(\d+)\]\s+(\S+)\s+- \[([\d, ]+)\], type =\s*(\w+), size =\s*([\d.]+) MiB"
                   r"(?: ->\s*([\d.]+) MiB \((\w+)\))?")
_TOTAL = re.compile(r"quant size\s*=\s*([\d.]+) MiB")


class GGML:
    """ggml_row_size and ggml_type_name from the installed libggml (llama.cpp's own arithmetic)."""

    def __init__(self) -> None:
        import llama_cpp

        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        self.lib = ctypes.CDLL(str(next(p for p in sorted(lib_dir.iterdir()) if p.name.startswith("libggml-base"))))
        self.lib.ggml_row_size.restype = ctypes.c_size_t
        self.lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        self.lib.ggml_type_name.restype, self.lib.ggml_type_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
        from gguf import GGMLQuantizationType  # only the ids; the names come from libggml

        self.types: dict[str, int] = {}
        for q in GGMLQuantizationType:
            name = self.lib.ggml_type_name(int(q))
            if name:
                self.types.setdefault(name.decode(), int(q))

    def nbytes(self, type_name: str, ne: list[int]) -> int:
        rows = int(np.prod(ne[1:]))
        return rows * self.lib.ggml_row_size(self.types[type_name], ne[0])


def parse_dry_run(log: str, ggml: GGML) -> tuple[list[dict], float, bool, int]:
    """Per-tensor rows, the logged total MiB, whether an imatrix would be required, fallback count."""
    rows, n_tensors = [], None
    for m in _LINE.finditer(log):
        n_tensors = int(m.group(1))
        name, ne = m.group(2), [int(x) for x in m.group(3).split(",")]
        src, new_mib, new = m.group(4), m.group(6), m.group(7)
        ggml_type = new or src
        b = ggml.nbytes(ggml_type, ne)
        printed = float(new_mib if new else m.group(5))
        decimals = 2 if new else 3
        if round(b / 2**20, decimals) != round(printed, decimals) and abs(b / 2**20 - printed) > 10 ** -decimals:
            raise RuntimeError(f"{name}: {b} bytes of {ggml_type} do not print as {printed} MiB")
        while ne and ne[-1] == 1 and len(ne) > 1:
            ne = ne[:-1]
        rows.append({"tensor": name, "type": ggml_type.upper(), "bytes": b, "ne": "x".join(map(str, ne)),
                     "source_type": src.upper()})
    total = _TOTAL.search(log)
    if not rows or total is None or len(rows) != n_tensors:
        raise RuntimeError(f"dry run log not understood:\n{log[-3000:]}")
    fallback = re.search(r"WARNING: (\d+) of \d+ tensor\(s\) required fallback", log)
    return rows, float(total.group(1)), "will require an imatrix" in log, int(fallback.group(1)) if fallback else 0


def build_info() -> dict[str, str]:
    """ggml_version / ggml_commit (libggml) and llama_version (libllama) as the built libraries report them."""
    import llama_cpp

    lib_dir, out = Path(llama_cpp.__file__).parent / "lib", {}
    wanted = (("libggml-base", "ggml_version"), ("libggml-base", "ggml_commit"), ("libllama", "llama_version"))
    for lib_name, fn in wanted:
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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.stdout.strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--install", action="store_true", help="only build and install the pinned llama-cpp-python")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--formats", nargs="*", default=list(FTYPES))
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()
    ensure_llama_cpp(Path(tempfile.gettempdir()) / f"llama-cpp-python-{PIN}-build.log")
    if args.install:
        return
    import llama_cpp

    ggml = GGML()
    args.out.mkdir(parents=True, exist_ok=True)
    totals = []
    with tempfile.TemporaryDirectory() as d:
        for variant in args.variants:
            t = get_variant(variant).text
            path = Path(d) / f"{variant}-f16.gguf"
            size = write_gguf(t, path, sparse=True)
            log = run_child({"mode": "load", "path": str(path)})
            if "LOAD_OK" not in log:
                raise RuntimeError(f"llama.cpp's loader rejected {path.name}:\n{log[-3000:]}")
            print(f"{variant}: wrote {path.name} ({size / 1e9:.1f} GB apparent, "
                  f"{os.stat(path).st_blocks * 512 / 1e6:.1f} MB on disk); llama.cpp's loader accepts it", flush=True)
            rows = []
            for fmt in args.formats:
                log = run_child({"mode": "quantize", "path": str(path), "out": str(Path(d) / "unused.gguf"),
                                 "ftype": FTYPES[fmt]})
                if "QUANTIZE_RC=0" not in log:
                    raise RuntimeError(f"{variant} {fmt}: llama_model_quantize failed:\n{log[-3000:]}")
                tensor_rows, total_mib, imatrix, fallback = parse_dry_run(log, ggml)
                total = sum(r["bytes"] for r in tensor_rows)
                if abs(total / 2**20 - total_mib) > 0.005:
                    raise RuntimeError(f"{variant} {fmt}: tensors sum to {total} B, log says {total_mib} MiB")
                rows += [{"variant": variant, "format": fmt, **r} for r in tensor_rows]
                totals.append({"variant": variant, "format": fmt, "tensors": len(tensor_rows), "bytes": total,
                               "logged_quant_size_mib": f"{total_mib:.2f}", "fallback_tensors": fallback,
                               "needs_imatrix": imatrix})
                print(f"  {fmt:<7} {len(tensor_rows):5d} tensors {total:>15,d} B  ({total_mib:.2f} MiB logged, "
                      f"{fallback} fallbacks{', imatrix required' if imatrix else ''})", flush=True)
            with (args.out / f"{variant}.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["variant", "format", "tensor", "type", "bytes", "ne",
                                                       "source_type"])
                writer.writeheader()
                writer.writerows(rows)
            path.unlink()
    if set(args.variants) == set(VARIANTS) and set(args.formats) == set(FTYPES):
        with (args.out / "totals.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(totals[0]))
            writer.writeheader()
            writer.writerows(totals)
        provenance = {
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp_commit": f"ggml-org/llama.cpp@{LLAMA_CPP_COMMIT} (llama-cpp-python {PIN} CHANGELOG.md)",
            **build_info(),
            "build": f"pip install --no-cache-dir --no-binary llama-cpp-python llama-cpp-python=={PIN} "
                     f"with CMAKE_ARGS=\"{CMAKE_ARGS}\"",
            "ggml_system_info": system_info(),
            "gguf_py": importlib.metadata.version("gguf"),
            "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": "python scripts/llamacpp_quantize_check.py",
            "method": "header-only F16/F32 GGUF per variant (data region a hole), llama_model_quantize with "
                      "dry_run=True, nthread=1, no imatrix; bytes = nrows * ggml_row_size(type, ne0)",
            "cpu": cpu_model(),
            "python": platform.python_version(),
        }
        (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
