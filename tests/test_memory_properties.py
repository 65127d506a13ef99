"""Property tests of the memory model (hypothesis)."""

from __future__ import annotations

from g4sim.analytic.components import Component, Location

from hypothesis import given, settings, strategies as st

from g4sim.engines import estimate_memory
from g4sim.analytic import QUANT_FORMATS
from g4sim.engines import ENGINES
from g4sim.spec import VARIANTS

variants = st.sampled_from(sorted(VARIANTS))
engines = st.sampled_from(sorted(ENGINES))
quants = st.sampled_from(sorted(QUANT_FORMATS))
contexts = st.integers(min_value=1, max_value=262_144)
batches = st.integers(min_value=1, max_value=64)
# LiteRT-LM gives its sliding layers max_num_tokens cells like the full ones (ring buffers are a GPU option, off in
# `litert-lm run`), and runs at most 4,096 tokens: the window property is not one of its rules
window_bounded = st.sampled_from(sorted(set(ENGINES) - {"litert-lm"}))


@settings(max_examples=60, deadline=None)
@given(variants, engines, contexts, contexts, batches, quants)
def test_memory_never_decreases_with_context(variant, engine, a, b, batch, quant):
    lo, hi = sorted((a, b))
    spec = VARIANTS[variant]
    m_lo = estimate_memory(spec, ctx=lo, batch=batch, quant=quant, engine=engine, prefill_chunk=2048)
    m_hi = estimate_memory(spec, ctx=hi, batch=batch, quant=quant, engine=engine, prefill_chunk=2048)
    assert m_lo.total() <= m_hi.total()
    assert m_lo.by_category()["kv_cache"] <= m_hi.by_category()["kv_cache"]


@settings(max_examples=60, deadline=None)
@given(variants, engines, contexts, batches, batches)
def test_memory_never_decreases_with_batch(variant, engine, ctx, a, b):
    lo, hi = sorted((a, b))
    spec = VARIANTS[variant]
    assert estimate_memory(spec, ctx=ctx, batch=lo, engine=engine).total() <= \
        estimate_memory(spec, ctx=ctx, batch=hi, engine=engine).total()


@settings(max_examples=60, deadline=None)
@given(variants, window_bounded, st.integers(min_value=0, max_value=200_000), batches)
def test_sliding_kv_stops_growing_past_the_window(variant, engine, extra, batch):
    spec = VARIANTS[variant]
    # past the window plus any engine's prefill slack (vLLM: window - 1 + max_num_batched_tokens;
    # llama.cpp: window + n_ubatch, padded to 256; Ollama: its automatic num_batch grows with
    # num_ctx x parallel up to 2048 at 32,768 tokens) a sliding layer's cache is constant
    w = spec.text.sliding_window + 40960
    at = estimate_memory(spec, ctx=w, batch=batch, engine=engine).get(Component.KV_SLIDING)
    past = estimate_memory(spec, ctx=w + extra, batch=batch, engine=engine).get(Component.KV_SLIDING)
    assert at == past


@settings(max_examples=60, deadline=None)
@given(variants, engines, contexts, batches, quants, st.booleans(), st.booleans())
def test_totals_equal_the_sum_of_their_parts(variant, engine, ctx, batch, quant, vision, audio):
    m = estimate_memory(VARIANTS[variant], ctx=ctx, batch=batch, quant=quant, engine=engine, vision=vision, audio=audio)
    assert m.total(None) == sum(t.bytes for t in m.terms)
    assert m.total() == sum(m.by_category().values())
    assert m.total(None) == m.total(Location.ACCELERATOR) + m.total(Location.HOST)
    assert all(t.bytes >= 0 for t in m.terms)
