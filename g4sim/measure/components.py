"""Per-component time and peak memory of g4sim's own model (``g4sim profile --components``).

Regions of a forward pass are tagged with the shared vocabulary (``g4sim.analytic.components.Component``)
by forward pre/post hooks on the model's submodules, plus three instance-level wrappers of the methods
that are not modules.  Nothing is registered unless a profile asks for it: the model runs unhooked
otherwise.

=====================================  ===================  ===========================================
region (g4sim.model.model)             component            note
=====================================  ===================  ===========================================
``TextModel.embed_tokens``             ``token_embedding``  the lookup (its scale multiply is untagged)
``TextModel.per_layer_inputs``         ``ple_inputs``       PLE table lookup, model projection, norm
``TextModel.rope``                     ``attention``        cos / sin tables of the chunk
``DecoderLayer.self_attn``             ``attention``        projections, q/k/v norms, RoPE, cache, sdpa
``DecoderLayer.mlp``                   ``mlp``              the dense MLP (the dense branch in MoE)
``DecoderLayer.router``                ``router``           MoE layers only
``DecoderLayer.experts``               ``experts``          MoE layers only
``*layernorm*``, ``TextModel.norm``    ``norms``            every hidden-size RMSNorm, the final one too
``per_layer_input_gate`` /             ``ple_projections``  the in-layer PLE gate, projection and norm
``per_layer_projection`` / its norm
``Gemma4ForCausalLM.logits``           ``logits``           LM head (tied embedding), fp32, softcap
=====================================  ===================  ===========================================

Regions are disjoint by construction (no tagged region runs inside another); should one ever run
inside another, only the outer one is counted (``components_nested`` says how often), so nothing is counted
twice.  What no region covers is ``other``: residual adds, layer scalars, the GELU x PLE-input product,
slicing to the kept positions, the KV cache's allocation (no single member: it holds both
``kv_sliding`` and ``kv_full`` layers) and the argmax of the runner.  ``probe`` is the time the probes
themselves took (reading /proc, synchronising), outside every region.

Per phase (prefill = one prompt pass; decode = all decode steps together) and component, the row gets

* ``<phase>_s.<component>`` — seconds inside that component's regions, summed;
* ``<phase>_peak_bytes.<component>`` — the worst region instance's peak memory above the memory at
  its entry (CPU: resident high-water mark, reset by writing 5 to /proc/self/clear_refs at entry;
  CUDA: the allocator's peak allocated bytes, reset at entry);
* ``<phase>_s.other`` and ``<phase>_s.probe``; together with the components they add up exactly to
  ``<phase>_components_seconds``, the wall time of the instrumented pass;
* ``components_nested`` — regions that ran inside another (0: none, by construction); and, when the
  instrumented passes ran out of memory, ``components_error`` instead of the columns above.

The instrumented passes are extra passes run after the row's own (unhooked) prefill and decode, so
the row's whole-pass figures are the same with and without ``--components``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from g4sim.analytic.components import Category, Component

PHASES = ("prefill", "decode")
OTHER = "other"  # the untagged remainder of a pass (not a Component: nothing of the vocabulary names it)
PROBE = "probe"  # time in the probes themselves


def seconds_column(phase: str, name: str) -> str:
    return f"{phase}_s.{name}"


def peak_column(phase: str, name: str) -> str:
    return f"{phase}_peak_bytes.{name}"


def pass_column(phase: str) -> str:
    return f"{phase}_components_seconds"


# ---- which region is which component ---------------------------------------------------------

def module_components(model) -> list[tuple[Any, Component]]:
    """(module, component) for every hooked submodule of a ``Gemma4ForCausalLM``."""
    text = model.model
    out: list[tuple[Any, Component]] = [(text.embed_tokens, Component.TOKEN_EMBEDDING), (text.norm, Component.NORMS)]
    for layer in text.layers:
        out += [(layer.self_attn, Component.ATTENTION), (layer.mlp, Component.MLP)]
        out += [(getattr(layer, n), Component.NORMS) for n in (
            "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm",
            "post_feedforward_layernorm_1", "post_feedforward_layernorm_2", "pre_feedforward_layernorm_2")
            if hasattr(layer, n)]
        if layer.moe:
            out += [(layer.router, Component.ROUTER), (layer.experts, Component.EXPERTS)]
        if layer.ple:
            out += [(layer.per_layer_input_gate, Component.PLE_PROJECTIONS),
                    (layer.per_layer_projection, Component.PLE_PROJECTIONS),
                    (layer.post_per_layer_input_norm, Component.PLE_PROJECTIONS)]
    return out


def method_components(model) -> list[tuple[Any, str, Component]]:
    """(object, method name, component) for the regions that are methods, not modules."""
    text = model.model
    out = [(text, "rope", Component.ATTENTION), (model, "logits", Component.LOGITS)]
    if text.spec.has_ple:
        out.append((text, "per_layer_inputs", Component.PLE_INPUTS))
    return out


def expected_components(spec) -> set[Component]:
    """The components a model of ``spec`` (a TextSpec or ModelSpec) has regions for."""
    t = getattr(spec, "text", spec)
    out = {Component.TOKEN_EMBEDDING, Component.ATTENTION, Component.MLP, Component.NORMS, Component.LOGITS}
    if t.enable_moe_block:
        out |= {Component.ROUTER, Component.EXPERTS}
    if t.has_ple:
        out |= {Component.PLE_INPUTS, Component.PLE_PROJECTIONS}
    return out


# ---- the probes --------------------------------------------------------------------------------

class _CpuMemory:
    """Resident memory: VmHWM reset to VmRSS at region entry, read at exit."""

    def __init__(self):
        from g4sim.measure.profile import _status_kib, reset_peak

        self._status, self._reset = _status_kib, reset_peak

    def enter(self) -> int:
        self._reset()
        return self._status("VmRSS")

    def peak(self) -> int:
        return self._status("VmHWM")


class _CudaMemory:
    """The caching allocator's allocated bytes: peak reset at region entry (synchronised both ends)."""

    def __init__(self):
        import torch

        self.cuda = torch.cuda

    def enter(self) -> int:
        self.cuda.synchronize()
        self.cuda.reset_peak_memory_stats()
        return self.cuda.memory_allocated()

    def peak(self) -> int:
        self.cuda.synchronize()
        return self.cuda.max_memory_allocated()


class Tracker:
    """Accumulates per-phase, per-component seconds and worst peak; ``phase`` is None between passes."""

    def __init__(self, cuda: bool = False):
        self.memory = _CudaMemory() if cuda else _CpuMemory()
        self.phase: str | None = None
        self.seconds: dict[str, dict[Component, float]] = {p: {} for p in PHASES}
        self.peaks: dict[str, dict[Component, int]] = {p: {} for p in PHASES}
        self.probe: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.passes: dict[str, float] = {}
        self.nested = 0
        self._depth = 0
        self._start = 0.0
        self._base = 0

    def enter(self, component: Component) -> None:
        if self.phase is None:
            return
        self._depth += 1
        if self._depth > 1:  # inside another region: the outer one has it
            self.nested += 1
            return
        t = time.perf_counter()
        self._base = self.memory.enter()
        self._start = time.perf_counter()
        self.probe[self.phase] += self._start - t

    def exit(self, component: Component) -> None:
        if self.phase is None:
            return
        self._depth -= 1
        if self._depth:
            return
        peak = self.memory.peak()  # CUDA: synchronises, so the region's kernels are inside its time
        end = time.perf_counter()
        peak -= self._base
        seconds, peaks = self.seconds[self.phase], self.peaks[self.phase]
        seconds[component] = seconds.get(component, 0.0) + end - self._start
        peaks[component] = max(peaks.get(component, 0), peak)
        self.probe[self.phase] += time.perf_counter() - end

    @contextmanager
    def measuring(self, phase: str, sync: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Tag the regions run inside as ``phase`` and time the whole pass (its wall time)."""
        self.phase, self._depth = phase, 0
        sync()
        start = time.perf_counter()
        try:
            yield
            sync()
            self.passes[phase] = self.passes.get(phase, 0.0) + time.perf_counter() - start
        finally:
            self.phase, self._depth = None, 0

    def columns(self) -> dict[str, float | int]:
        """The row's per-component columns (see the module docstring), phases that ran only."""
        out: dict[str, float | int] = {}
        for phase, total in self.passes.items():
            seconds = self.seconds[phase]
            for c in sorted(seconds, key=lambda c: list(Component).index(c)):
                out[seconds_column(phase, c.value)] = seconds[c]
            out[seconds_column(phase, OTHER)] = total - sum(seconds.values()) - self.probe[phase]
            out[seconds_column(phase, PROBE)] = self.probe[phase]
            out[pass_column(phase)] = total
            for c in sorted(self.peaks[phase], key=lambda c: list(Component).index(c)):
                out[peak_column(phase, c.value)] = self.peaks[phase][c]
        return out


@contextmanager
def instrumented(model, tracker: Tracker) -> Iterator[Tracker]:
    """Hook ``model``'s regions into ``tracker`` for the duration; everything is removed on exit."""
    handles = []
    wrapped: list[tuple[Any, str]] = []
    try:
        for module, component in module_components(model):
            handles.append(module.register_forward_pre_hook(lambda m, args, c=component: tracker.enter(c)))
            handles.append(module.register_forward_hook(lambda m, args, out, c=component: tracker.exit(c)))
        for owner, name, component in method_components(model):
            method = getattr(owner, name)

            def region(*args, _method=method, _c=component, **kwargs):
                tracker.enter(_c)
                result = _method(*args, **kwargs)
                tracker.exit(_c)
                return result

            owner.__dict__[name] = region  # shadows the class's method on this instance only
            wrapped.append((owner, name))
        yield tracker
    finally:
        for h in handles:
            h.remove()
        for owner, name in wrapped:
            owner.__dict__.pop(name, None)


def measure_components(runner, ids, cache_tokens: int, decode_steps: int, cuda: bool = False) -> dict[str, float | int]:
    """One instrumented prefill of ``ids`` and ``decode_steps`` instrumented decode steps on a ``G4simRunner``;
    the per-component columns of the row.  The runner's cache is released afterwards."""
    import torch

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    tracker = Tracker(cuda)
    with instrumented(runner.model, tracker):
        with tracker.measuring("prefill", sync):
            token = runner.prefill(ids, cache_tokens)
        if decode_steps:
            with tracker.measuring("decode", sync):
                for _ in range(decode_steps):
                    token = runner.decode(token)
    runner.cache = None
    out = tracker.columns()
    out["components_nested"] = tracker.nested
    return out


# ---- reading rows back ---------------------------------------------------------------------------

def row_components(row: dict[str, Any], phase: str) -> dict[str, dict[str, float]]:
    """``{"seconds": {name: s}, "peak_bytes": {name: bytes}}`` of one phase of a stored row (empty cells
    skipped); names are Component values plus ``other`` and ``probe`` for seconds."""
    out: dict[str, dict[str, float]] = {"seconds": {}, "peak_bytes": {}}
    for key, value in row.items():
        if value in ("", None) or value != value:  # empty cell (NaN from pandas)
            continue
        for kind, prefix in (("seconds", f"{phase}_s."), ("peak_bytes", f"{phase}_peak_bytes.")):
            if key.startswith(prefix):
                out[kind][key[len(prefix):]] = float(value)
    return out


# ---- the analytic counterparts ----------------------------------------------------------------------

# each workspace the g4sim engine's rule prices, and the measured region whose prefill peak it is: the four
# activation terms of the breakdown, and the regions whose workspace the breakdown folds into another term
# (the router's and the experts' into the MLP workspace; norms', embeddings' and the in-layer PLE steps'
# into hidden states)
REGIONS_OF = {Component.ATTENTION_WORKSPACE: (Component.ATTENTION,), Component.MLP_WORKSPACE: (Component.MLP,),
              Component.ROUTER: (Component.ROUTER,), Component.EXPERTS: (Component.EXPERTS,),
              Component.LOGITS: (Component.LOGITS,), Component.PLE_INPUTS: (Component.PLE_INPUTS,),
              Component.PLE_PROJECTIONS: (Component.PLE_PROJECTIONS,), Component.NORMS: (Component.NORMS,),
              Component.TOKEN_EMBEDDING: (Component.TOKEN_EMBEDDING,)}
# validate's figure names: the activation terms' own (attention_workspace_bytes, ...), "<region>_workspace_bytes"
PEAK_FIGURES = {term: f"{term.value}_bytes" if term.category is Category.ACTIVATIONS
                else f"{term.value}_workspace_bytes" for term in REGIONS_OF}
PEAK_TOLERANCE = 0.05
PAGE_BYTES = 4096


def probe_resolution(row: dict[str, Any]) -> int:
    """Bytes by which the CPU probe can misread one region's peak (0 on CUDA: the allocator's own counts).
    Linux keeps a process's resident pages in per-CPU counters (``mm->rss_stat``) that /proc/self/status reads
    without their per-CPU deltas, each under the counter batch of max(32, 2 x CPUs) pages; a region's peak is
    the difference of two such reads (VmHWM at exit, VmRSS at entry): 512 KiB on 2 CPUs, a sixth of the 3 MiB
    logits region.  The rule itself is held exactly against torch's allocator in the tests."""
    if str(row.get("torch_device") or "cpu").startswith("cuda"):
        return 0
    cpus = int(float(row.get("cpu_cores") or 0)) or 1
    return 2 * cpus * max(32, 2 * cpus) * PAGE_BYTES


def analytic_workspaces(engine, t, *, ctx: int, batch: int, quant: str) -> dict[Component, int]:
    """Each workspace of ``engine``'s rule (the g4sim engine's ``region_workspaces``: the worst prefill peak of
    one instance of each region, which the breakdown prices at the step where the most is live together),
    keyed as ``REGIONS_OF``; only the regions the model has."""
    regions = engine.region_workspaces(t, ctx=ctx, batch=batch, quant=quant)
    return {term: sum(regions[r] for r in rs) for term, rs in REGIONS_OF.items() if all(r in regions for r in rs)}


def component_peaks(row: dict[str, Any], engine, t, *, ctx: int, batch: int,
                    quant: str) -> list[tuple[str, int, float, float]]:
    """(figure, predicted, measured, tolerance) per workspace of the rule, for a row measured with
    ``--components``: the workspace (``analytic_workspaces``) against the worst prefill peak of its region(s),
    summed over regions, held within PEAK_TOLERANCE or the probe's resolution, whichever is wider."""
    measured = row_components(row, "prefill")["peak_bytes"]
    if not measured:
        return []
    predicted = analytic_workspaces(engine, t, ctx=ctx, batch=batch, quant=quant)
    floor = probe_resolution(row)
    out = []
    for term, regions in REGIONS_OF.items():
        present = [measured[r.value] for r in regions if r.value in measured]
        if present and term in predicted:
            peak = sum(present)
            out.append((PEAK_FIGURES[term], predicted[term], peak, max(PEAK_TOLERANCE, floor / peak if peak else 0.0)))
    return out
