"""The command that realises a plan in its engine, with flags taken from the plan's own numbers."""

from __future__ import annotations

from g4sim.plan import PlanRequest

HF_REPOS = {  # repository names as referenced by transformers' convert_gemma4_weights.py (…-it variants)
    "e2b": "google/gemma-4-E2B-it", "e4b": "google/gemma-4-E4B-it",
    "26b-a4b": "google/gemma-4-26B-A4B-it", "31b": "google/gemma-4-31B-it",
}
_GGUF_TYPE = {"q8_0": "Q8_0", "q6_k": "Q6_K", "q5_k_m": "Q5_K_M", "q5_0": "Q5_0", "q4_k_m": "Q4_K_M",
              "q4_k_s": "Q4_K_S", "iq4_xs": "IQ4_XS", "q4_0": "Q4_0", "q3_k_m": "Q3_K_M", "q2_k": "Q2_K",
              "bf16": "BF16", "fp16": "F16", "fp32": "F32"}
_VLLM_KV = {"bf16": "auto", "fp16": "auto", "fp8": "fp8"}
_LLAMA_KV = {"bf16": "bf16", "fp16": "f16", "fp32": "f32", "q8_0": "q8_0", "q4_0": "q4_0"}


def repo(req: PlanRequest) -> str:
    return HF_REPOS.get(req.spec.name, f"<path to {req.spec.name}>")


def launch_command(req: PlanRequest) -> str | None:
    """A shell command for the plan's engine, or None when the engine cannot run this combination."""
    e = req.engine
    if e.name == "vllm":
        if req.kv_dtype not in _VLLM_KV:
            return None
        parts = [f"vllm serve {repo(req)}", f"--max-model-len {req.ctx}", f"--max-num-seqs {req.batch}",
                 f"--gpu-memory-utilization {e.gpu_memory_utilization}", f"--kv-cache-dtype {_VLLM_KV[req.kv_dtype]}",
                 f"--max-num-batched-tokens {e.max_num_batched_tokens}", f"--block-size {e.block_size}"]
        if req.quant == "fp8":
            parts.append("--quantization fp8")
        if req.vision is False and req.audio is False:
            parts.append("--limit-mm-per-prompt '{\"image\": 0, \"audio\": 0}'")
        return " \\\n  ".join(parts)
    if e.name == "llamacpp":
        if req.quant not in _GGUF_TYPE or req.kv_dtype not in _LLAMA_KV:
            return None
        gguf = f"{repo(req).split('/')[-1]}-{_GGUF_TYPE[req.quant]}.gguf"
        parts = [f"llama-server -m {gguf}", f"-c {e.n_ctx(req.ctx) * req.batch}", f"-np {req.batch}",
                 f"-ngl {e.n_gpu_layers}", f"-ub {e.n_ubatch}", f"-fa {'on' if e.flash_attn else 'off'}",
                 f"-ctk {_LLAMA_KV[req.kv_dtype]}", f"-ctv {_LLAMA_KV[e.cache_type_v or req.kv_dtype]}"]
        if e.n_cpu_moe:
            parts.append(f"--n-cpu-moe {e.n_cpu_moe}")
        if e.swa_full:
            parts.append("--swa-full")
        return " \\\n  ".join(parts)
    if e.name == "transformers":
        if req.quant not in ("bf16", "fp16", "fp32"):
            return None
        dtype = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}[req.quant]
        return "\n".join([
            "python - <<'PY'",
            "import torch",
            "from transformers import AutoModelForCausalLM",
            f"model = AutoModelForCausalLM.from_pretrained('{repo(req)}', dtype={dtype}, device_map='cuda',",
            f"                                             attn_implementation='{getattr(e, 'attn_implementation', 'sdpa')}')",
            f"# model.generate(input_ids, max_length={req.ctx}, prefill_chunk_size={req.prefill_chunk})",
            "PY",
        ])
    if e.name == "g4sim":
        return (f"g4sim profile --model {req.spec.name} --ctx {req.ctx} --batch {req.batch} --device cuda "
                f"--dtype {req.quant if req.quant in ('bf16', 'fp16', 'fp32') else 'bf16'}"
                + (f" --chunk {req.prefill_chunk}" if req.prefill_chunk else ""))
    return None
