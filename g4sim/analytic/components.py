"""The one vocabulary of memory: categories, components and locations.

Every memory term g4sim computes, every key of ``--json``, every row the renderer and the report
draw, and every figure the profiler measures is named by a member of these enums.  Nothing parses
a term's display name back into meaning: code compares members.  The enum values are the strings
that appear in JSON and CSV, so they are stable.  No torch import.
"""

from __future__ import annotations

from enum import Enum


class Category(str, Enum):
    WEIGHTS = "weights"
    KV_CACHE = "kv_cache"
    ACTIVATIONS = "activations"
    OVERHEAD = "overhead"

    @property
    def title(self) -> str:
        return {"weights": "Weights", "kv_cache": "KV cache", "activations": "Activations",
                "overhead": "Overhead"}[self.value]


class Location(str, Enum):
    ACCELERATOR = "accelerator"
    HOST = "host"


class Component(str, Enum):
    """What a term of memory is.  ``category`` groups them; ``label`` is how a person reads them."""

    # weights (the values are the component names of g4sim.analytic.tensors)
    TOKEN_EMBEDDING = "token_embedding"
    PLE_TABLE = "ple_table"
    PLE_PROJECTIONS = "ple_projections"
    ATTENTION = "attention"
    MLP = "mlp"
    EXPERTS = "experts"
    ROUTER = "router"
    NORMS = "norms"
    LM_HEAD = "lm_head"
    OUTPUT_COPY = "output_copy"  # llama.cpp offloads the tied embedding again as the output tensor
    VISION_TOWER = "vision_tower"
    AUDIO_TOWER = "audio_tower"
    REPACKED_WEIGHTS = "repacked_weights"  # a re-laid-out second copy: llama.cpp's CPU_REPACK / AMX, LiteRT-LM's
    # XNNPACK weight cache or its GPU-converted weights
    FILE_SECTIONS = "file_sections"  # a weight file's bytes beyond the tensors priced (tokenizer, graphs, metadata)
    # KV cache
    KV_SLIDING = "kv_sliding"
    KV_FULL = "kv_full"
    # activations / workspaces
    HIDDEN_STATES = "hidden_states"
    ATTENTION_WORKSPACE = "attention_workspace"
    MLP_WORKSPACE = "mlp_workspace"
    LOGITS = "logits"
    PLE_INPUTS = "ple_inputs"
    DEQUANT_WORKSPACE = "dequant_workspace"
    SAMPLER = "sampler"
    COMPUTE_BUFFER = "compute_buffer"
    # overhead
    ALLOCATOR_RESERVE = "allocator_reserve"
    CUDA_CONTEXT = "cuda_context"
    RUNTIME = "runtime"
    NON_TORCH = "non_torch"
    CUDA_GRAPHS = "cuda_graphs"

    @property
    def category(self) -> Category:
        return _CATEGORY[self]

    @property
    def label(self) -> str:
        return _LABELS.get(self, self.value.replace("_", " "))


_WEIGHTS = {Component.TOKEN_EMBEDDING, Component.PLE_TABLE, Component.PLE_PROJECTIONS, Component.ATTENTION,
            Component.MLP, Component.EXPERTS, Component.ROUTER, Component.NORMS, Component.LM_HEAD,
            Component.OUTPUT_COPY, Component.VISION_TOWER, Component.AUDIO_TOWER, Component.REPACKED_WEIGHTS,
            Component.FILE_SECTIONS}
_KV = {Component.KV_SLIDING, Component.KV_FULL}
_OVERHEAD = {Component.ALLOCATOR_RESERVE, Component.CUDA_CONTEXT, Component.RUNTIME, Component.NON_TORCH,
             Component.CUDA_GRAPHS}
_CATEGORY = {c: (Category.WEIGHTS if c in _WEIGHTS else Category.KV_CACHE if c in _KV
                 else Category.OVERHEAD if c in _OVERHEAD else Category.ACTIVATIONS) for c in Component}
_LABELS = {
    Component.PLE_TABLE: "PLE table", Component.PLE_PROJECTIONS: "PLE projections", Component.MLP: "MLP",
    Component.LM_HEAD: "LM head", Component.OUTPUT_COPY: "output (tied embedding copy)",
    Component.REPACKED_WEIGHTS: "repacked weights (a second, re-laid-out copy)",
    Component.FILE_SECTIONS: "other file sections",
    Component.KV_SLIDING: "sliding layers", Component.KV_FULL: "full layers",
    Component.ATTENTION_WORKSPACE: "peak workspace (attention)", Component.MLP_WORKSPACE: "peak workspace (MLP)",
    Component.LOGITS: "peak workspace (logits)", Component.PLE_INPUTS: "per-layer inputs (PLE)",
    Component.DEQUANT_WORKSPACE: "dequantization workspace", Component.SAMPLER: "sampler warm-up logits",
    Component.CUDA_CONTEXT: "CUDA context", Component.NON_TORCH: "non-torch memory",
    Component.CUDA_GRAPHS: "CUDA graphs",
}

CATEGORIES: tuple[Category, ...] = tuple(Category)
