"""`g4sim profile --components`: per-component time and peak memory, and its checks (issue 10, part 5).

In process, tiny random models (one per mechanism) check that the regions tagged are exactly the
components the model has; mid-sized random models, traced by torch's allocator, hold every step of the
"g4sim" engine rule's prefill (live bytes at each region's entry and its peak) to the model, and a formula
changed by one tensor fails.  One live profile (e2b, 2 layers, fp32, 600 tokens: the size
tests/test_profile.py runs) checks the stored columns, that component times add up to the pass, and
each measured region peak and the whole pass against the rule.
"""

from __future__ import annotations

import bisect
import csv
import functools

import pytest

torch = pytest.importorskip("torch")

from g4sim.analytic.components import Component  # noqa: E402
from g4sim.engines import estimate_memory, get_engine  # noqa: E402
from g4sim.measure import components as C  # noqa: E402
from g4sim.measure.profile import G4simRunner, ProfileRun, profile  # noqa: E402
from g4sim.spec import FULL, SLIDING, TextSpec, get_variant  # noqa: E402

S, F = SLIDING, FULL
TINY = {
    "dense": TextSpec(hidden_size=64, num_layers=4, layer_types=(S, S, S, F), sliding_window=8, num_heads=4,
                      num_kv_heads=2, num_global_kv_heads=1, head_dim=16, global_head_dim=32, attention_k_eq_v=True,
                      num_kv_shared_layers=0, intermediate_size=96, use_double_wide_mlp=False, vocab_size=320),
    "ple": TextSpec(hidden_size=64, num_layers=10, layer_types=(S, S, S, S, F) * 2, sliding_window=8, num_heads=4,
                    num_kv_heads=1, num_global_kv_heads=None, head_dim=16, global_head_dim=32,
                    attention_k_eq_v=False, num_kv_shared_layers=5, intermediate_size=96, use_double_wide_mlp=True,
                    vocab_size=320, hidden_size_per_layer_input=8, vocab_size_per_layer_input=320),
    "moe": TextSpec(hidden_size=64, num_layers=3, layer_types=(S, S, F), sliding_window=8, num_heads=4,
                    num_kv_heads=2, num_global_kv_heads=1, head_dim=16, global_head_dim=32, attention_k_eq_v=True,
                    num_kv_shared_layers=0, intermediate_size=48, use_double_wide_mlp=False, vocab_size=320,
                    enable_moe_block=True, num_experts=16, top_k_experts=4, moe_intermediate_size=24),
}


def tiny_runner(spec: TextSpec) -> G4simRunner:
    from g4sim.model import Gemma4ForCausalLM

    runner = object.__new__(G4simRunner)  # G4simRunner builds published variants; this one gets a tiny spec
    runner.model = Gemma4ForCausalLM.from_spec(spec, seed=0)
    runner.run, runner.cache, runner.pos = ProfileRun(model="tiny", contexts=(20,), chunk=None), None, 0
    return runner


def tagged(columns: dict, phase: str) -> set[str]:
    return {k.split(".", 1)[1] for k in columns if k.startswith(f"{phase}_s.")} - {C.OTHER, C.PROBE}


def component_set_errors(columns: dict, spec: TextSpec) -> list[str]:
    """What is wrong with the tagged component set of a measured row (empty: nothing)."""
    want = {c.value for c in C.expected_components(spec)}
    errors = [f"{phase}: tagged {sorted(tagged(columns, phase))}, the model has {sorted(want)}"
              for phase in C.PHASES if tagged(columns, phase) != want]
    if int(columns.get("components_nested") or 0):
        errors.append(f"{columns['components_nested']} regions ran inside another")
    return errors


@pytest.mark.parametrize("name", sorted(TINY))
def test_regions_are_exactly_the_components_the_model_has(name):
    spec = TINY[name]
    runner = tiny_runner(spec)
    ids = torch.randint(0, spec.vocab_size, (1, 20), generator=torch.Generator().manual_seed(0))
    columns = C.measure_components(runner, ids, 23, 3)
    assert component_set_errors(columns, spec) == []
    moe = {Component.EXPERTS.value, Component.ROUTER.value}
    assert (moe <= tagged(columns, "prefill")) == (name == "moe")  # MoE has experts and router, dense has none
    ple = {Component.PLE_INPUTS.value, Component.PLE_PROJECTIONS.value}
    assert (ple <= tagged(columns, "prefill")) == (name == "ple")
    for phase in C.PHASES:  # the parts add up to the pass exactly, and nothing is counted twice
        parts = [v for k, v in columns.items() if k.startswith(f"{phase}_s.")]
        assert sum(parts) == pytest.approx(columns[C.pass_column(phase)], rel=1e-9, abs=1e-12)
        assert columns[C.seconds_column(phase, C.OTHER)] >= 0
    # every hook and wrapper is gone afterwards: the model runs unhooked again
    model = runner.model
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert "logits" not in model.__dict__ and "rope" not in model.model.__dict__


def test_a_changed_hook_mapping_fails_the_component_check(monkeypatch):
    """The checks can fail: a mapping that forgets the router, or that tags whole layers, is caught."""
    spec = TINY["moe"]
    ids = torch.randint(0, spec.vocab_size, (1, 20), generator=torch.Generator().manual_seed(0))
    mapping = C.module_components
    monkeypatch.setattr(C, "module_components",
                        lambda m: [(mod, c) for mod, c in mapping(m) if c is not Component.ROUTER])
    errors = component_set_errors(C.measure_components(tiny_runner(spec), ids, 23, 3), spec)
    assert errors and all(e.split(":")[0] in C.PHASES and "'router'" not in e.split("the model has")[0] for e in errors)
    monkeypatch.setattr(C, "module_components", lambda m: mapping(m) + [(layer, Component.ATTENTION)
                                                                     for layer in m.model.layers])
    errors = component_set_errors(C.measure_components(tiny_runner(spec), ids, 23, 3), spec)
    assert any("ran inside another" in e for e in errors) and any("tagged" in e for e in errors)


@pytest.mark.parametrize("model,layers,ctx,quant", [("e2b", 2, 600, "fp32"), ("e2b", 10, 2048, "bf16"),
                                                     ("26b-a4b", 2, 2048, "bf16"), ("31b", 6, 4096, "bf16"),
                                                     ("e4b", 7, 300, "fp32"), ("e2b", 35, 4096, "bf16")])
def test_the_breakdown_prices_the_step_where_most_is_live(model, layers, ctx, quant):
    """The breakdown's activations are the prefill step with the most live bytes (not the largest workspace
    alone): its hidden states, its workspace term and the PLE inputs add up to that step's total, and the
    workspace is no more than its region's worst instance (analytic_workspaces)."""
    spec = get_variant(model).reduced(layers)
    engine = get_engine("g4sim", prefill_chunk=ctx)
    ws = C.analytic_workspaces(engine, spec.text, ctx=ctx, batch=1, quant=quant)
    assert set(ws) == {term for term, regions in C.REGIONS_OF.items()
                       if set(regions) <= C.expected_components(spec)}  # one per region the model has
    phases = engine.prefill_phases(spec.text, ctx=ctx, batch=1, quant=quant)
    peak = max(phases, key=lambda p: p.total)
    memory = estimate_memory(spec, ctx=ctx, quant=quant, kv_dtype=quant, engine=engine, device_kind="cpu")
    terms = {t.component: t.bytes for t in memory.terms if t.category.value == "activations"}
    assert sum(terms.values()) == peak.total == max(p.total for p in phases)
    key_of = {regions[0]: term for term, regions in C.REGIONS_OF.items()}
    assert peak.workspace <= ws[key_of[peak.region]]  # the step is one instance of its region
    if peak.term is not Component.HIDDEN_STATES:
        assert terms[peak.term] == peak.workspace
    if ctx >= 2048 and layers < 35:  # reduced models at these prompts: RoPE on a full layer's q is the peak
        assert peak.step.endswith("self_attn")
        assert terms[Component.ATTENTION_WORKSPACE] == ws[Component.ATTENTION_WORKSPACE]
    if layers == 35:  # the whole e2b: per_layer_inputs over 35 layers outweighs any layer's step
        assert peak.step == "per_layer_inputs" and Component.ATTENTION_WORKSPACE not in terms


# ---- the rule against torch's allocator, exactly ------------------------------------------------------

def allocator_trace(spec: TextSpec, ctx: int, dtype) -> tuple[list[dict], int, list]:
    """One prefill of ``ctx`` tokens of a random model of ``spec`` under torch's profiler (every CPU allocation and
    free, in order): per region instance in execution order, the live bytes at its entry (allocated since the
    pass began and not freed) and its peak above that; the pass's peak live bytes; each MoE layer's tokens per
    expert."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from g4sim.model import Gemma4ForCausalLM

    model = Gemma4ForCausalLM.from_spec(spec, dtype=dtype, seed=0)
    ids = torch.randint(0, spec.vocab_size, (1, ctx), generator=torch.Generator().manual_seed(0))
    counts = []
    for layer in model.model.layers:
        if layer.moe:
            layer.router.register_forward_hook(lambda m, args, out: counts.append(
                torch.bincount(out[1].reshape(-1), minlength=spec.num_experts).tolist()))

    class Regions:  # the Tracker's interface: each region a record_function range
        phase = "prefill"

        def __init__(self):
            self.stack = []

        def enter(self, c):
            self.stack.append(record_function(f"region|{c.value}|{len(self.stack)}"))
            self.stack[-1].__enter__()

        def exit(self, c):
            self.stack.pop().__exit__(None, None, None)

    cache = model.new_cache(1, ctx)
    with C.instrumented(model, Regions()), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(ids, cache=cache)
    events = prof.profiler.kineto_results.events()
    memory = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    regions = sorted((e.start_ns(), e.start_ns() + e.duration_ns(), e.name().split("|")[1]) for e in events
                     if e.name().startswith("region|"))
    times, live, total = [t for t, _ in memory], [], 0
    for _, n in memory:
        total += n
        live.append(total)
    out = []
    for begin, end, name in regions:
        i, j = bisect.bisect_left(times, begin), bisect.bisect_right(times, end)
        entry = live[i - 1] if i else 0
        out.append({"region": name, "entry": entry, "peak": max([entry, *live[i:j]]) - entry})
    return out, max(live), counts


SYNTHETIC = {  # every mechanism, at sizes where the steps checked are MiBs (GEMM scratch, sdpa tiles: KiBs)
    "ple": TextSpec(hidden_size=1024, num_layers=10, layer_types=(S, S, S, S, F) * 2, sliding_window=128,
                    num_heads=8, num_kv_heads=1, num_global_kv_heads=None, head_dim=128, global_head_dim=256,
                    attention_k_eq_v=False, num_kv_shared_layers=5, intermediate_size=2048, use_double_wide_mlp=True,
                    vocab_size=4096, hidden_size_per_layer_input=128, vocab_size_per_layer_input=4096),
    "moe": TextSpec(hidden_size=1024, num_layers=2, layer_types=(S, F), sliding_window=128, num_heads=8,
                    num_kv_heads=2, num_global_kv_heads=1, head_dim=128, global_head_dim=256, attention_k_eq_v=True,
                    num_kv_shared_layers=0, intermediate_size=1024, use_double_wide_mlp=False, vocab_size=4096,
                    enable_moe_block=True, num_experts=32, top_k_experts=4, moe_intermediate_size=256),
    "logits": TextSpec(hidden_size=64, num_layers=2, layer_types=(S, F), sliding_window=128, num_heads=2,
                       num_kv_heads=1, num_global_kv_heads=None, head_dim=32, global_head_dim=64,
                       attention_k_eq_v=False, num_kv_shared_layers=0, intermediate_size=128,
                       use_double_wide_mlp=False, vocab_size=131072),  # 12 B x vocab: 1.5 MiB of softcap
}
# Exact but for what the rule leaves out (the norms' [n, 1] means, GEMM scratch, sdpa's tiles): 1 %, where a
# tensor of the smallest kind the rule counts is 4-25 % of its step, so one more or one fewer fails.
TRACE_TOLERANCE = 0.01
CHECKED_STEP = 1 << 20  # steps of under 1 MiB (the KV-shared layers' one position) are held by their entry only


@functools.lru_cache(maxsize=None)
def traced(name: str, ctx: int, dtype: str):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # sdpa's and the GEMMs' per-thread scratch stays KiBs
    try:
        return allocator_trace(SYNTHETIC[name], ctx, torch.bfloat16 if dtype == "bf16" else torch.float32)
    finally:
        torch.set_num_threads(threads)


def trace_mismatches(name: str, ctx: int, dtype: str) -> list[str]:
    """Where the rule and the allocator trace of one prefill disagree (empty: nowhere): each region instance, in
    execution order, by the live bytes at its entry and its own peak above them (1 %); each region's worst
    instance (what validate holds); the pass's peak against the rule's activations.  The experts' step is held
    with the routing the model drew (the rule prices the busiest expert by balanced routing's extreme, held
    to the draw apart)."""
    from g4sim.engines import native

    spec, a = SYNTHETIC[name], 2 if dtype == "bf16" else 4
    trace, top, counts = traced(name, ctx, dtype)
    engine = get_engine("g4sim", prefill_chunk=ctx)
    steps = [p for p in engine.prefill_phases(spec, ctx=ctx, batch=1, quant=dtype) if p.region is not None]
    if [p.region.value for p in steps] != [r["region"] for r in trace]:
        return ["the rule's regions are not the model's, in order"]
    off = lambda want, got: abs(want - got) > TRACE_TOLERANCE * got  # noqa: E731
    errors, layers, worst = [], iter(counts), {}
    for step, measured in zip(steps, trace):
        want = step.workspace
        if step.region is Component.EXPERTS:
            loads = [n for n in next(layers) if n]
            base = ctx * spec.hidden_size * a + 3 * ctx * spec.top_k_experts * 8
            want = base + max(native.expert_bytes(spec, n, prev, a) for n, prev in zip(loads, [0, *loads]))
            busiest = native.busiest_expert_tokens(spec, ctx)
            if abs(busiest - max(loads)) > 0.2 * max(loads):
                errors.append(f"{step.step}: busiest expert {busiest} tokens, drawn {max(loads)}")
        if want >= CHECKED_STEP and off(want, measured["peak"]):
            errors.append(f"{step.step}: peak {want:,} B, traced {measured['peak']:,} B")
        entry = step.total - step.workspace
        if off(entry, measured["entry"]):
            errors.append(f"{step.step}: live at entry {entry:,} B, traced {measured['entry']:,} B")
        worst[step.region] = max(worst.get(step.region, 0), measured["peak"])
    rule = engine.region_workspaces(spec, ctx=ctx, batch=1, quant=dtype)
    errors += [f"{r.value}: worst {rule[r]:,} B, traced {peak:,} B" for r, peak in worst.items()
               if peak >= CHECKED_STEP and r is not Component.EXPERTS and off(rule[r], peak)]
    memory = estimate_memory(model_spec_of(spec), ctx=ctx, quant=dtype, kv_dtype=dtype, engine=engine,
                             device_kind="cpu")
    if off(memory.by_category()["activations"], top):
        errors.append(f"pass: activations {memory.by_category()['activations']:,} B, traced peak {top:,} B")
    return errors


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("name,ctx", [("ple", 300), ("ple", 100), ("moe", 300), ("logits", 300)])
def test_every_step_matches_the_allocator_trace(name, ctx, dtype):
    assert trace_mismatches(name, ctx, dtype) == []


def _more(func: str, extra):
    """``func`` of g4sim.engines.native with ``extra(*args)`` bytes more (one tensor of the kind it counts)."""
    from g4sim.engines import native

    original = getattr(native, func)
    return lambda *args, **kw: (lambda r: (r[0] + extra(*args), *r[1:]) if isinstance(r, tuple)
                                else r + extra(*args))(original(*args, **kw))


# one tensor more (or fewer) of the kind each formula counts; each must fail a trace it applies to
MUTATIONS = {
    # (in 16-bit, q_norm's q_proj output and two fp32 copies weigh as much: only fp32 tells them apart)
    "apply_rope: four tensors, not five": ("rope_bytes", lambda n, a: -n * a, ("moe/fp32", "ple/fp32")),
    "RMSNorm: three fp32 copies": ("norm_bytes", lambda n, a, scale=True: 4 * n, ("moe", "ple")),
    "MLP: two intermediates": ("mlp_bytes", lambda t, i, n, b, a: -b * n * t.mlp_intermediate(i) * a, ("moe", "ple")),
    "Router: one more [tokens, hidden] fp32": ("router_bytes", lambda t, n, a: 4 * n * t.hidden_size, ("moe",)),
    "Experts: one more [n, hidden] fp32": ("expert_bytes", lambda t, n, p, a: 4 * n * t.hidden_size, ("moe",)),
    "per_layer_inputs: one more [n, layers, ple_dim]": (
        "ple_inputs_bytes", lambda t, n, b, a: b * n * t.num_layers * t.hidden_size_per_layer_input * a, ("ple",)),
    "logits: one fp32 vocab tensor fewer": ("logits_region_bytes", lambda t, m, b, a: -4 * b * m * t.vocab_size,
                                       ("logits",)),
    "rope tables: one more fp32 [n, d]": ("rope_table_bytes", lambda n, d, a: 4 * n * d, ("moe", "ple")),
    "attention: one more q-sized tensor": ("attention_bytes",
                                           lambda t, i, n, kv, b, a: b * n * t.num_heads * t.head_dim_of(i) * a,
                                           ("moe", "ple")),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_one_tensor_more_or_fewer_fails_the_trace(monkeypatch, mutation):
    """The checks above can fail: a formula changed by one tensor of its kind disagrees with the trace."""
    from g4sim.engines import native

    from g4sim.engines import base

    func, extra, names = MUTATIONS[mutation]
    caches = (native.prefill_phases, base._memory)  # nothing priced before or after the mutation is reused
    for cache in caches:
        cache.cache_clear()
    monkeypatch.setattr(native, func, _more(func, extra))
    try:
        for config in names:
            name, _, dtype = config.partition("/")
            assert trace_mismatches(name, 300, dtype or "bf16"), f"{mutation}: {config} still matches"
    finally:
        monkeypatch.undo()
        for cache in caches:
            cache.cache_clear()


def model_spec_of(text: TextSpec):
    from g4sim.spec import ModelSpec

    return ModelSpec(name="synthetic", text=text)


# ---- one live profile ------------------------------------------------------------------------------

LIVE = ProfileRun(model="e2b", layers=2, contexts=(600,), dtype="fp32", decode_steps=3, command="pytest components",
                  components=True)
# What no region covers (residual adds, layer scalars, the GELU x PLE-input product, slicing, the KV cache's
# allocation, argmax) is elementwise work on [tokens, hidden] beside the matmuls: 2-7 % of a pass measured
# (e2b 2 and 10 layers, 26b-a4b 2 layers, 512-2048 tokens); 15 % leaves room for a shared 2-core machine.
UNTAGGED_SHARE = 0.15
# Memory, per workspace of the rule, for every region the model has: PEAK_TOLERANCE (5 %, the whole-pass peak's),
# or the probe's resolution where that is wider (C.probe_resolution: Linux's per-CPU RSS counter batches, 512 KiB
# on 2 CPUs; the 3 MiB logits region reads 2.8-2.9 MiB), as the rule itself is held exactly above.
LIVE_TERMS = [term for term, regions in C.REGIONS_OF.items() if set(regions) <= C.expected_components(LIVE.spec())]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from dataclasses import replace

    from g4sim.measure.validate import validate

    store = tmp_path_factory.mktemp("components")
    assert profile([replace(LIVE, store=str(store))], progress=False) == ["e2b ctx 600: ok"]
    (path,) = store.glob("*.csv")
    (row,) = list(csv.DictReader(path.open()))
    return row, validate(store, calibration_models={"e2b"})


def test_live_row_holds_every_component_column(live):
    row, checks = live
    spec = LIVE.spec().text
    for phase in C.PHASES:
        for c in C.expected_components(spec):
            assert float(row[C.seconds_column(phase, c.value)]) > 0
            assert int(row[C.peak_column(phase, c.value)]) >= 0
        assert float(row[C.pass_column(phase)]) > 0
    assert component_set_errors(row, spec) == [] and not row.get("components_error")
    assert {Component.EXPERTS.value, Component.ROUTER.value}.isdisjoint(tagged(row, "prefill"))  # dense model
    figures = {c.figure for c in checks}  # and validate reads them back
    assert {C.PEAK_FIGURES[t] for t in LIVE_TERMS} <= figures
    # the row's own figures are still there, from unhooked passes
    assert float(row["prefill_seconds"]) > 0 and int(row["prefill_peak_bytes"]) > 0


@pytest.mark.parametrize("phase", C.PHASES)
def test_live_component_times_add_up_to_the_pass(live, phase):
    row, _ = live
    parts = C.row_components(row, phase)["seconds"]
    total = float(row[C.pass_column(phase)])
    assert sum(parts.values()) == pytest.approx(total, rel=1e-9)
    other, probe = parts.pop(C.OTHER), parts.pop(C.PROBE)
    assert other >= 0  # no region counted twice
    assert other <= UNTAGGED_SHARE * (total - probe), f"untagged {other:.3f} s of {total - probe:.3f} s"


@pytest.mark.parametrize("term", LIVE_TERMS, ids=lambda t: t.value)
def test_live_component_peak_matches_the_rules_term(live, term):
    row, checks = live
    (check,) = [c for c in checks if c.figure == C.PEAK_FIGURES[term]]
    assert check.tolerance == max(C.PEAK_TOLERANCE, C.probe_resolution(row) / check.measured)
    assert check.ok, (f"{term.value}: predicted {check.predicted:,.0f} B, measured {check.measured:,.0f} B "
                      f"({check.error:+.1%})")


def test_live_whole_pass_peak_is_the_rules(live):
    _, checks = live
    (check,) = [c for c in checks if c.figure == "prefill_peak_bytes"]
    assert check.ok, f"predicted {check.predicted:,.0f} B, measured {check.measured:,.0f} B ({check.error:+.1%})"


def test_component_columns_join_an_existing_store(tmp_path):
    """Rows with the new columns appended to a file of rows without them (and back): every row reads."""
    from g4sim.measure.measurements import append_row, load_store

    path = tmp_path / "dev.csv"
    plain = {"model": "e2b", "ctx": 64, "status": "ok", "prefill_seconds": 1.0}
    tagged_row = {**plain, "ctx": 128, C.seconds_column("prefill", "mlp"): 0.5,
                  C.seconds_column("prefill", C.OTHER): 0.1, C.peak_column("prefill", "mlp"): 4096,
                  C.pass_column("prefill"): 0.7}
    for row in (plain, tagged_row, plain):
        append_row(path, row)
    frame = load_store(tmp_path)
    assert list(frame.ctx) == [64, 128, 64]
    rows = [{k: (None if v != v else v) for k, v in r.items()} for _, r in frame.iterrows()]
    assert [C.row_components(r, "prefill") for r in rows] == [
        {"seconds": {}, "peak_bytes": {}},
        {"seconds": {"mlp": 0.5, "other": 0.1}, "peak_bytes": {"mlp": 4096.0}},
        {"seconds": {}, "peak_bytes": {}}]
    assert [r["ctx"] for r in csv.DictReader(path.open())] == ["64", "128", "64"]
