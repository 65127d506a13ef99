"""llama.cpp as a measured engine: its GGUF files for a g4sim spec, and a runner for the profiler.

``gguf_file`` writes a full-width, reduced-depth gemma4 GGUF with random F16 weights
(``gguf_files.write_gguf``: the converter's tensor table, not g4sim's pricing) and quantizes it with
llama.cpp's own quantizer (``llama_model_quantize``, a real run) into the format asked for; files are
kept in a cache directory and reused.  ``LlamaCppRunner`` loads the file through llama-cpp-python's C
API on the CPU as llama-server does (``n_gpu_layers = 0``, memory-mapped, weights repacked, flash
attention on, ``swa_full`` off, ``n_batch`` 2048, ``n_ubatch`` 512 unless ``--chunk`` sets it, one
sequence), then prefill and greedy decode steps with llama.cpp's own kernels: nothing of g4sim's
model or torch runs in the timed region.  The KV bytes are the ``KV buffer size`` lines llama.cpp logs,
one per cache (two decimals of MiB each).  llama_cpp is imported lazily; its build is the one
``scripts/llamacpp_quantize_check.py`` installs (llama-cpp-python 0.3.36, native and AMX off).
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

from g4sim.units import MiB

# g4sim's GGUF formats -> llama_ftype (include/llama.h); fp16 is the converter's own output
FTYPES = {"fp16": 1, "bf16": 32, "q8_0": 7, "q6_k": 18, "q5_k_m": 17, "q5_0": 8, "q4_k_m": 15, "q4_k_s": 14, "iq4_xs": 30,
          "q4_0": 2, "q3_k_m": 12, "q2_k": 10}
N_BATCH, N_UBATCH = 2048, 512  # llama-server's defaults (common/common.h)
_KV_BUFFER = re.compile(r"llama_kv_cache:\s+\S+ KV buffer size =\s+([\d.]+) MiB")


def cache_dir() -> Path:
    """Where generated GGUF files live: $G4SIM_GGUF_CACHE, else ~/.cache/g4sim/gguf."""
    return Path(os.environ.get("G4SIM_GGUF_CACHE") or Path.home() / ".cache" / "g4sim" / "gguf")


def file_name(model: str, layers: int, fmt: str, seed: int) -> str:
    return f"gemma4-{model}-{layers}L-seed{seed}-{fmt}.gguf"


# The head of every llama.cpp child process (the quantizer here, the checks in scripts/): its arguments as JSON
# in argv[1], every log line (DEBUG included) on stdout, the backend up.
CHILD_PREAMBLE = r"""
import ctypes, json, sys
import llama_cpp
a = json.loads(sys.argv[1])

@llama_cpp.llama_log_callback
def log(level, text, user_data):
    sys.stdout.write(text.decode("utf-8", "replace"))
    sys.stdout.flush()

llama_cpp.llama_log_set(log, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()
"""

_QUANTIZE = CHILD_PREAMBLE + r"""
qp = llama_cpp.llama_model_quantize_default_params()
qp.ftype, qp.nthread = a["ftype"], a["threads"]
rc = llama_cpp.llama_model_quantize(a["src"].encode(), a["dst"].encode(), ctypes.byref(qp))
print(f"\nQUANTIZE_RC={rc}", flush=True)
"""


def run_llamacpp(code: str, args: dict, timeout: float | None = None) -> str:
    """Run ``code`` (``CHILD_PREAMBLE`` + a body) in a fresh Python with ``args``; its whole log, stdout then stderr."""
    import json

    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout)
    return done.stdout + done.stderr


def quantize(src: Path, dst: Path, fmt: str, threads: int = 2) -> None:
    """``llama_model_quantize`` of ``src`` into ``fmt`` (a real run, no imatrix) in a child process, so the
    quantizer's buffers never touch the caller's memory."""
    log = run_llamacpp(_QUANTIZE, {"src": str(src), "dst": str(dst), "ftype": FTYPES[fmt], "threads": threads})
    if "QUANTIZE_RC=0" not in log:
        raise RuntimeError(f"llama_model_quantize to {fmt} failed on {src.name}: {log.strip()[-3000:]}")


def gguf_file(spec, model: str, fmt: str, seed: int = 0, threads: int = 2) -> Path:
    """The GGUF of ``spec`` (a full-width reduced-depth text spec) in ``fmt``, written / quantized once."""
    from g4sim.files import atomic
    from g4sim.measure.gguf_files import write_gguf

    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    f16 = d / file_name(model, spec.num_layers, "fp16", seed)
    out = d / file_name(model, spec.num_layers, fmt, seed)
    if out.exists():
        return out
    if not f16.exists():
        with atomic(f16) as tmp:
            write_gguf(spec, Path(tmp), seed=seed)
    if fmt != "fp16":
        with atomic(out) as tmp:
            quantize(f16, Path(tmp), fmt, threads)
    return out


class LlamaCppRunner:
    """Prefill then greedy decode on one llama.cpp context per prompt, CPU only, timed around llama_decode."""

    def __init__(self, path: Path, *, threads: int, n_ubatch: int | None = None, repack: bool = True):
        import llama_cpp

        self.ll, self.threads, self.n_ubatch = llama_cpp, threads, n_ubatch or N_UBATCH
        self.log: list[str] = []

        @llama_cpp.llama_log_callback
        def _log(level, text, user_data):
            self.log.append(text.decode("utf-8", "replace"))

        self._log = _log  # kept alive: llama.cpp calls it for as long as the library lives
        llama_cpp.llama_log_set(_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_extra_bufts = repack
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}: {''.join(self.log)[-300:]}")
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.ctx, self.reserved_tokens, self.kv_logged_bytes = None, 0, 0

    def parameter_bytes(self) -> int:
        """llama_model_size: the bytes of every tensor in the file."""
        return int(self.ll.llama_model_size(self.model))

    def reserve(self, cache_tokens: int) -> None:
        """A fresh context of ``cache_tokens`` (llama.cpp pads it to 256): KV cache and compute buffer."""
        ll = self.ll
        if self.ctx:
            ll.llama_free(self.ctx)
        cp = ll.llama_context_default_params()
        cp.n_ctx = cache_tokens
        cp.n_batch, cp.n_ubatch = N_BATCH, self.n_ubatch
        cp.n_seq_max = 1
        cp.n_threads = cp.n_threads_batch = self.threads
        cp.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.swa_full = False  # llama-server's default (the C API's is true)
        start = len(self.log)
        self.ctx = ll.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context of {cache_tokens}")
        found = _KV_BUFFER.findall("".join(self.log[start:]))  # one line per cache: the sliding and the full one
        self.kv_logged_bytes = sum(int(round(float(x) * MiB)) for x in found)
        self.reserved_tokens = cache_tokens

    def _decode(self, tokens) -> int:
        """Decode ``tokens`` (a 1-D int32 array) in n_batch pieces; the argmax of the last logits."""
        import numpy as np

        ll = self.ll
        for start in range(0, len(tokens), N_BATCH):
            piece = np.ascontiguousarray(tokens[start:start + N_BATCH], dtype=np.int32)
            batch = ll.llama_batch_get_one(piece.ctypes.data_as(ctypes.POINTER(ll.llama_token)), len(piece))
            if ll.llama_decode(self.ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
        return int(logits.argmax())

    def prefill(self, ids, cache_tokens: int | None = None):
        """``ids``: a (1, n) tensor, into the context ``reserve`` made (one is made here if none fits)."""
        import torch

        need = cache_tokens or ids.shape[1]
        if self.ctx is None or need != self.reserved_tokens:
            self.reserve(need)
        token = self._decode(ids[0].to(torch.int32).numpy())
        return torch.tensor([[token]])

    def decode(self, token):
        import numpy as np
        import torch

        return torch.tensor([[self._decode(np.array([int(token[0, 0])], dtype=np.int32))]])

    def kv_bytes(self) -> int:
        return self.kv_logged_bytes
