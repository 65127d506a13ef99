"""g4sim's own PyTorch runtime (``g4sim.model``): what ``g4sim profile`` measures.

Preallocated cache: a sliding layer keeps a ring buffer of ``min(ctx, sliding_window)``
positions, a full layer ``ctx`` positions, KV-shared layers nothing; attention is one
``scaled_dot_product_attention`` call with ``enable_gqa`` (no K/V expansion) over [ring ++ chunk]
on sliding layers; prefill is chunked; only the last position's logits are computed.  It loads
float weights and its own weight-only int8 / int4-gN, runs on one CPU or one CUDA GPU, and keeps
K/V in the model's dtype.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from g4sim.analytic.components import Component, Location
from g4sim.analytic.memory import MemoryTerm
from g4sim.analytic.quant import get_quant
from g4sim.analytic.tensors import text_tensors
from g4sim.engines.base import (
    FLOAT_FORMATS, Caps, Engine, EngineError, Option, Parsed, Workload, flag_values, split_command, to_int,
)
from g4sim.spec import TextSpec

# Transient bytes per element when g4sim.model.quant dequantizes a weight on the fly:
# int8 `(q.float() * scale).to(dtype)` holds two fp32 copies at its peak; int4 unpacking holds the
# padded fp32 codes, their scaled copy and the shifted sum (three fp32 copies).
DEQUANT_BYTES_PER_ELEMENT = {"int8": 8, "int4": 12}


@dataclass(frozen=True)
class G4simEngine(Engine):
    name: ClassVar[str] = "g4sim"
    description: ClassVar[str] = "g4sim's own PyTorch runtime (what `g4sim profile` measures)"
    caps: ClassVar[Caps] = Caps(weight_formats=FLOAT_FORMATS | {"int8", "int4-g128"}, kv_dtypes=FLOAT_FORMATS,
                                device_kinds=frozenset({"cpu", "gpu"}), vendors=None)
    options: ClassVar[tuple[Option, ...]] = (
        Option("prefill_chunk", ("--chunk",), "prompt tokens per forward pass",
               "g4sim profile --chunk (default: whole prompt; g4sim plans 4096)"),
    )
    command_names: ClassVar[tuple[str, ...]] = ("g4sim",)
    prefill_chunk: int | None = 4096

    def __post_init__(self) -> None:
        if self.prefill_chunk is not None and self.prefill_chunk < 1:
            raise EngineError(f"--chunk {self.prefill_chunk} must be a positive number of tokens")

    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        fmt = get_quant(w.quant)
        if fmt.name.startswith("int4-g"):  # any group size quantizes
            w = Workload(w.spec, w.ctx, w.batch, "int4-g128", w.kv_dtype, w.vision, w.audio)
        reason = super().compatibility(w, device, gpus)
        if reason is None and device.kind == "gpu" and device.vendor != "nvidia":
            reason = f"g4sim's runtime runs on CPUs and CUDA GPUs, not on {device.name}"
        dtype = "bf16" if fmt.family == "int" else fmt.name  # quantized weights compute in bf16
        if reason is None and w.kv_dtype != dtype:
            reason = f"g4sim's cache takes the model's dtype ({dtype}), not {w.kv_dtype}"
        return reason

    def chunk_tokens(self, ctx: int) -> int:
        return self.prefill_chunk or ctx

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        terms = super().activation_terms(t, ctx=ctx, batch=batch, quant=quant)
        fmt = get_quant(quant)
        if fmt.family == "int":  # weight-only int8 / int4: one matrix (or one expert) dequantized at a time
            per = DEQUANT_BYTES_PER_ELEMENT["int4" if fmt.linear_bits == 4 else "int8"]
            largest = max(x.rows * x.cols for x in text_tensors(t) if x.kind.startswith(("attn_", "ffn_")))
            terms.append(MemoryTerm(Component.DEQUANT_WORKSPACE, largest * per, Location.ACCELERATOR,
                                    f"largest quantized matrix {largest:,} elements x {per} B "
                                    "(fp32 copies while dequantizing on the fly)"))
        return terms

    def attention_workspace(self, t: TextSpec, layer: int, chunk: int, kv_len: int, batch: int, a: int) -> int:
        hd, kvh = t.head_dim_of(layer), t.kv_heads(layer)
        concat = 2 * batch * kvh * kv_len * hd * a if t.is_sliding(layer) else 0  # [ring ++ chunk]
        mask = batch * chunk * kv_len
        return concat + mask

    # ---- commands ---------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        fmt = get_quant(w.quant)
        parts = [f"g4sim profile --model {w.spec.name} --ctx {w.ctx} --batch {w.batch}",
                 f"--device {'cuda' if device.kind == 'gpu' else 'cpu'}",
                 f"--dtype {'bf16' if fmt.family == 'int' else fmt.name}"]
        if fmt.family == "int":
            parts.append(f"--quant {fmt.name}")
        if self.prefill_chunk:
            parts.append(f"--chunk {self.prefill_chunk}")
        return " ".join(parts)

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        argv = split_command(text)
        if argv[1:2] != ["profile"]:
            raise EngineError("only `g4sim profile ...` command lines describe a deployment of g4sim's runtime")
        known = {"--model": "model", "-m": "model", "--ctx": "ctx", "-c": "ctx", "--batch": "batch",
                 "--device": "device", "--dtype": "dtype", "--quant": "quant", "--chunk": "chunk"}
        v = flag_values(argv[2:], known)
        dtype = v.get("dtype", "bf16")
        quant = v.get("quant") or dtype
        chunk = to_int("--chunk", v["chunk"]) if "chunk" in v else None
        ctx = to_int("--ctx", v["ctx"]) if "ctx" in v else None
        return Parsed(cls(prefill_chunk=chunk), v.get("model"), quant, dtype, ctx,
                      to_int("--batch", v.get("batch", 1)), 1)
