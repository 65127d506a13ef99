"""Predictions against every third-party Gemma 4 measurement the hardware profiles cite.

These devices were not measured by g4sim and their efficiencies are uncalibrated defaults, so the
errors are reported (printed with `pytest -s`, and in the closing note), not held to a tolerance;
what is asserted is that each comparison is made and every prediction respects its roofline.
"""

from __future__ import annotations

import math

from g4sim.engines import Workload, get_engine
from g4sim.evaluation.speed import predict
from g4sim.hardware import load_profiles
from g4sim.spec import get_variant

_QUANTS = (("q4_k_m", "q4_k_m"), ("q8_0", "q8_0"), ("q4_0", "q4_0"), ("int4", "q4_0"), ("q4", "q4_k_m"),
           ("bf16", "bf16"), ("fp16", "fp16"), ("litertlm", "q4_0"))


def _quant(text: str) -> str:
    low = text.lower().replace(" ", "")
    for needle, quant in _QUANTS:
        if needle in low:
            return quant
    return "q4_0"  # LiteRT-LM's shipped builds are 4-bit


def comparisons():
    for prof in load_profiles().values():
        for pub in prof.published:
            engine = get_engine("llamacpp")  # the closest rule g4sim has for llama.cpp, LiteRT-LM and the like
            t = predict(engine, Workload(get_variant(pub.model), pub.ctx or 1024, pub.batch, _quant(pub.quant)), prof)
            yield prof, pub, t


def test_every_published_figure_is_compared():
    rows = list(comparisons())
    assert len(rows) >= 5
    print(f"\n{'device':<22}{'engine':<16}{'model':<9}{'figure':<9}{'published':>11}{'predicted':>11}{'error':>9}")
    for prof, pub, t in rows:
        for figure, published, predicted, roof in (
                ("prefill", pub.prefill_tokens_per_s, t.prefill_tokens_per_s, t.prefill_tokens_per_s_roofline),
                ("decode", pub.decode_tokens_per_s, t.decode_tokens_per_s, t.decode_tokens_per_s_roofline)):
            if published is None:
                continue
            assert math.isfinite(predicted) and 0 < predicted <= roof * (1 + 1e-12)
            print(f"{prof.name:<22}{pub.engine[:15]:<16}{pub.model:<9}{figure:<9}{published:>11,.1f}"
                  f"{predicted:>11,.1f}{(predicted - published) / published:>+9.0%}")
