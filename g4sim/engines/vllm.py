"""vLLM (V1 engine, ``vllm serve``): its KV-cache allocator and start-up memory profile, per release.

``--vllm-version`` (setting ``vllm_version``) picks the release whose rules apply.  The default is
0.33.0, the newest release on PyPI when this was written (``pip index versions vllm``, 2026-11);
0.20.0 and 0.19.1 are the older lines whose rules differ.  Every rule below was read in that
release's wheel (``pip download --no-deps vllm==X``) and its KV-cache arithmetic is checked by
calling vLLM's own functions (``scripts/vllm_kv_check.py``, fixtures in ``tests/data/vllm/``).

The budget (``vllm/v1/worker/gpu_worker.py`` ``Worker.determine_available_memory`` and
``vllm/v1/worker/utils.py`` ``request_memory``, all three releases):
``requested = ceil(total x gpu_memory_utilization)`` where ``total`` is what ``cudaMemGetInfo``
reports, i.e. the card less its driver reserve (g4sim: the usable memory, exact on a headless card).
The snapshot that ``total`` and the free memory come from is taken after the CUDA context, NCCL and
the cuBLAS handles exist, so those live outside the budget (they are not subtracted; the old rule
counted them twice).  vLLM refuses to start when the free memory at that snapshot is below
``requested``.  The KV pool is ``requested - non_kv`` with ``non_kv`` = the weights as vLLM
allocates them + the profile run's peak (one forward over ``max_num_batched_tokens`` tokens spread
over ``min(max_num_batched_tokens, max_num_seqs)`` requests, the sampler on those rows, and the
vision encoder's dummy batch when the tower loads) + non-torch memory grown since the snapshot +
the CUDA-graph estimate in the releases that subtract it (``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``
defaults to 1 from 0.20.0, to 0 in 0.19.1, ``vllm/envs.py``).

The pool (``vllm/v1/core/kv_cache_utils.py`` in 0.19.1 / 0.20.0, ``vllm/v1/core/kv_cache_planning.py``
in 0.33.0): one spec per cache-owning layer (``Attention.get_kv_cache_spec``,
``vllm/model_executor/layers/attention/attention.py``; KV-shared layers, which carry a
``kv_sharing_target_layer_name`` in ``vllm/model_executor/models/gemma4.py``, have none), with
``max(1, kv_heads // tp)`` heads per rank (``Gemma4Attention.__init__``); page sizes unified by
enlarging the block size of the smaller pages (``unify_kv_cache_spec_page_size``); layers split into
groups of equal size, padded (``_get_kv_cache_groups_uniform_page_size``); one block of the pool is
one page of every layer of a group; ``num_blocks = available // (group_size x page)``
(``get_num_blocks`` / ``_get_kv_cache_bytes_per_block``).  A request at ``max_model_len`` takes
``cdiv(max_memory_usage_bytes, page)`` blocks of every group (``vllm/v1/kv_cache_interface.py``
``FullAttentionSpec`` / ``SlidingWindowSpec.max_memory_usage_bytes``); the two figures vLLM logs,
"GPU KV cache size: N tokens" and "Maximum concurrency for L tokens per request: X", follow each
release's formula (``VllmRelease``) and are shown by ``user_view`` (``plan``'s ``engine_view``).

What it loads: bf16 / fp16 / fp32 checkpoints, online FP8 (``--quantization fp8``), and
pre-quantized checkpoints whose ``quantization_config`` it reads (W8A16 / W4A16 compressed-tensors,
AWQ / GPTQ int4, NVFP4, MXFP4).  Devices: NVIDIA (CUDA) and AMD (ROCm) GPUs.  Several GPUs:
tensor parallelism (``--tensor-parallel-size``).  KV cache: the model dtype (``auto``) or fp8.
Given the exact checkpoint (``Workload.file``), its tensors are priced at their stored bytes (all
on the GPU; ``memory`` adds the V slots vLLM allocates on k_eq_v layers, which no checkpoint holds),
any AWQ / GPTQ / compressed-tensors int4 group size loads, and ``vllm serve`` names the directory;
``--from`` reads a checkpoint directory that exists on this machine.  The printed command ends with
a shell comment naming the release it was planned for (``vllm serve`` has no such flag); ``--from``
reads it back, and a command without it is planned for the default release.
No torch import.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from g4sim.analytic.components import Category, Component, Location
from g4sim.analytic.memory import MemoryBreakdown, MemoryTerm
from g4sim.analytic.quant import Tensor, get_kv_dtype, get_quant
from g4sim.analytic.tensors import quant_context
from g4sim.engines.base import (
    HF_REPOS, Caps, Engine, EngineError, Option, Parallel, Parsed, Workload, flag_values, join_command,
    model_from_name, to_float, to_int,
)
from g4sim.spec import VARIANTS, TextSpec
from g4sim.units import GiB, MiB
from g4sim.weightfiles import WeightFileError, read_checkpoint

# Checkpoint name suffixes of pre-quantized checkpoints (llm-compressor / ModelOpt naming), per format.
_CHECKPOINT_SUFFIX = {"int8": "W8A16", "int4-g128": "W4A16-G128", "nvfp4": "NVFP4", "mxfp4": "MXFP4"}
_DTYPE_FLAG = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


_NAME_FORMATS = (("W8A16", "int8"), ("W4A16", "int4-g128"), ("AWQ", "int4-g128"), ("GPTQ", "int4-g128"),
                 ("NVFP4", "nvfp4"), ("MXFP4", "mxfp4"), ("FP8", "fp8"))

# vllm/model_executor/models/gemma4_mm.py (0.19.1 and 0.33.0): Gemma4 get_mm_max_tokens_per_item
_VIDEO_MAX_FRAMES = 32  # _VIDEO_MAX_FRAMES
_VIDEO_TOKENS_PER_FRAME = 70 + 2 + 6  # _VIDEO_MAX_SOFT_TOKENS + boi/eoi + timestamp tokens
_VIDEO_SOFT_TOKENS_PER_FRAME = 70

# The comment the printed command ends with, so that --from plans the same release (vllm serve has no such flag).
_VERSION_COMMENT = "# g4sim: planned for vLLM {}"
_VERSION_COMMENT_RE = re.compile(r"#\s*g4sim:\s*planned for vLLM\s+(\S+)")


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def activation_dtype(quant: str) -> str:
    """The dtype vLLM computes in (and caches K/V in with ``--kv-cache-dtype auto``)."""
    name = get_quant(quant).name
    return name if name in ("fp16", "fp32") else "bf16"


# ---- releases ------------------------------------------------------------------------------

@dataclass(frozen=True)
class VllmRelease:
    """The allocator rules of one vLLM release, each read in its wheel (paths are inside ``vllm/``)."""

    version: str
    wheel: str
    # v1/worker/gpu_worker.py determine_available_memory + envs.py VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS
    # (default "1" from 0.20.0, "0" in 0.19.1): the CUDA-graph estimate is taken from the KV budget.
    cuda_graphs_subtracted: bool
    # "GPU KV cache size": True: int(max_concurrency x max_model_len) (v1/core/kv_cache_utils.py
    # _report_kv_cache_config from 0.20.1, get_kv_cache_capacity later); False: num_blocks //
    # len(kv_cache_groups) x min(block_size of the groups) (_report_kv_cache_config, 0.19.1 / 0.20.0).
    tokens_from_concurrency: bool
    # SlidingWindowSpec.max_memory_usage_bytes reserves window - 1 + this many x max_num_batched_tokens:
    # 1 (0.19.1 / 0.20.0); 0.33.0: VllmConfig.max_in_flight_tokens = max_concurrent_batches (2 with async
    # scheduling, which config/vllm.py turns on by default for vllm serve) x max_num_batched_tokens.
    in_flight_batches: int
    # One log line "GPU KV cache size: N tokens, Maximum concurrency ..." (update_kv_cache_capacity, 0.33.0)
    # or two lines (_report_kv_cache_config, 0.19.1 / 0.20.0).
    one_log_line: bool
    # get_kv_cache_configs checks "at least one request fits" against available - one block (the null
    # block BlockPool holds back): 0.33.0 (v1/core/kv_cache_planning.py); the whole available memory before.
    reserves_null_block: bool
    # engine/arg_utils.py EngineArgs.get_batch_defaults, OPENAI_API_SERVER (vllm serve) column, first tier
    # whose device-memory floor the GPU reaches: (floor bytes, max_num_batched_tokens, max_num_seqs).
    batch_tiers: tuple[tuple[int, int, int], ...]
    # engine/arg_utils.py _set_default_max_num_seqs_and_batched_tokens_args: for a multimodal prefix-LM
    # (Gemma 4) with the tower loaded, an unset max_num_batched_tokens is raised to the largest item.
    raises_batched_tokens_for_mm_items: bool
    # model_executor/models/config.py Gemma4Config.verify_and_update_config (heterogeneous head sizes)
    backend: str
    # model_executor/layers/attention/attention.py Attention.get_kv_cache_spec: sliding layers pick the largest
    # kernel block within one --block-size page (_largest_kernel_block_within, 0.33.0) or take --block-size.
    sliding_block_from_kernel: bool = False
    # v1/core/kv_cache_planning.py unify_kv_cache_spec_page_size: a page that does not divide the largest is padded
    # to it (0.33.0); 0.19.1 / 0.20.0 raise NotImplementedError.
    pads_pages: bool = False


_SMALL_TIER = (0, 2048, 256)
RELEASES: dict[str, VllmRelease] = {
    "0.33.0": VllmRelease(
        "0.33.0", "vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl", cuda_graphs_subtracted=True,
        tokens_from_concurrency=True, in_flight_batches=2, one_log_line=True, reserves_null_block=True,
        batch_tiers=((160 * GiB, 16384, 1024), (70 * GiB, 8192, 1024), _SMALL_TIER),
        raises_batched_tokens_for_mm_items=True,
        backend="FLASH_ATTN (FA4 on every layer; block sizes: multiples of 16)", sliding_block_from_kernel=True,
        pads_pages=True),
    "0.20.0": VllmRelease(
        "0.20.0", "vllm-0.20.0-cp38-abi3-manylinux_2_35_x86_64.whl", cuda_graphs_subtracted=True,
        tokens_from_concurrency=False, in_flight_batches=1, one_log_line=False, reserves_null_block=False,
        batch_tiers=((70 * GiB, 8192, 1024), _SMALL_TIER), raises_batched_tokens_for_mm_items=False,
        backend="TRITON_ATTN (forced for head_dim != global_head_dim > 256; block sizes: multiples of 16)"),
    "0.19.1": VllmRelease(
        "0.19.1", "vllm-0.19.1-cp38-abi3-manylinux_2_31_x86_64.whl", cuda_graphs_subtracted=False,
        tokens_from_concurrency=False, in_flight_batches=1, one_log_line=False, reserves_null_block=False,
        batch_tiers=((70 * GiB, 8192, 1024), _SMALL_TIER), raises_batched_tokens_for_mm_items=False,
        backend="TRITON_ATTN (forced for head_dim != global_head_dim > 256; block sizes: multiples of 16)"),
}
DEFAULT_VLLM_VERSION = "0.33.0"
KERNEL_BLOCK_MULTIPLE = 16  # v1/attention/backends/{triton_attn,flash_attn}.py: MultipleOf(16)


def get_release(version: str) -> VllmRelease:
    v = str(version).strip().lstrip("v")
    if v not in RELEASES:
        raise EngineError(f"--vllm-version {version!r}: g4sim reproduces vLLM {', '.join(RELEASES)}")
    return RELEASES[v]


# ---- the KV-cache allocator -----------------------------------------------------------------

@dataclass(frozen=True)
class LayerKV:
    """One cache-owning layer as vLLM specifies it (``FullAttentionSpec`` / ``SlidingWindowSpec``), per TP rank."""

    layer: int
    sliding_window: int | None  # None: full attention
    block_size: int
    num_kv_heads: int
    head_size: int
    dtype_bytes: int  # bytes per cached element (uint8 for fp8)
    page_size_padded: int | None = None

    @property
    def name(self) -> str:
        return f"language_model.model.layers.{self.layer}.self_attn.attn"

    @property
    def page_bytes(self) -> int:
        """AttentionSpec.page_size_bytes: block x heads x (head_size + head_size_v) x dtype size."""
        if self.page_size_padded is not None:
            return self.page_size_padded
        return self.block_size * self.num_kv_heads * 2 * self.head_size * self.dtype_bytes

    def kind(self) -> tuple:
        """What vLLM's grouping compares (the spec without the layer)."""
        return (self.sliding_window, self.block_size, self.num_kv_heads, self.head_size, self.dtype_bytes,
                self.page_size_padded)

    def max_memory_usage_bytes(self, max_model_len: int, in_flight_tokens: int) -> int:
        """kv_cache_interface.py: full ``cdiv(L, block) x page``; sliding
        ``(cdiv(min(window - 1 + in-flight tokens, L), block) + 1) x page``."""
        if self.sliding_window is None:
            return cdiv(max_model_len, self.block_size) * self.page_bytes
        tokens = min(self.sliding_window - 1 + in_flight_tokens, max_model_len)
        return (cdiv(tokens, self.block_size) + 1) * self.page_bytes


@dataclass(frozen=True)
class KVGroup:
    layers: tuple[LayerKV, ...]  # unified specs; fewer than group_size means padding layers

    @property
    def spec(self) -> LayerKV:
        return self.layers[0]

    def blocks_per_request(self, max_model_len: int, in_flight_tokens: int) -> int:
        s = self.spec
        return cdiv(s.max_memory_usage_bytes(max_model_len, in_flight_tokens), s.page_bytes)


@dataclass(frozen=True)
class KVPlan:
    """vLLM's KV cache groups for one rank: what ``get_kv_cache_groups`` returns, and the block arithmetic."""

    release: VllmRelease
    layers: tuple[LayerKV, ...]  # after page-size unification
    groups: tuple[KVGroup, ...]
    group_size: int

    @property
    def page_bytes(self) -> int:
        return self.groups[0].spec.page_bytes

    @property
    def bytes_per_block(self) -> int:
        """One block id = one page of each of group_size layers (get_num_blocks: available // page // group_size)."""
        return self.group_size * self.page_bytes

    @property
    def padding_layers(self) -> int:
        return sum(self.group_size - len(g.layers) for g in self.groups)

    def in_flight_tokens(self, max_num_batched_tokens: int) -> int:
        return self.release.in_flight_batches * max_num_batched_tokens

    def blocks_per_request(self, max_model_len: int, max_num_batched_tokens: int) -> int:
        """get_max_concurrency_for_kv_cache_config: the blocks of every group one full-length request takes."""
        inflight = self.in_flight_tokens(max_num_batched_tokens)
        return sum(g.blocks_per_request(max_model_len, inflight) for g in self.groups)

    def request_bytes(self, max_model_len: int, max_num_batched_tokens: int, sliding: bool | None = None) -> int:
        """Pool bytes one full-length request takes (optionally only its sliding / full groups)."""
        inflight = self.in_flight_tokens(max_num_batched_tokens)
        return sum(g.blocks_per_request(max_model_len, inflight) * self.bytes_per_block for g in self.groups
                   if sliding is None or (g.spec.sliding_window is not None) == sliding)

    def num_blocks(self, available_bytes: int) -> int:
        return max(available_bytes // self.bytes_per_block, 0)

    def max_concurrency(self, num_blocks: int, max_model_len: int, max_num_batched_tokens: int) -> float:
        return num_blocks / self.blocks_per_request(max_model_len, max_num_batched_tokens)

    def kv_cache_tokens(self, num_blocks: int, max_model_len: int, max_num_batched_tokens: int) -> int:
        """The "GPU KV cache size: N tokens" figure, by the release's formula."""
        if self.release.tokens_from_concurrency:
            return int(self.max_concurrency(num_blocks, max_model_len, max_num_batched_tokens) * max_model_len)
        return num_blocks // len(self.groups) * min(g.spec.block_size for g in self.groups)

    def fits_one_request(self, available_bytes: int, max_model_len: int, max_num_batched_tokens: int) -> bool:
        """get_kv_cache_configs' _check_enough_kv_cache_memory (0.33.0 keeps the null block back)."""
        check = available_bytes - (self.bytes_per_block if self.release.reserves_null_block else 0)
        needed = self.blocks_per_request(max_model_len, max_num_batched_tokens) * self.bytes_per_block
        return check > 0 and needed <= check


def kv_layer_specs(t: TextSpec, kv_dtype: str, tp: int, block_size: int, release: VllmRelease) -> tuple[LayerKV, ...]:
    """The spec of every cache-owning layer on one TP rank, before page-size unification.

    Full layers take ``--block-size``; sliding layers take it too in 0.19.1 / 0.20.0, and in 0.33.0 the
    largest kernel block within one ``--block-size`` page (``_largest_kernel_block_within`` with the
    backend's ``MultipleOf(16)``: ``max(16, block // 16 x 16)``)."""
    dt = get_kv_dtype(kv_dtype)
    out = []
    for i in t.cache_layers:
        heads = max(1, t.kv_heads(i) // tp)
        if t.is_sliding(i):
            bs = block_size
            if release.sliding_block_from_kernel:
                bs = max(KERNEL_BLOCK_MULTIPLE, block_size // KERNEL_BLOCK_MULTIPLE * KERNEL_BLOCK_MULTIPLE)
            window = t.sliding_window
        else:
            bs, window = block_size, None
        out.append(LayerKV(i, window, bs, heads, t.head_dim_of(i), dt.block_bytes))  # vLLM's KV dtypes: 1 element/block
    return tuple(out)


def unify_page_sizes(specs: tuple[LayerKV, ...], release: VllmRelease) -> tuple[LayerKV, ...]:
    """unify_kv_cache_spec_page_size: smaller pages get ``block x (largest page / page)`` tokens; a page that
    does not divide the largest is padded to it (0.33.0) or refused (NotImplementedError, 0.19.1 / 0.20.0)."""
    largest = max(s.page_bytes for s in specs)
    out = []
    for s in specs:
        if s.page_bytes == largest:
            out.append(s)
        elif largest % s.page_bytes == 0:
            out.append(replace(s, block_size=s.block_size * (largest // s.page_bytes)))
        elif release.pads_pages:
            out.append(replace(s, page_size_padded=largest))
        else:
            raise EngineError(f"vLLM {release.version} cannot unify a {s.page_bytes}-byte KV page with a "
                              f"{largest}-byte one (unify_kv_cache_spec_page_size raises NotImplementedError)")
    return tuple(out)


@lru_cache(maxsize=1024)
def kv_plan(t: TextSpec, kv_dtype: str, tp: int, block_size: int, version: str) -> KVPlan:
    """The KV cache groups vLLM ``version`` builds for ``t`` on one of ``tp`` ranks (get_kv_cache_groups)."""
    release = get_release(version)
    specs = kv_layer_specs(t, kv_dtype, tp, block_size, release)
    if not specs:
        raise EngineError("the model has no cache-owning layer")
    if len({s.kind() for s in specs}) == 1:  # is_kv_cache_spec_uniform: one group of every layer
        return KVPlan(release, specs, (KVGroup(specs),), len(specs))
    # (one attention type with several page sizes would be UniformTypeKVCacheSpecs, one group; a Gemma 4 layout
    # always mixes sliding and full layers, which is the hybrid path below)
    specs = unify_page_sizes(specs, release)
    buckets: dict[tuple, list[LayerKV]] = {}  # same_type_layers, in layer order
    for s in specs:
        buckets.setdefault(s.kind(), []).append(s)
    sizes = [len(b) for b in buckets.values()]
    group_size = min(sizes)
    if max(sizes) < min(sizes) * 1.5:
        group_size = max(sizes)
    groups = []
    for layers in buckets.values():
        n = cdiv(len(layers), group_size)
        groups += [KVGroup(tuple(layers[i::n])) for i in range(n)]
    return KVPlan(release, specs, tuple(groups), group_size)


# ---- the engine ---------------------------------------------------------------------------

@dataclass(frozen=True)
class VllmLog:
    """What vLLM logs at start-up for a plan (predicted), per rank."""

    release: VllmRelease
    requested_bytes: int
    non_kv_bytes: int
    available_bytes: int
    plan: KVPlan
    num_blocks: int
    max_model_len: int
    max_num_batched_tokens: int

    @property
    def tokens(self) -> int:
        return self.plan.kv_cache_tokens(self.num_blocks, self.max_model_len, self.max_num_batched_tokens)

    @property
    def concurrency(self) -> float:
        return self.plan.max_concurrency(self.num_blocks, self.max_model_len, self.max_num_batched_tokens)

    @property
    def starts(self) -> bool:
        return self.plan.fits_one_request(self.available_bytes, self.max_model_len, self.max_num_batched_tokens)

    def lines(self) -> tuple[str, ...]:
        gib = lambda b: f"{round(b / GiB, 2)}"  # vllm/utils/mem_utils.py format_gib
        out = [f"Available KV cache memory: {gib(self.available_bytes)} GiB"]
        if not self.starts:
            needed = self.plan.blocks_per_request(self.max_model_len, self.max_num_batched_tokens) \
                * self.plan.bytes_per_block
            out.append(f"ValueError: To serve at least one request with the model's max seq len "
                       f"({self.max_model_len}), ({gib(needed)} GiB KV cache is needed, which is larger than the "
                       f"available KV cache memory ({gib(self.available_bytes)} GiB)")
            return tuple(out)
        size = f"GPU KV cache size: {self.tokens:,} tokens"
        conc = f"Maximum concurrency for {self.max_model_len:,} tokens per request: {self.concurrency:.2f}x"
        return tuple(out + ([f"{size}, {conc}"] if self.release.one_log_line else [size, conc]))


@dataclass(frozen=True)
class VllmEngine(Engine):
    name: ClassVar[str] = "vllm"
    description: ClassVar[str] = "vLLM V1: paged KV (hybrid allocator), gpu_memory_utilization budget"
    caps: ClassVar[Caps] = Caps(
        weight_formats=frozenset({"bf16", "fp16", "fp32", "fp8", "int8", "int4-g128", "nvfp4", "mxfp4"}),
        # NVIDIA's unified-memory SoCs too: Jetson AI Lab's vLLM containers on AGX Orin / Thor and vLLM on DGX
        # Spark's GB10 (reports/published/runs.csv: jetsonailab-vllm-*, aimuninn-, sovgrid-, djangodevreng-,
        # inferenceatlas-vllm-gb10-*); CUDA reports the shared memory as the GPU's, so the budget rule holds
        kv_dtypes=frozenset({"bf16", "fp16", "fp32", "fp8"}), device_kinds=frozenset({"gpu", "soc"}),
        vendors=frozenset({"nvidia", "amd"}), parallel=Parallel.TENSOR)
    options: ClassVar[tuple[Option, ...]] = (
        Option("gpu_memory_utilization", ("--gpu-memory-utilization",), "share of GPU memory vLLM may use",
               "vllm/config/cache.py CacheConfig.gpu_memory_utilization = 0.9"),
        Option("max_num_batched_tokens", ("--max-num-batched-tokens",), "tokens per scheduler step (profile run)",
               "vllm/engine/arg_utils.py get_batch_defaults: vllm serve takes 2048 on GPUs under 70 GiB, 8192 above "
               "(16384 from 160 GiB in 0.33.0), capped at max_num_seqs x max_model_len; g4sim plans 2048 when unset "
               "(it does not know the GPU when it prices memory) and prints the value it planned"),
        Option("block_size", ("--block-size",), "tokens per KV block",
               "vllm/config/cache.py CacheConfig.DEFAULT_BLOCK_SIZE = 16"),
        Option("enforce_eager", ("--enforce-eager",), "no CUDA graphs (saves their memory, slower decode)",
               "vllm/config/model.py ModelConfig.enforce_eager = False"),
        Option("vllm_version", ("--vllm-version",), "the vLLM release whose allocator rules apply (not a vllm flag)",
               f"g4sim: {DEFAULT_VLLM_VERSION}, the newest vLLM on PyPI when written (pip index versions vllm); "
               f"reproduced: {', '.join(RELEASES)}"),
    )
    command_names: ClassVar[tuple[str, ...]] = ("vllm",)
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    max_num_batched_tokens: int | None = None  # None: vLLM's default (see the Option)
    enforce_eager: bool = False
    vllm_version: str = DEFAULT_VLLM_VERSION
    # Measured by vLLM at start-up, so g4sim assumes them (cited):
    # "Estimated CUDA graph memory: 0.27 GiB total" (Gemma 4 31B, vllm-project/vllm#41789); g4sim keeps 0.5 GiB.
    cuda_graph_bytes: int = 512 * MiB
    # non-torch memory grown after the start-up snapshot (NCCL and cuBLAS exist before it): "non_torch_memory
    # takes 0.16GiB" (vllm-project/vllm#12126, H100) / "0.20GiB" (vllm-project/vllm#14447).
    non_torch_bytes: int = 205 * MiB
    allocator_reserve_fraction: float = 0.0  # the KV pool is one preallocated tensor

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise EngineError(f"--gpu-memory-utilization {self.gpu_memory_utilization} must be in (0, 1]")
        for flag, v in (("--block-size", self.block_size), ("--max-num-batched-tokens", self.max_num_batched_tokens)):
            if v is not None and v < 1:
                raise EngineError(f"{flag} {v} must be a positive integer")
        object.__setattr__(self, "vllm_version", get_release(self.vllm_version).version)

    @property
    def release(self) -> VllmRelease:
        return RELEASES[self.vllm_version]

    # ---- settings that depend on the workload ---------------------------------------------
    def batched_tokens(self, w: Workload | None = None, device_memory_bytes: int | None = None) -> int:
        """max_num_batched_tokens as vLLM resolves it: the setting, else its serve default
        (arg_utils.py get_batch_defaults / _set_default_max_num_seqs_and_batched_tokens_args)."""
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        r = self.release
        mnbt = next(n for floor, n, _ in r.batch_tiers if (device_memory_bytes or 0) >= floor)
        if w is not None:
            if r.raises_batched_tokens_for_mm_items and w.vision:
                mnbt = max(mnbt, _VIDEO_MAX_FRAMES * _VIDEO_TOKENS_PER_FRAME)  # video: the largest item
            mnbt = min(w.batch * w.ctx, mnbt)
        return mnbt

    def bind(self, w: Workload) -> VllmEngine:
        """The default max_num_batched_tokens resolved for ``w`` (capped at max_num_seqs x max_model_len)."""
        return self if self.max_num_batched_tokens is not None else replace(
            self, max_num_batched_tokens=self.batched_tokens(w))

    def kv_plan(self, t: TextSpec, kv_dtype: str, tp: int = 1) -> KVPlan:
        return kv_plan(t, get_kv_dtype(kv_dtype).name, tp, self.block_size, self.vllm_version)

    # ---- what it can run -------------------------------------------------------------------
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
        if self.block_size % KERNEL_BLOCK_MULTIPLE:
            return (f"vLLM {self.vllm_version}'s attention kernels for Gemma 4 ({self.release.backend}) take "
                    f"--block-size in multiples of {KERNEL_BLOCK_MULTIPLE}, not {self.block_size}")
        try:
            self.kv_plan(w.spec.text, w.kv_dtype, gpus)
        except EngineError as exc:
            return str(exc)
        total = device.usable_bytes()
        requested = self.budget_bytes(total, device.memory_bytes)
        if total - self.cuda_context_bytes < requested:
            return (f"vLLM refuses to start: free memory after its CUDA context (~{total - self.cuda_context_bytes:,} "
                    f"B) is less than --gpu-memory-utilization {self.gpu_memory_utilization} of the GPU "
                    f"({requested:,} B; v1/worker/utils.py request_memory)")
        return None

    def loads_format(self, fmt: str, w: Workload) -> bool:
        # a checkpoint states its own group size in quantization_config (AWQ / GPTQ / compressed-tensors)
        return super().loads_format(fmt, w) or (w.file is not None and fmt.startswith("int4-g"))

    def budget_bytes(self, usable_device_bytes: int, device_memory_bytes: int) -> int:
        """request_memory: ceil(total x utilisation); total = cudaMemGetInfo's total, which is the card less its
        driver reserve = g4sim's usable memory on a headless card (with a display attached vLLM's total is larger
        by the display's share and it refuses to start when that share is not free: g4sim stays on the safe side)."""
        return math.ceil(usable_device_bytes * self.gpu_memory_utilization)

    # ---- KV cache ----------------------------------------------------------------------------
    def kv_cells_for(self, t: TextSpec, layer: int, ctx: int, kv_dtype: str) -> int:
        """Token slots one request's blocks give ``layer`` (block size after page unification)."""
        plan = self.kv_plan(t, kv_dtype)
        src = t.kv_source_layer(layer)
        spec = next(s for s in plan.layers if s.layer == src)
        inflight = plan.in_flight_tokens(self.batched_tokens())
        return spec.max_memory_usage_bytes(ctx, inflight) // spec.page_bytes * spec.block_size

    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        return self.kv_cells_for(t, layer, ctx, "bf16")

    def _kv_terms(self, t: TextSpec, ctx: int, batch: int, kv_dtype: str, tp: int) -> list[MemoryTerm]:
        plan = self.kv_plan(t, kv_dtype, tp)
        mnbt = self.batched_tokens()
        out = []
        for component, sliding in ((Component.KV_SLIDING, True), (Component.KV_FULL, False)):
            groups = [g for g in plan.groups if (g.spec.sliding_window is not None) == sliding]
            total = batch * plan.request_bytes(ctx, mnbt, sliding)
            blocks = sum(g.blocks_per_request(ctx, plan.in_flight_tokens(mnbt)) for g in groups)
            bs = groups[0].spec.block_size if groups else 0
            rule = (f"cdiv(min(window - 1 + {plan.release.in_flight_batches} x max_num_batched_tokens, max_model_len), "
                    "block) + 1" if sliding else "cdiv(max_model_len, block)")
            where = "kv_cache_planning" if plan.release.reserves_null_block else "kv_cache_utils"
            out.append(MemoryTerm(component, total, Location.ACCELERATOR,
                                  f"{batch} seq x {blocks} blocks ({len(groups)} groups x ({rule}), block {bs} tokens) "
                                  f"x {plan.bytes_per_block} B per block ({plan.group_size} layers x "
                                  f"{plan.page_bytes} B page, {plan.padding_layers} padding layers; vLLM "
                                  f"{self.vllm_version} {where}.py) [{kv_dtype}{f', TP rank of {tp}' if tp > 1 else ''}]"))
        return out

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        return self._kv_terms(t, ctx, batch, kv_dtype, 1)

    # ---- activations ---------------------------------------------------------------------------
    def chunk_tokens(self, ctx: int) -> int:
        return self.batched_tokens()

    def activation_terms(self, t: TextSpec, *, ctx: int, batch: int, quant: str) -> list[MemoryTerm]:
        # The profile run (gpu_model_runner.py profile_run / _dummy_run): one forward of max_num_batched_tokens
        # tokens, then _dummy_sampler_run on min(max_num_batched_tokens, max_num_seqs) rows.
        mnbt = self.batched_tokens()
        terms = Engine.activation_terms(self, t, ctx=mnbt, batch=1, quant=quant)
        rows = min(batch, mnbt)  # --max-num-seqs is the batch
        per_row = 2 + 4 + 4 + 4
        terms.append(MemoryTerm(Component.SAMPLER, rows * t.vocab_size * per_row, Location.ACCELERATOR,
                                f"{rows} rows x vocab x {per_row} B: logits in the model dtype (compute_logits), their "
                                "fp32 copy (sampler.py Sampler.forward), fp32 softmax probs and the fp32 exponential "
                                "noise of random_sample (ops/topk_topp_sampler.py) — estimate, measured by vLLM"))
        return terms

    def overhead_terms(self, terms, *, device_kind: str) -> list[MemoryTerm]:
        out = [MemoryTerm(Component.NON_TORCH, self.non_torch_bytes, Location.ACCELERATOR,
                          "non-torch memory grown after vLLM's start-up snapshot (measured by vLLM; the CUDA context, "
                          "NCCL and cuBLAS handles precede the snapshot and sit outside the budget)")]
        if not self.enforce_eager and self.release.cuda_graphs_subtracted:
            out.append(MemoryTerm(Component.CUDA_GRAPHS, self.cuda_graph_bytes, Location.ACCELERATOR,
                                  f"CUDA-graph estimate vLLM {self.vllm_version} takes from the KV budget "
                                  "(VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1; none with --enforce-eager)"))
        return out

    # ---- the whole breakdown -------------------------------------------------------------------
    def memory(self, w: Workload, device_kind: str = "gpu") -> MemoryBreakdown:
        """The base breakdown (``weight_terms``: the file's or the format's tensors) plus what vLLM allocates beyond
        them: the V slots of k_eq_v layers and the vision encoder's dummy batch."""
        return _vllm_memory(self, w, device_kind)

    def memory_per_gpu(self, w: Workload, gpus: int, device_kind: str = "gpu") -> MemoryBreakdown:
        m = super().memory_per_gpu(w, gpus, device_kind)
        if gpus == 1:
            return m
        exact = {x.component: x for x in self._kv_terms(w.spec.text, w.ctx, w.batch, w.kv_dtype, gpus)}
        return MemoryBreakdown(tuple(exact.get(x.component, x) if x.category is Category.KV_CACHE else x
                                     for x in m.terms))

    # ---- what vLLM logs -------------------------------------------------------------------------
    def vllm_log(self, w: Workload, device, gpus: int = 1, display_attached: bool = True) -> VllmLog:
        """The start-up figures vLLM logs for this plan on each of ``gpus`` x ``device`` (predicted)."""
        eng = self.bind(w)
        m = eng.memory_per_gpu(w, gpus, device.kind)
        usable = device.usable_bytes(display_attached)
        requested = eng.budget_bytes(usable, device.memory_bytes)
        non_kv = sum(x.bytes for x in m.terms if x.location is Location.ACCELERATOR
                     and x.category is not Category.KV_CACHE)
        available = requested - non_kv
        plan = eng.kv_plan(w.spec.text, w.kv_dtype, gpus)
        return VllmLog(self.release, requested, non_kv, available, plan, plan.num_blocks(available), w.ctx,
                       eng.batched_tokens())

    def user_view(self, w: Workload, device, display_attached: bool = True) -> tuple[str, ...]:
        log = self.vllm_log(w, device, 1, display_attached)
        lines = [f"vLLM {self.vllm_version} log (predicted):", *log.lines()]
        p = log.plan
        lines.append(f"(g4sim) {log.num_blocks:,} blocks of {p.bytes_per_block:,} B: {len(p.groups)} KV cache groups of "
                     f"{p.group_size} layers, {p.padding_layers} padding; requested {log.requested_bytes:,} B - "
                     f"non-KV {log.non_kv_bytes:,} B")
        total = device.usable_bytes(False)
        default = replace(self, max_num_batched_tokens=None).batched_tokens(w, total)  # torch's total_memory
        planned = self.bind(w).batched_tokens()
        if default != planned:
            lines.append(f"(g4sim) without --max-num-batched-tokens, vllm serve {self.vllm_version} takes {default} on "
                         f"{device.name} (engine/arg_utils.py get_batch_defaults); this plan and its command use {planned}")
        return tuple(lines)

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
                  f"--max-num-batched-tokens {self.batched_tokens(w)}", f"--block-size {self.block_size}"]
        if self.enforce_eager:
            parts.append("--enforce-eager")
        # the vision tower loads unless both image and video are limited to 0 (interfaces.py _mark_tower_model)
        limits = ({} if w.vision else {"image": 0, "video": 0}) | ({} if w.audio else {"audio": 0})
        if limits:
            parts.append("--limit-mm-per-prompt '" + json.dumps(limits) + "'")
        parts.append(_VERSION_COMMENT.format(self.vllm_version))
        return join_command(parts)

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        m = _VERSION_COMMENT_RE.search(text)
        argv = _split_ignoring_comments(text)
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
        if m is not None:
            settings["vllm_version"] = get_release(m.group(1)).version
        if "util" in v:
            settings["gpu_memory_utilization"] = to_float("--gpu-memory-utilization", v["util"])
        if "mnbt" in v:
            settings["max_num_batched_tokens"] = to_int("--max-num-batched-tokens", v["mnbt"])
        if "block" in v:
            settings["block_size"] = to_int("--block-size", v["block"])
        if v.get("eager"):
            settings["enforce_eager"] = True
        vision = True  # vllm serve loads the vision tower unless image and video are both limited to 0
        if "limit_mm" in v:
            try:
                limits = json.loads(v["limit_mm"])
            except ValueError:
                raise EngineError(f"--limit-mm-per-prompt {v['limit_mm']!r} is not JSON") from None
            if not isinstance(limits, dict):
                raise EngineError(f"--limit-mm-per-prompt {v['limit_mm']!r} is not a JSON object")
            vision = bool(limits.get("image", 1)) or bool(limits.get("video", 1))  # the tower loads for either
        model = model_from_name(checkpoint) if file is None else (file.spec.name if file.spec.name in VARIANTS else None)
        return Parsed(cls(**settings), model, quant, kv,
                      to_int("--max-model-len", v["ctx"]) if "ctx" in v else None,
                      to_int("--max-num-seqs", v["batch"]) if "batch" in v else None,
                      to_int("--tensor-parallel-size", v.get("tp", 1)), vision, file)


def _split_ignoring_comments(text: str) -> list[str]:
    """shlex-split a pasted command (line continuations allowed), dropping shell comments."""
    lex = shlex.shlex(text.replace("\\\n", " "), posix=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        return list(lex)
    except ValueError as exc:
        raise EngineError(f"cannot read the command {text!r}: {exc}") from None


def _v_slot_bytes(t: TextSpec, quant: str, file) -> int:
    """Bytes of the V slots vLLM's qkv_proj gives attention_k_eq_v layers (a copy of each one's K projection)."""
    layers = {i for i in t.cache_layers if t.k_eq_v(i)}
    if not layers:
        return 0
    if file is not None:
        return sum(x.bytes for x in file.tensors if x.layer in layers and ".k_proj." in x.name)
    fmt = get_quant(quant)
    ctx = quant_context(t)
    return sum(fmt.tensor_bytes(Tensor("attention", "attn_k", t.kv_heads(i) * t.head_dim_of(i), t.hidden_size, i,
                                       name=f"blk.{i}.attn_v.weight"), ctx) for i in sorted(layers))


@lru_cache(maxsize=4096)
def _vllm_memory(engine: VllmEngine, w: Workload, device_kind: str) -> MemoryBreakdown:
    m = Engine.memory(engine, w, device_kind)
    extra = []
    v_slot = _v_slot_bytes(w.spec.text, w.quant, w.file)
    if v_slot:
        extra.append(MemoryTerm(Component.ATTENTION, v_slot, Location.ACCELERATOR,
                                "V slots of qkv_proj on attention_k_eq_v layers, loaded with K (vLLM allocates them: "
                                "vllm/model_executor/models/gemma4.py Gemma4Attention builds QKVParallelLinear with "
                                "K and V for every non-shared layer; not in the checkpoint)"))
    enc = _encoder_term(engine, w, m)
    if enc is not None:
        extra.append(enc)
    return MemoryBreakdown((*m.terms, *extra)) if extra else m


def _encoder_term(engine: VllmEngine, w: Workload, m: MemoryBreakdown) -> MemoryTerm | None:
    """The vision encoder's dummy batch of the profile run, when the tower loads."""
    v = w.spec.vision
    if not w.vision or v is None:
        return None
    # gpu_model_runner.py profile_run: the modality with the most tokens per item (video: 32 frames x 78 tokens,
    # gemma4_mm.py get_mm_max_tokens_per_item), max(max_num_batched_tokens, item) // item items of it
    # (v1/core/encoder_cache_manager.py compute_mm_encoder_budget); the outputs stay cached through the decoder's
    # dummy run.
    a = 4 if get_quant(w.quant).name == "fp32" else 2
    item = _VIDEO_MAX_FRAMES * _VIDEO_TOKENS_PER_FRAME
    items = max(engine.batched_tokens(), item) // item
    outputs = items * item * w.spec.text.hidden_size * a
    patches = items * _VIDEO_MAX_FRAMES * _VIDEO_SOFT_TOKENS_PER_FRAME * v.pooling_kernel_size ** 2
    encoder = patches * (4 * v.hidden_size + 3 * v.intermediate_size) * a  # one ViT layer's activations
    decoder = sum(x.bytes for x in m.terms if x.category is Category.ACTIVATIONS)
    return MemoryTerm(Component.COMPUTE_BUFFER, outputs + max(0, encoder - decoder), Location.ACCELERATOR,
                      f"vision encoder dummy batch of the profile run: {items} video item(s) x {item} tokens x hidden "
                      f"x {a} B kept, + one ViT layer over {patches} patches beyond the decoder's peak — estimate")
