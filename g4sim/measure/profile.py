"""Instrumented real forward passes of g4sim's model: measured memory and speed, stored with provenance.

`g4sim profile` runs each model configuration in its own worker process (``python -m g4sim.measure.profile``),
so the memory baseline is clean and an out-of-memory kill costs one data point, never earlier rows.
Per context the worker measures: parameter bytes resident, KV-cache bytes allocated (the cache's own
report), the peak memory of prefill and of decode above the pre-model baseline, prefill time and
tokens/s (= time to first token), and decode tokens/s.

Peak memory, CPU: Linux's resident high-water mark (VmHWM), reset before each phase by writing 5 to
/proc/self/clear_refs — exact and free, unlike a sampling thread.  CUDA: torch's allocator peaks
(allocated and reserved, reset per phase) and the device's used memory from NVML, so the gap between
allocator and device (context, fragmentation) is measured too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

DTYPES = ("fp32", "bf16", "fp16")
QUANTS = ("int8", "int4-g128")
# What runs the forward passes: g4sim's own model, transformers' Gemma 4 with its attention backend, or
# llama.cpp (llama-cpp-python) on a GGUF of the same spec.
IMPLS = ("g4sim", "transformers-sdpa", "transformers-eager", "llamacpp")
ENGINE_IMPLS = IMPLS[1:]  # the real engines measured beside g4sim's own model


def impls_of(name: str) -> tuple[str, ...]:
    """The measured implementations a name covers: one impl, or an engine's every one ("transformers": sdpa, eager)."""
    return tuple(i for i in ENGINE_IMPLS if name in (i, i.split("-")[0]))


@dataclass(frozen=True)
class ProfileRun:
    model: str
    contexts: tuple[int, ...]
    dtype: str = "bf16"
    device: str = "cpu"
    layers: int | None = None
    quant: str | None = None
    batch: int = 1
    decode_steps: int = 16
    chunk: int | None = None
    seed: int = 0
    checkpoint: str | None = None
    store: str | None = None
    device_profile: str = "ci-cpu-2core"
    command: str = ""
    threads: int | None = None
    impl: str = "g4sim"
    skip: tuple[int, ...] = field(default=())
    components: bool = False  # per-component time and peak memory (extra instrumented passes; g4sim.measure.components)

    def spec(self):
        from g4sim.spec import get_variant

        spec = get_variant(self.model)
        return spec.reduced(self.layers) if self.layers else spec


# ---- memory probes -----------------------------------------------------------------

def _status_kib(key: str) -> int:
    m = re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) * 1024 if m else 0


def rss_bytes() -> int:
    return _status_kib("VmRSS")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def peak_bytes() -> int:
    return _status_kib("VmHWM")


# ---- who else ran -------------------------------------------------------------------------

def busy_cpu_seconds() -> tuple[float, float]:
    """(CPU seconds every process on the machine has run, those this process has run) since boot: the
    difference over a timed phase is the CPU other work took from it (/proc/stat, /proc/self/stat)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    me = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (user + nice + system + irq + softirq + steal) / tick, (int(me[11]) + int(me[12])) / tick


def others_cpu_seconds(start: tuple[float, float]) -> float:
    """CPU seconds other processes (and the hypervisor's steal) took while a phase ran since ``start``."""
    total, mine = busy_cpu_seconds()
    return max(0.0, (total - start[0]) - (mine - start[1]))


class CudaProbe:
    def __init__(self):
        import torch

        self.torch = torch
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        except Exception:  # NVML unavailable: device-level columns stay empty
            self.nvml = None

    def reset(self) -> None:
        self.torch.cuda.synchronize()
        self.torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict[str, int]:
        self.torch.cuda.synchronize()
        out = {"allocated_peak_bytes": self.torch.cuda.max_memory_allocated(),
               "reserved_peak_bytes": self.torch.cuda.max_memory_reserved()}
        if self.nvml:
            out["device_used_bytes"] = self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used
        return out


# ---- the worker -------------------------------------------------------------------------

class G4simRunner:
    """g4sim's own model: a preallocated ring-buffer cache, chunked prefill, last-position logits."""

    def __init__(self, run: ProfileRun):
        import torch

        from g4sim.model import Gemma4ForCausalLM

        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[run.dtype]
        if run.checkpoint:
            self.model = Gemma4ForCausalLM.from_pretrained(run.checkpoint, dtype=dtype, device=run.device)
        else:
            self.model = Gemma4ForCausalLM.from_spec(run.spec(), dtype=dtype, device=run.device, seed=run.seed)
        if run.quant:
            from g4sim.model.quant import quantize_weights

            quantize_weights(self.model, run.quant)
        self.run, self.cache, self.pos = run, None, 0

    def parameter_bytes(self) -> int:
        from g4sim.model import parameter_bytes

        return parameter_bytes(self.model)

    def reserve(self, cache_tokens: int) -> None:
        """Nothing ahead of the prompt: the cache is allocated inside prefill, as generate does."""

    def prefill(self, ids, cache_tokens: int):
        self.cache = self.model.new_cache(ids.shape[0], cache_tokens)
        logits = self.model(ids, cache=self.cache, prefill_chunk=self.run.chunk)
        self.pos = ids.shape[1]
        return logits[:, -1].argmax(-1, keepdim=True)

    def decode(self, token):
        token = self.model(token, cache=self.cache, start=self.pos)[:, -1].argmax(-1, keepdim=True)
        self.pos += 1
        return token

    def kv_bytes(self) -> int:
        return self.cache.nbytes()


def _load_libraries(run: ProfileRun) -> None:
    """Import what the runner runs on before the memory baseline: library code is not the model's memory.
    (Importing transformers' Gemma 4 model and cache adds 111 MiB of resident memory after torch on this
    CPU; rows measured before 2026-11-23 counted it in their peaks.)"""
    if run.impl == "llamacpp":
        import llama_cpp  # noqa: F401
    elif run.impl.startswith("transformers-"):
        from transformers import DynamicCache, Gemma4ForCausalLM  # noqa: F401


def _runner(run: ProfileRun):
    if run.impl == "g4sim":
        return G4simRunner(run)
    if run.impl == "llamacpp":
        from g4sim.measure.llamacpp import LlamaCppRunner, gguf_file

        return LlamaCppRunner(gguf_file(run.spec().text, run.model, run.quant or run.dtype, run.seed),
                              threads=run.threads or 2, n_ubatch=run.chunk)
    import torch

    from g4sim.measure.hf import TransformersRunner

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[run.dtype]
    return TransformersRunner(run.spec().text, dtype, run.device, run.impl.split("-", 1)[1], run.seed)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def worker(run: ProfileRun) -> None:
    """Measure every context of ``run`` in this process and append one row per context."""
    import torch

    from g4sim.measure.measurements import append_row, provenance, store_path

    if run.threads:
        torch.set_num_threads(run.threads)
    cuda = run.device.startswith("cuda")
    probe = CudaProbe() if cuda else None
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    path = store_path(run.device_profile, Path(run.store) if run.store else None, run.device.split(":")[0])
    base = provenance(run.device_profile, run.command.split() if run.command else None)
    spec = run.spec()
    config = {"model": run.model, "layers": spec.text.num_layers, "layer_types": "".join(
        "S" if t == "sliding_attention" else "F" for t in spec.text.layer_types),
        "num_kv_shared_layers": spec.text.num_kv_shared_layers, "dtype": run.dtype, "quant": run.quant or "",
        "batch": run.batch, "decode_steps": run.decode_steps, "chunk": run.chunk or 0, "engine": run.impl,
        "torch_device": run.device, "checkpoint": run.checkpoint or ""}

    _load_libraries(run)
    baseline = rss_bytes()
    if probe:
        probe.reset()
    runner = _runner(run)
    resident = (probe.read()["allocated_peak_bytes"] if probe else rss_bytes() - baseline)
    params = runner.parameter_bytes()
    warm = torch.zeros(run.batch, 8, dtype=torch.long, device=run.device)
    runner.prefill(warm, 8)  # first-call kernel selection stays out of the timings
    for ctx in run.contexts:
        if ctx in run.skip:
            continue
        row: dict[str, Any] = {**base, **config, "ctx": ctx, "cache_context": ctx + run.decode_steps,
                               "param_bytes": params, "param_resident_bytes": resident}
        try:
            ids = torch.randint(0, spec.text.vocab_size, (run.batch, ctx),
                                generator=torch.Generator().manual_seed(run.seed)).to(run.device)
            runner.reserve(ctx + run.decode_steps)
            (probe.reset() if probe else reset_peak())
            sync()
            cpu0, start = busy_cpu_seconds(), time.perf_counter()
            token = runner.prefill(ids, ctx + run.decode_steps)
            sync()
            prefill_s = time.perf_counter() - start
            prefill_others = others_cpu_seconds(cpu0)
            prefill_mem = probe.read() if probe else {"peak_bytes": peak_bytes() - baseline}
            (probe.reset() if probe else reset_peak())
            cpu0, start = busy_cpu_seconds(), time.perf_counter()
            for _ in range(run.decode_steps):
                token = runner.decode(token)
            sync()
            decode_s = time.perf_counter() - start
            decode_others = others_cpu_seconds(cpu0)
            decode_mem = probe.read() if probe else {"peak_bytes": peak_bytes() - baseline}
            row.update(status="ok", kv_bytes=runner.kv_bytes(), prefill_seconds=prefill_s, ttft_seconds=prefill_s,
                       prefill_tokens_per_s=run.batch * ctx / prefill_s, decode_seconds=decode_s,
                       decode_tokens_per_s=run.batch * run.decode_steps / decode_s if run.decode_steps else "",
                       # CPU other processes took during each timed phase: a timing shared with other work says so
                       prefill_others_cpu_s=round(prefill_others, 3), decode_others_cpu_s=round(decode_others, 3))
            row.update({f"prefill_{k}": v for k, v in prefill_mem.items()})
            row.update({f"decode_{k}": v for k, v in decode_mem.items()})
            runner.cache = None
            if run.components:  # after the row's own passes, so its whole-pass figures are unhooked ones
                from g4sim.measure.components import measure_components

                try:
                    row.update(measure_components(runner, ids, ctx + run.decode_steps, run.decode_steps, cuda))
                except (RuntimeError, MemoryError) as exc:  # the row's own figures stand; say why these are absent
                    if not _is_oom(exc):
                        raise
                    runner.cache = None
                    row["components_error"] = str(exc).splitlines()[0][:200]
            del ids
        except (RuntimeError, MemoryError) as exc:
            if not _is_oom(exc):
                raise
            row.update(status="oom", error=str(exc).splitlines()[0][:200])
        from g4sim.measure.split import split_of

        row["split"] = split_of(row) if row.get("status") == "ok" else ""  # frozen at write time, before any fit
        append_row(path, row)
        print(json.dumps({"ctx": ctx, "status": row["status"]}), flush=True)


def worker_failure(returncode: int, stderr: str) -> tuple[str, str]:
    """(status, cause) of a worker that exited with ``returncode``: "oom" only when the kernel killed it
    (SIGKILL, what the OOM killer sends); anything else is a "crash" with the last line it printed."""
    if returncode in (-9, 137):
        return "oom", "killed by SIGKILL (the kernel's out-of-memory killer)"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return "crash", (f"worker exited with {returncode}: {last}" if last else f"worker exited with {returncode}")[:300]


def worker_env() -> dict[str, str]:
    """glibc's mmap threshold fixed at 64 KiB: freed tensors go back to the OS at once, so the
    resident high-water mark tracks live tensors rather than heap the allocator kept (which
    otherwise adds tens of MiB that depend on allocation history, not on the model)."""
    import os

    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


# ---- the orchestrator -------------------------------------------------------------------------

def profile(runs: list[ProfileRun], *, progress: bool = True) -> list[str]:
    """Run each configuration in a worker process; a killed worker records OOM and the sweep goes on."""
    from rich.progress import Progress

    from g4sim.measure.measurements import append_row, provenance, store_path

    outcomes: list[str] = []
    total = sum(len(r.contexts) for r in runs)
    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("profiling", total=total)
        for run in runs:
            if run.impl == "llamacpp":  # written and quantized here, once, so no worker measures it
                from g4sim.measure.llamacpp import gguf_file

                bar.update(task, description=f"{run.model} GGUF {run.quant or run.dtype}: writing / quantizing")
                gguf_file(run.spec().text, run.model, run.quant or run.dtype, run.seed, run.threads or 2)
            done: list[int] = []
            pending = list(run.contexts)
            while pending:
                bar.update(task, description=f"{run.model} {run.dtype}{'/' + run.quant if run.quant else ''} "
                                             f"ctx {pending[0]}")
                sub = replace(run, skip=tuple(done))
                with tempfile.TemporaryFile("w+") as errors:
                    proc = subprocess.Popen([sys.executable, "-m", "g4sim.measure.profile", json.dumps(asdict(sub))],
                                            stdout=subprocess.PIPE, stderr=errors, text=True, env=worker_env())
                    for line in proc.stdout:
                        if line.startswith("{"):
                            event = json.loads(line)
                            done.append(event["ctx"])
                            outcomes.append(f"{run.model} ctx {event['ctx']}: {event['status']}")
                            bar.advance(task)
                    proc.wait()
                    errors.seek(0)
                    cause = worker_failure(proc.returncode, errors.read())
                pending = [c for c in run.contexts if c not in done]
                if proc.returncode != 0 and pending:  # the worker died at pending[0]: say how, never guess
                    ctx = pending[0]
                    status, why = cause
                    row = {**provenance(run.device_profile, run.command.split() if run.command else None),
                           "model": run.model, "dtype": run.dtype, "quant": run.quant or "", "ctx": ctx,
                           "batch": run.batch, "status": status, "error": why}
                    append_row(store_path(run.device_profile, Path(run.store) if run.store else None,
                                          run.device.split(":")[0]), row)
                    done.append(ctx)
                    outcomes.append(f"{run.model} ctx {ctx}: {status} ({why})")
                    bar.advance(task)
                    pending = pending[1:]
    return outcomes


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    args["contexts"], args["skip"] = tuple(args["contexts"]), tuple(args.get("skip", ()))
    worker(ProfileRun(**args))
