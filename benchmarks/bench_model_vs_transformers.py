"""g4sim's model vs transformers' Gemma 4 on the CPU: same config, same weights, side by side in one run.

Real-width, reduced-depth E2B (10 layers: 2 periods, 5 KV-shared) and 26B-A4B (2 layers: one sliding,
one full), bf16.  Prefill tokens/s, decode tokens/s and peak resident memory (VmHWM above the
pre-model baseline, each implementation in its own process) are printed with their ratios.

Run: python benchmarks/bench_model_vs_transformers.py [--prompt 1024] [--decode 16]
Target: g4sim at least as fast and no larger than the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CASES = {"e2b": 10, "26b-a4b": 2}


def child(impl: str, ckpt: str, prompt: int, decode: int) -> dict:
    import torch

    from g4sim.measure.profile import peak_bytes, reset_peak, rss_bytes

    torch.set_num_threads(os.cpu_count() or 1)
    base = rss_bytes()
    reset_peak()
    if impl == "g4sim":
        from g4sim.model import Gemma4ForCausalLM

        model = Gemma4ForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16)
    else:
        import transformers

        model = transformers.Gemma4ForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16).eval()
    load_peak = peak_bytes() - base
    ids = torch.randint(0, 1000, (1, prompt), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        warm = ids[:, :16]
        model(warm) if impl == "g4sim" else model(warm, use_cache=False)
        reset_peak()
        start = time.perf_counter()
        if impl == "g4sim":
            cache = model.new_cache(1, prompt + decode)
            token = model(ids, cache=cache)[:, -1].argmax(-1, keepdim=True)
        else:
            out = model(ids, use_cache=True, logits_to_keep=1)
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for step in range(decode):
            if impl == "g4sim":
                token = model(token, cache=cache, start=prompt + step)[:, -1].argmax(-1, keepdim=True)
            else:
                out = model(token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        dec = time.perf_counter() - start
    return {"prefill_tok_s": prompt / prefill, "decode_tok_s": decode / dec,
            "peak_mib": (peak_bytes() - base) / 2**20, "load_peak_mib": load_peak / 2**20}


def make_checkpoint(model: str, layers: int, directory: str) -> None:
    import torch
    import transformers

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from conftest import hf_text_config
    from g4sim.spec import get_variant

    spec = get_variant(model).reduced(layers)
    with torch.device("cpu"):
        ref = transformers.Gemma4ForCausalLM(hf_text_config(spec.text)).to(torch.bfloat16)
    ref.save_pretrained(directory)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--decode", type=int, default=16)
    args = ap.parse_args()
    print(f"{'case':<16}{'metric':<16}{'g4sim':>12}{'transformers':>14}{'ratio':>9}")
    for model, layers in CASES.items():
        with tempfile.TemporaryDirectory() as d:
            make_checkpoint(model, layers, d)
            results = {}
            for impl in ("g4sim", "transformers"):
                out = subprocess.run([sys.executable, __file__, "--child", impl, d, str(args.prompt), str(args.decode)],
                                     capture_output=True, text=True, check=True, env={**os.environ,
                                     "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"})
                results[impl] = json.loads(out.stdout.strip().splitlines()[-1])
        for metric in ("prefill_tok_s", "decode_tok_s", "peak_mib", "load_peak_mib"):
            a, b = results["g4sim"][metric], results["transformers"][metric]
            print(f"{model + f'[{layers}L]':<16}{metric:<16}{a:>12,.1f}{b:>14,.1f}{a / b:>9.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
    else:
        main()
