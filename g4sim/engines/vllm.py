"""vLLM (V1 engine, ``vllm serve``): paged KV cache, gpu_memory_utilization budget, tensor parallelism.

Allocation (vllm-project/vllm):
* ``vllm/v1/kv_cache_interface.py`` — ``FullAttentionSpec.max_memory_usage_bytes`` =
  ``cdiv(max_model_len, block_size) * page_size_bytes``; ``SlidingWindowSpec`` =
  ``(cdiv(min(sliding_window - 1 + max_num_batched_tokens, max_model_len), block_size) + 1) * page_size``.
* ``vllm/v1/core/kv_cache_utils.py`` — layers of different page sizes are unified by enlarging the
  block size of the smaller pages (``unify_kv_cache_spec_page_size``), so every page has one size;
  here that means the full layers' blocks hold ``block_size x (sliding page / full page)`` tokens.
* ``vllm/v1/worker/gpu_worker.py`` — ``determine_available_memory``: KV budget = total memory x
  ``gpu_memory_utilization`` - (weights + peak activations of the profile run + non-torch memory),
  plus CUDA-graph capture memory.  vLLM refuses to start when less than that share is free, so the
  budget is also capped by what the OS / display leave.
* KV-shared layers (``kv_sharing_target_layer_name``) get no cache; vLLM keeps the PLE table on the
  GPU; nothing is saved for ``attention_k_eq_v`` (K and V are both cached).

What it loads: bf16 / fp16 / fp32 checkpoints, online FP8 (``--quantization fp8``), and
pre-quantized checkpoints whose ``quantization_config`` it reads (W8A16 / W4A16 compressed-tensors,
AWQ / GPTQ int4, NVFP4, MXFP4).  Devices: NVIDIA (CUDA) and AMD (ROCm) GPUs.  Several GPUs:
tensor parallelism (``--tensor-parallel-size``).  KV cache: the model dtype (``auto``) or fp8.
Given the exact checkpoint (``Workload.file``), its tensors are priced at their stored bytes (all
on the GPU), any AWQ / GPTQ / compressed-tensors int4 group size loads, and ``vllm serve`` names
the directory; ``--from`` reads a checkpoint directory that exists on this machine.
No torch import.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from g4sim.analytic.components import Component, Location
from g4sim.analytic.memory import MemoryTerm, kv_bytes_per_cell
from g4sim.analytic.quant import get_kv_dtype, get_quant
from g4sim.engines.base import (
    HF_REPOS, Caps, Engine, EngineError, Option, Parallel, Parsed, Workload, flag_values, join_command,
    model_from_name, split_command, to_float, to_int,
)
from g4sim.spec import VARIANTS, TextSpec
from g4sim.units import GiB, MiB
from g4sim.weightfiles import WeightFileError, read_checkpoint

# Checkpoint name suffixes of pre-quantized checkpoints (llm-compressor / ModelOpt naming), per format.
_CHECKPOINT_SUFFIX = {"int8": "W8A16", "int4-g128": "W4A16-G128", "nvfp4": "NVFP4", "mxfp4": "MXFP4"}
_DTYPE_FLAG = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


_NAME_FORMATS = (("W8A16", "int8"), ("W4A16", "int4-g128"), ("AWQ", "int4-g128"), ("GPTQ", "int4-g128"),
                 ("NVFP4", "nvfp4"), ("MXFP4", "mxfp4"), ("FP8", "fp8"))


@lru_cache(maxsize=256)
def _cell_bytes(t: TextSpec, kv_dtype: str) -> tuple[int, dict[int, int]]:
    """(largest page cell, bytes per cell of each cache layer)."""
    dt = get_kv_dtype(kv_dtype)
    cells = {i: kv_bytes_per_cell(t, i, dt) for i in t.cache_layers}
    return max(cells.values()), cells


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def activation_dtype(quant: str) -> str:
    """The dtype vLLM computes in (and caches K/V in with ``--kv-cache-dtype auto``)."""
    name = get_quant(quant).name
    return name if name in ("fp16", "fp32") else "bf16"


@dataclass(frozen=True)
class VllmEngine(Engine):
    name: ClassVar[str] = "vllm"
    description: ClassVar[str] = "vLLM V1: paged KV (hybrid allocator), gpu_memory_utilization budget"
    caps: ClassVar[Caps] = Caps(
        weight_formats=frozenset({"bf16", "fp16", "fp32", "fp8", "int8", "int4-g128", "nvfp4", "mxfp4"}),
        kv_dtypes=frozenset({"bf16", "fp16", "fp32", "fp8"}), device_kinds=frozenset({"gpu"}),
        vendors=frozenset({"nvidia", "amd"}), parallel=Parallel.TENSOR)
    options: ClassVar[tuple[Option, ...]] = (
        Option("gpu_memory_utilization", ("--gpu-memory-utilization",), "share of GPU memory vLLM may use",
               "vllm/config/cache.py CacheConfig.gpu_memory_utilization = 0.9"),
        Option("max_num_batched_tokens", ("--max-num-batched-tokens",), "tokens per scheduler step (profile run)",
               "vllm/engine/arg_utils.py: 2048 for the OpenAI server on GPUs under 70 GiB (8192 above; g4sim uses 2048)"),
        Option("block_size", ("--block-size",), "tokens per KV block", "vllm/config/cache.py: 16 on CUDA"),
        Option("enforce_eager", ("--enforce-eager",), "no CUDA graphs (saves their memory, slower decode)",
               "vllm/config/model.py ModelConfig.enforce_eager = False"),
    )
    command_names: ClassVar[tuple[str, ...]] = ("vllm",)
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    max_num_batched_tokens: int = 2048
    enforce_eager: bool = False
    cuda_graph_bytes: int = 512 * MiB  # CUDA-graph capture pool (vLLM reports ~0.3-1 GiB on Hopper)
    non_torch_bytes: int = 1 * GiB  # CUDA context + NCCL + cuBLAS workspaces outside torch's allocator
    allocator_reserve_fraction: float = 0.0  # the KV pool is one preallocated tensor

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise EngineError(f"--gpu-memory-utilization {self.gpu_memory_utilization} must be in (0, 1]")
        for flag, v in (("--block-size", self.block_size), ("--max-num-batched-tokens", self.max_num_batched_tokens)):
            if v < 1:
                raise EngineError(f"{flag} {v} must be a positive integer")

    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        reason = super().compatibility(w, device, gpus)
        if reason:
            return reason
        quant, kv = get_quant(w.quant).name, get_kv_dtype(w.kv_dtype).name
        act = activation_dtype(quant)
        if kv not in (act, "fp8"):
            return f"vLLM caches K/V in the model dtype ({act}, --kv-cache-dtype auto) or fp8, not {kv}"
        if act == "bf16" and "bf16" not in device.peak_flops:
            return f"{device.name} has no bfloat16 support; vLLM needs --quant fp16 there"
        if quant == "nvfp4" and "fp4" not in device.peak_flops:
            return f"NVFP4 checkpoints need FP4 tensor cores (Blackwell); {device.name} has none"
        return None

    def loads_format(self, fmt: str, w: Workload) -> bool:
        # a checkpoint states its own group size in quantization_config (AWQ / GPTQ / compressed-tensors)
        return super().loads_format(fmt, w) or (w.file is not None and fmt.startswith("int4-g"))

    def budget_bytes(self, usable_device_bytes: int, device_memory_bytes: int) -> int:
        return min(int(device_memory_bytes * self.gpu_memory_utilization), usable_device_bytes)

    def _page_tokens(self, t: TextSpec, layer: int, kv_dtype: str) -> int:
        """Tokens per block of ``layer`` after page-size unification."""
        largest, cell = _cell_bytes(t, kv_dtype)
        return self.block_size * largest // cell[layer]

    def kv_cells_for(self, t: TextSpec, layer: int, ctx: int, kv_dtype: str) -> int:
        block = self._page_tokens(t, layer, kv_dtype)
        if t.is_sliding(layer):
            tokens = min(t.sliding_window - 1 + self.max_num_batched_tokens, ctx)
            return (cdiv(tokens, block) + 1) * block
        return cdiv(ctx, block) * block

    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        return self.kv_cells_for(t, layer, ctx, "bf16")

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        out = []
        for component, sliding in ((Component.KV_SLIDING, True), (Component.KV_FULL, False)):
            layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
            cell = _cell_bytes(t, kv_dtype)[1]
            total = sum(batch * self.kv_cells_for(t, i, ctx, kv_dtype) * cell[i] for i in layers)
            cells = self.kv_cells_for(t, layers[0], ctx, kv_dtype) if layers else 0
            rule = ("(cdiv(min(window - 1 + max_num_batched_tokens, max_model_len), block) + 1) blocks"
                    if sliding else "cdiv(max_model_len, block) blocks")
            out.append(MemoryTerm(component, total, Location.ACCELERATOR,
                                  f"{len(layers)} layers x {batch} seq x {cells} cells ({rule}, block {self.block_size} "
                                  f"unified to one page size) x 2 (K,V) x kv_heads x head_dim x {kv_dtype}"))
        return out

    def chunk_tokens(self, ctx: int) -> int:
        return self.max_num_batched_tokens

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        # The profile run: one forward of max_num_batched_tokens tokens, then the sampler on its rows.
        terms = Engine.activation_terms(self, t, ctx=min(ctx, self.max_num_batched_tokens), batch=1, quant=quant)
        sampler = min(batch, self.max_num_batched_tokens) * t.vocab_size * 4  # --max-num-seqs is the batch
        terms.append(MemoryTerm(Component.SAMPLER, sampler, Location.ACCELERATOR,
                                "min(max_num_seqs, max_num_batched_tokens) x vocab x 4 B (profile run)"))
        return terms

    def overhead_terms(self, terms, *, device_kind: str) -> list[MemoryTerm]:
        out = [MemoryTerm(Component.NON_TORCH, self.non_torch_bytes, Location.ACCELERATOR,
                          "CUDA context, NCCL, cuBLAS workspaces (vLLM measures this at start-up)")]
        if not self.enforce_eager:
            out.append(MemoryTerm(Component.CUDA_GRAPHS, self.cuda_graph_bytes, Location.ACCELERATOR,
                                  "CUDA-graph capture pool (none with --enforce-eager)"))
        return out

    # ---- commands ---------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        quant = get_quant(w.quant).name
        repo = HF_REPOS.get(w.spec.name, w.spec.name)
        if quant in _CHECKPOINT_SUFFIX:  # a pre-quantized checkpoint: vLLM reads its quantization_config
            repo = f"{repo.split('/')[-1]}-{_CHECKPOINT_SUFFIX[quant]}"
        if w.file is not None:
            repo = shlex.quote(w.file.path)
        act = activation_dtype(quant)
        parts = [f"vllm serve {repo}", f"--max-model-len {w.ctx}", f"--max-num-seqs {w.batch}"]
        if quant in ("fp16", "fp32"):
            parts.append(f"--dtype {_DTYPE_FLAG[quant]}")
        if quant == "fp8" and w.file is None:
            parts.append("--quantization fp8")  # online FP8 of the bf16 checkpoint
        if gpus > 1:
            parts.append(f"--tensor-parallel-size {gpus}")
        parts += [f"--gpu-memory-utilization {self.gpu_memory_utilization}",
                  f"--kv-cache-dtype {'fp8' if w.kv_dtype == 'fp8' and act != 'fp8' else 'auto'}",
                  f"--max-num-batched-tokens {self.max_num_batched_tokens}", f"--block-size {self.block_size}"]
        if self.enforce_eager:
            parts.append("--enforce-eager")
        if not w.vision and not w.audio:
            parts.append("--limit-mm-per-prompt '" + json.dumps({"image": 0, "audio": 0}) + "'")
        return join_command(parts)

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        argv = split_command(text)
        if argv[1:2] != ["serve"] or len(argv) < 3 or argv[2].startswith("-"):
            raise EngineError("expected `vllm serve MODEL [flags]`")
        checkpoint = argv[2]
        known = {"--max-model-len": "ctx", "--max-num-seqs": "batch", "--gpu-memory-utilization": "util",
                 "--kv-cache-dtype": "kv", "--max-num-batched-tokens": "mnbt", "--block-size": "block",
                 "--tensor-parallel-size": "tp", "-tp": "tp", "--quantization": "quantization", "-q": "quantization",
                 "--dtype": "dtype", "--enforce-eager": "eager", "--limit-mm-per-prompt": "limit_mm"}
        v = flag_values(argv[3:], known, switches=frozenset({"--enforce-eager"}))
        quant = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "auto": "bf16"}.get(
            v.get("dtype", "auto"))
        if quant is None:
            raise EngineError(f"--dtype {v['dtype']!r}; valid: auto, bfloat16, float16, float32")
        cast = quant
        upper = checkpoint.upper()
        for needle, fmt in _NAME_FORMATS:  # a pre-quantized checkpoint says its format in its name
            if needle in upper:
                quant = fmt
                break
        q = v.get("quantization")
        if q is not None:
            quant = {"fp8": "fp8", "mxfp4": "mxfp4", "modelopt_fp4": "nvfp4", "awq": "int4-g128", "gptq": "int4-g128",
                     "awq_marlin": "int4-g128", "gptq_marlin": "int4-g128"}.get(q)
            if quant is None:
                raise EngineError(f"--quantization {q!r} is not one g4sim plans; valid: awq, awq_marlin, fp8, gptq, "
                                  "gptq_marlin, modelopt_fp4, mxfp4")
        file = None
        if (Path(checkpoint) / "config.json").is_file():  # a checkpoint on this machine: plan exactly it
            try:
                file = read_checkpoint(checkpoint)
            except WeightFileError as exc:
                raise EngineError(str(exc)) from None
            if file.format not in _DTYPE_FLAG:
                quant = file.format  # a pre-quantized checkpoint states its format (--quantization names its kernel)
            elif q is None:  # --dtype casts a 16/32-bit checkpoint (auto keeps its dtype)
                quant = file.format if v.get("dtype", "auto") == "auto" else cast
        kv_flag = v.get("kv", "auto")
        if kv_flag not in ("auto", "fp8", "fp8_e4m3"):
            raise EngineError(f"--kv-cache-dtype {kv_flag!r}; g4sim plans: auto, fp8, fp8_e4m3")
        kv = "fp8" if kv_flag.startswith("fp8") else activation_dtype(quant)
        settings = {}
        if "util" in v:
            settings["gpu_memory_utilization"] = to_float("--gpu-memory-utilization", v["util"])
        if "mnbt" in v:
            settings["max_num_batched_tokens"] = to_int("--max-num-batched-tokens", v["mnbt"])
        if "block" in v:
            settings["block_size"] = to_int("--block-size", v["block"])
        if v.get("eager"):
            settings["enforce_eager"] = True
        vision = None
        if "limit_mm" in v:
            try:
                limits = json.loads(v["limit_mm"])
            except ValueError:
                raise EngineError(f"--limit-mm-per-prompt {v['limit_mm']!r} is not JSON") from None
            vision = bool(limits.get("image", 1))
        model = model_from_name(checkpoint) if file is None else (file.spec.name if file.spec.name in VARIANTS else None)
        return Parsed(cls(**settings), model, quant, kv,
                      to_int("--max-model-len", v["ctx"]) if "ctx" in v else None,
                      to_int("--max-num-seqs", v["batch"]) if "batch" in v else None,
                      to_int("--tensor-parallel-size", v.get("tp", 1)), vision, file)
