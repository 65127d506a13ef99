"""Fit search: what it finds fits, one step more does not."""

from __future__ import annotations

import pytest

from g4sim.analytic import QUANT_FORMATS
from g4sim.hardware import get_profile
from g4sim.plan import PlanRequest, largest_fitting, make_plan
from g4sim.spec import get_variant


def req(model="26b-a4b", gpu="rtx4090", **kw) -> PlanRequest:
    return PlanRequest(spec=get_variant(model), device=get_profile(gpu), **{"ctx": 32768, **kw})


def test_largest_fitting_binary_search():
    assert largest_fitting(lambda n: n <= 37, 1, 100) == 37
    assert largest_fitting(lambda n: True, 1, 100) == 100
    assert largest_fitting(lambda n: False, 1, 100) == 0


@pytest.mark.parametrize("model,gpu,quant", [("26b-a4b", "rtx4090", "q4_k_m"), ("31b", "h100-sxm", "bf16"),
                                             ("e2b", "rpi5-8gb", "q4_0"), ("e4b", "l4", "fp8")])
def test_max_context_fits_and_one_more_token_does_not(model, gpu, quant):
    r = req(model, gpu, quant=quant)
    plan = make_plan(r)
    if plan.max_context == r.spec.max_context:
        assert r.fits(ctx=plan.max_context)
    else:
        assert r.fits(ctx=plan.max_context) and not r.fits(ctx=plan.max_context + 1)


@pytest.mark.parametrize("model,gpu,ctx", [("e4b", "h100-sxm", 8192), ("26b-a4b", "h200", 131072)])
def test_max_batch_fits_and_one_more_does_not(model, gpu, ctx):
    r = req(model, gpu, ctx=ctx)
    plan = make_plan(r)
    assert plan.max_batch >= 1
    assert r.fits(batch=plan.max_batch) and not r.fits(batch=plan.max_batch + 1)


def test_suggested_quant_is_the_first_that_fits():
    r = req("31b", "rtx4090", ctx=8192)
    plan = make_plan(r)
    assert not plan.fits and plan.suggested_quant is not None
    assert r.fits(quant=plan.suggested_quant)
    order = list(QUANT_FORMATS)
    for better in order[: order.index(plan.suggested_quant)]:
        assert not r.fits(quant=better)


def test_headroom_is_usable_minus_total():
    plan = make_plan(req("e2b", "rtx4090", ctx=8192))
    assert plan.fits and plan.headroom_bytes == get_profile("rtx4090").usable_memory_bytes - plan.total_bytes
