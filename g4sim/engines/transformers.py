"""HuggingFace transformers (5.x): ``from_pretrained`` + ``generate`` with its DynamicCache.

Allocation (``cache_utils.py``): ``DynamicSlidingWindowLayer.update`` keeps the last
``sliding_window - 1`` positions of a sliding layer and returns ``cat(cache, new)`` for the call
(a transient copy of window - 1 + chunk positions); full layers keep every position; KV-shared
layers never call ``update`` and hold nothing.  ``integrations/sdpa_attention.py`` expands K/V to
all query heads with ``repeat_kv`` before ``scaled_dot_product_attention``; ``eager`` materialises
the score matrix and a float32 softmax.  ``generate`` computes logits for the last position only
(``logits_to_keep=1``); ``GenerationConfig.prefill_chunk_size`` chunks the prompt.

What it loads and where: bf16 / fp16 / fp32 checkpoints (the cache takes the model dtype), on
CUDA / ROCm GPUs, Apple's MPS and CPUs.  Several GPUs: ``device_map="auto"`` (accelerate) places
consecutive layers on consecutive GPUs, which then take turns — a layer split, not tensor
parallelism.  No torch import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import ClassVar

from g4sim.engines.base import (
    FLOAT_FORMATS, HF_REPOS, Caps, Engine, EngineError, Option, Parallel, Parsed, Workload, model_from_name,
)
from g4sim.spec import TextSpec

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
_TORCH_DTYPE = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}
_DEVICE_MAP = {"gpu": "cuda", "cpu": "cpu", "soc": "cuda"}  # Jetson-style SoCs run CUDA; Apple silicon: mps


def kv_must_match_weights(w: Workload, name: str) -> str | None:
    if w.kv_dtype != w.quant:
        return f"{name} keeps K/V in the model's dtype: with {w.quant} weights the KV cache is {w.quant}, not {w.kv_dtype}"
    return None


@dataclass(frozen=True)
class TransformersEngine(Engine):
    name: ClassVar[str] = "transformers"
    description: ClassVar[str] = "HuggingFace transformers generate() with DynamicCache"
    caps: ClassVar[Caps] = Caps(
        weight_formats=FLOAT_FORMATS, kv_dtypes=FLOAT_FORMATS, device_kinds=frozenset({"gpu", "cpu", "soc"}),
        vendors=frozenset({"nvidia", "amd", "apple", "intel", "generic", "raspberrypi"}), parallel=Parallel.LAYER)
    options: ClassVar[tuple[Option, ...]] = (
        Option("attn_implementation", ("attn_implementation",), "sdpa or eager",
               "transformers default for Gemma 4: sdpa (modeling_utils._check_and_adjust_attn_implementation)"),
        Option("prefill_chunk", ("prefill_chunk_size",), "prompt tokens per forward pass",
               "GenerationConfig.prefill_chunk_size (default None = whole prompt; g4sim assumes 4096)"),
    )
    attn_implementation: str = "sdpa"
    prefill_chunk: int | None = 4096

    def __post_init__(self) -> None:
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise EngineError(f"attn_implementation {self.attn_implementation!r}; valid: {', '.join(ATTN_IMPLEMENTATIONS)}")
        if self.prefill_chunk is not None and self.prefill_chunk < 1:
            raise EngineError(f"prefill_chunk_size {self.prefill_chunk} must be a positive number of tokens")

    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        reason = super().compatibility(w, device, gpus) or kv_must_match_weights(w, self.name)
        if reason is None and w.quant == "bf16" and "bf16" not in device.peak_flops and device.kind == "gpu":
            reason = f"{device.name} has no bfloat16 support; use --quant fp16"
        return reason

    def chunk_tokens(self, ctx: int) -> int:
        return self.prefill_chunk or ctx

    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        return min(ctx, t.sliding_window - 1) if t.is_sliding(layer) else ctx

    def moe_workspace(self, t: TextSpec, tokens: int, a: int) -> int:
        """transformers' default experts path, ``integrations/moe.py`` ``grouped_mm_experts_forward``: at its
        peak four (token, expert)-pair x hidden tensors are alive — the gathered inputs
        (``selected_hidden_states_g``) and the down projection's output in the model's dtype, then
        ``weighted_out = proj_out * sample_weights_g`` and its re-ordered copy (``weighted_out[inv_perm]``) in
        fp32, because the router's top-k weights are fp32 and the product promotes (measured on the 26b-a4b
        experts module alone, 2,048 tokens bf16: 590 MiB peak, 2 x 88 + 2 x 176 = 528 of it these four) —
        beside the router's bf16 scores and fp32 softmax."""
        routed = tokens * t.top_k_experts
        return tokens * t.num_experts * (a + 4) + routed * t.hidden_size * (2 * a + 2 * 4)

    def attention_workspace(self, t: TextSpec, layer: int, chunk: int, kv_len: int, batch: int, a: int) -> int:
        hd, nh, kvh = t.head_dim_of(layer), t.num_heads, t.kv_heads(layer)
        concat = 2 * batch * kvh * kv_len * hd * a if t.is_sliding(layer) else 0
        expanded = 2 * batch * nh * kv_len * hd * a if kvh != nh else 0  # repeat_kv
        if self.attn_implementation == "eager":
            scores = batch * nh * chunk * kv_len * (a + 4 + a)  # matmul out, fp32 softmax, cast back
            return concat + expanded + scores
        mask = batch * chunk * kv_len  # boolean 4-D mask
        return concat + expanded + mask

    # ---- commands ---------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        repo = HF_REPOS.get(w.spec.name, w.spec.name)
        device_map = "auto" if gpus > 1 else ("mps" if device.vendor == "apple" else _DEVICE_MAP[device.kind])
        cls = "AutoModelForImageTextToText" if w.vision or w.audio else "AutoModelForCausalLM"
        chunk = f", prefill_chunk_size={self.prefill_chunk}" if self.prefill_chunk else ""
        return "\n".join([
            "python - <<'PY'",
            "import torch",
            f"from transformers import {cls}",
            f"model = {cls}.from_pretrained({repo!r}, dtype={_TORCH_DTYPE[w.quant]}, device_map={device_map!r}, "
            f"attn_implementation={self.attn_implementation!r})",
            f"input_ids = torch.ones(({w.batch}, 1), dtype=torch.long, device=model.device)  # your {w.batch} prompts",
            f"out = model.generate(input_ids, max_length={w.ctx}{chunk})",
            "PY",
        ])

    @classmethod
    def recognises(cls, text: str) -> bool:
        return "from_pretrained(" in text

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        body = text.split("<<'PY'", 1)[-1].rsplit("PY", 1)[0] if "<<'PY'" in text else text
        try:
            tree = ast.parse(body)
        except SyntaxError as exc:
            raise EngineError(f"cannot read the transformers snippet: {exc.msg} (line {exc.lineno})") from None
        model = quant = None
        settings: dict = {}
        ctx = batch = None
        gpus: int | None = 1
        vision = None
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if node.func.attr == "from_pretrained":
                if node.args and isinstance(node.args[0], ast.Constant):
                    model = model_from_name(str(node.args[0].value))
                vision = isinstance(node.func.value, ast.Name) and node.func.value.id == "AutoModelForImageTextToText"
                dtype = ast.unparse(kw["dtype"]) if "dtype" in kw else "torch.float32"
                quant = {v: k for k, v in _TORCH_DTYPE.items()}.get(dtype)
                if quant is None:
                    raise EngineError(f"dtype {dtype} is not one g4sim plans; valid: {', '.join(_TORCH_DTYPE.values())}")
                if "attn_implementation" in kw:
                    settings["attn_implementation"] = ast.literal_eval(kw["attn_implementation"])
                if "device_map" in kw and ast.literal_eval(kw["device_map"]) == "auto":
                    gpus = None  # every visible GPU: the caller's --gpu count decides
            elif node.func.attr == "generate":
                if "max_length" in kw:
                    ctx = ast.literal_eval(kw["max_length"])
                settings["prefill_chunk"] = ast.literal_eval(kw["prefill_chunk_size"]) if "prefill_chunk_size" in kw else None
            elif node.func.attr == "ones" and node.args and isinstance(node.args[0], ast.Tuple):
                batch = ast.literal_eval(node.args[0].elts[0])
        if quant is None:
            raise EngineError("no from_pretrained(...) call in the transformers snippet")
        return Parsed(cls(**settings), model, quant, quant, ctx, batch, gpus, vision)
