"""g4sim's model in bf16, int8 and int4-g128 (packed CPU kernels), and transformers' Gemma4ForCausalLM in bf16:
same config, same weights, side by side in one run on this CPU.

Real-width, reduced-depth E2B (4 layers) and 26B-A4B (2 layers: one sliding, one full), 2 threads.  Each
implementation / format runs in its own process: prefill tokens/s, decode tokens/s, decode ms per token
spent in the decoder (the step minus the LM head: bf16 in the bf16 run, the tied table int8 per row in both
quantized formats; at reduced depth it is about half a bf16 step) and peak resident memory (VmHWM above the pre-model baseline, from after the
warm-up through prefill and decode).  Ratios: each format against g4sim bf16; g4sim bf16 against
transformers bf16.

Run: python benchmarks/bench_model_quant.py [--prompt 512] [--decode 16] [--threads 2] [--rounds 2]
[--cases e2b:4,26b-a4b:2]   (about 2 minutes per round)
Targets: int8 and int4 decode >= 1.5x bf16; g4sim >= 1.0x transformers in speed and no larger in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CASES = {"e2b": 4, "26b-a4b": 2}
RUNS = (("g4sim", "bf16"), ("g4sim", "int8"), ("g4sim", "int4-g128"), ("transformers", "bf16"))


def child(impl: str, fmt: str, ckpt: str, prompt: int, decode: int, threads: int) -> dict:
    import torch

    from g4sim.measure.profile import peak_bytes, reset_peak, rss_bytes

    torch.set_num_threads(threads)
    if impl == "transformers":
        import transformers
    base = rss_bytes()
    reset_peak()
    head = [0.0]
    if impl == "g4sim":
        from g4sim.model import Gemma4ForCausalLM, parameter_bytes

        model = Gemma4ForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16)
        if fmt != "bf16":
            from g4sim.model.quant import quantize_weights

            quantize_weights(model, fmt)
            drop_mapped_pages(ckpt)
        logits = model.logits

        def timed_logits(hidden):  # the LM head's share of a step
            start = time.perf_counter()
            out = logits(hidden)
            head[0] += time.perf_counter() - start
            return out

        model.logits = timed_logits
        weights = parameter_bytes(model)
    else:
        model = transformers.Gemma4ForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16).eval()
        lm_head = model.lm_head

        def pre(*_):
            head.append(time.perf_counter())

        def post(*_):
            head[0] += time.perf_counter() - head.pop()

        lm_head.register_forward_pre_hook(pre)
        lm_head.register_forward_hook(post)
        weights = sum(p.nbytes for p in model.parameters())
    load_peak = peak_bytes() - base
    ids = torch.randint(0, 1000, (1, prompt), generator=torch.Generator().manual_seed(0))

    def run(ids, steps):
        if impl == "g4sim":
            cache = model.new_cache(1, ids.shape[1] + steps)
            token = model(ids, cache=cache)[:, -1].argmax(-1, keepdim=True)
        else:
            out = model(ids, use_cache=True, logits_to_keep=1)
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        yield
        for step in range(steps):
            if impl == "g4sim":
                token = model(token, cache=cache, start=ids.shape[1] + step)[:, -1].argmax(-1, keepdim=True)
            else:
                out = model(token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        yield

    with torch.no_grad():
        for _ in run(ids[:, :16], 3):  # warm-up: first-call costs of every kernel
            pass
        reset_peak()
        steps = run(ids, decode)
        start = time.perf_counter()
        next(steps)
        prefill = time.perf_counter() - start
        head[0] = 0.0
        start = time.perf_counter()
        next(steps)
        dec = time.perf_counter() - start
    return {"prefill_tok_s": prompt / prefill, "decode_tok_s": decode / dec,
            "decoder_ms_tok": (dec - head[0]) / decode * 1e3, "peak_mib": (peak_bytes() - base) / 2**20,
            "weights_mib": weights / 2**20, "load_peak_mib": load_peak / 2**20}


def drop_mapped_pages(directory: str) -> None:
    """Unmap this process's resident pages of the checkpoint's memory-mapped files (madvise DONTNEED).

    The loader memory-maps the safetensors files; quantizing reads every bf16 matrix, and those clean file pages
    stay resident (counted in RSS / VmHWM) while the embeddings still hold the mapping, although the model no
    longer uses them.  Dropped, they are read back from the page cache if touched again (the embedding rows a
    prompt looks up), as in the bf16 run."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith(os.path.realpath(directory)):
                begin, end = (int(x, 16) for x in fields[0].split("-"))
                libc.madvise(begin, end - begin, 4)  # MADV_DONTNEED


def make_checkpoint(model: str, layers: int, directory: str) -> None:
    import torch
    import transformers

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from conftest import hf_text_config
    from g4sim.spec import get_variant

    spec = get_variant(model).reduced(layers)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # built in bf16: no fp32 copy of 26B-A4B's expert banks
    try:
        with torch.device("cpu"):
            ref = transformers.Gemma4ForCausalLM(hf_text_config(spec.text))
    finally:
        torch.set_default_dtype(torch.float32)
    ref.save_pretrained(directory)


def best(runs: list[dict]) -> dict:
    """Of one process's rounds: the fastest speed and decoder time (a VM's noise only ever slows a run down), and
    the largest memory (a peak that was reached once can be reached again)."""
    pick = {"prefill_tok_s": max, "decode_tok_s": max, "decoder_ms_tok": min}
    return {k: pick.get(k, max)(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each process (best speed, largest memory kept)")
    ap.add_argument("--cases", default=",".join(f"{m}:{n}" for m, n in CASES.items()),
                    help="model:layers,... (default %(default)s)")
    args = ap.parse_args()
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    print(f"prompt {args.prompt}, decode {args.decode}, {args.threads} threads, bf16 activations, best of "
          f"{args.rounds} rounds (speed; memory: the largest)")
    print("ratio rows ('x ...'): every ratio is 'better when > 1' -- speeds: format / g4sim bf16, ms and MiB: "
          "g4sim bf16 / format; last column: g4sim bf16 vs transformers bf16 the same way")
    metrics = ("prefill_tok_s", "decode_tok_s", "decoder_ms_tok", "peak_mib", "weights_mib")
    for model, layers in cases:
        with tempfile.TemporaryDirectory() as d:
            make_checkpoint(model, layers, d)
            rounds: dict = {r: [] for r in RUNS}
            for i in range(args.rounds):  # alternate the order, so a slow spell of the machine hits every run
                for impl, fmt in RUNS if i % 2 == 0 else RUNS[::-1]:
                    out = subprocess.run([sys.executable, __file__, "--child", impl, fmt, d, str(args.prompt),
                                          str(args.decode), str(args.threads)], capture_output=True, text=True,
                                         env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536",
                                              "MALLOC_TRIM_THRESHOLD_": "0"})
                    if out.returncode:
                        sys.exit(f"{impl} {fmt} failed:\n{out.stderr[-3000:]}")
                    rounds[(impl, fmt)].append(json.loads(out.stdout.strip().splitlines()[-1]))
            results = {r: best(runs) for r, runs in rounds.items()}
        case = f"{model}[{layers}L]"
        print(f"\n{case:<16}{'metric':<16}" + "".join(f"{i[:6] + ' ' + f:>18}" for i, f in RUNS))
        base, ref = results[("g4sim", "bf16")], results[("transformers", "bf16")]
        for metric in metrics:
            print(f"{'':<16}{metric:<16}" + "".join(f"{results[r][metric]:>18,.1f}" for r in RUNS))
        for metric in metrics[:4]:
            inverse = metric in ("decoder_ms_tok", "peak_mib")  # smaller is better: ratio = bf16 / format
            ratios = [(base[metric] / results[r][metric]) if inverse else (results[r][metric] / base[metric])
                      for r in RUNS[:3]]
            vs_ref = (ref[metric] / base[metric]) if inverse else (base[metric] / ref[metric])
            print(f"{'':<16}{'x ' + metric:<16}" + "".join(f"{x:>18.2f}" for x in ratios) +
                  f"{'g4sim/tf ' + format(vs_ref, '.2f'):>18}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        a = sys.argv[2:]
        print(json.dumps(child(a[0], a[1], a[2], int(a[3]), int(a[4]), int(a[5]))))
    else:
        main()
