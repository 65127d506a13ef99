"""llama.cpp's compute buffer placed with most of a periodic run of layers left out (``llamacpp._shortcut``)
against the whole graph placed layer for layer: equal to the byte, whichever way the shortcut goes
(taken after one layer pattern, after three or four, or given up for the whole graph)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from g4sim.engines import llamacpp
from g4sim.spec import VARIANTS, TextSpec


def _whole(t: TextSpec, u: int, kv_full: int, kv_swa: int, fa: bool, k: str, v: str) -> int:
    g = llamacpp._reserve_graph(t, u, 1, kv_full, kv_swa, fa, llamacpp._GGML_CACHE_TYPE[k],
                                llamacpp._GGML_CACHE_TYPE[v], range(t.num_layers))
    return llamacpp._place(g)[0]


def _placed(monkeypatch, t: TextSpec, u: int, kv_full: int, kv_swa: int, fa: bool, k: str, v: str) -> tuple[int, int]:
    """compute_buffer_bytes (uncached), and how many layers the graph it settled on had."""
    layers = []
    place = llamacpp._place

    def spy(g, *probes):
        layers.append(len(g.starts) - 1)
        return place(g, *probes)

    monkeypatch.setattr(llamacpp, "_place", spy)
    got = llamacpp.compute_buffer_bytes.__wrapped__(t, n_tokens=u, n_outputs=1, kv_full=kv_full,
                                                   kv_swa=kv_swa, flash_attn=fa, k_type=k, v_type=v)
    monkeypatch.undo()
    assert got == _whole(t, u, kv_full, kv_swa, fa, k, v)
    return got, layers[-1]


def _repeated(name: str, n: int, kv_shared: int = 0) -> TextSpec:
    t = VARIANTS[name].text
    return replace(t, num_layers=n, layer_types=(t.layer_types * (n // len(t.layer_types) + 1))[:n],
                   num_kv_shared_layers=kv_shared)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("fa", [True, False])
@pytest.mark.parametrize("u", [512, 2048])
def test_the_variants_place_as_the_whole_graph(monkeypatch, name, fa, u):
    for kv_full in (4096, 131072):
        for k in ("fp16", "q8_0"):
            _placed(monkeypatch, VARIANTS[name].text, u, kv_full, min(kv_full, 1536), fa, k, k if fa else "fp16")


@pytest.mark.parametrize("t,fa,k,placed", [
    (_repeated("e4b", 512), True, "bf16", 20),  # benchmarks/bench_plan.py's 512-layer config
    (_repeated("e4b", 512), False, "q8_0", 20),
    (_repeated("31b", 60), True, "fp16", 24),
    (replace(VARIANTS["31b"].text, num_layers=64, layer_types=("sliding_attention",) * 64), False, "fp16", 9),
    (_repeated("e2b", 70, kv_shared=40), True, "q8_0", 40),  # two runs, a cut in each
    (_repeated("e4b", 78), False, "fp16", 60),  # the state comes back after three layer patterns
    (_repeated("e4b", 156), False, "q8_0", 60),  # after four
    (_repeated("e4b", 42), True, "fp16", 42),  # not within the 42 layers: the whole graph
])
def test_long_runs_place_as_the_whole_graph(monkeypatch, t, fa, k, placed):
    for u in (512, 2048):
        assert _placed(monkeypatch, t, u, 4096, 1024, fa, k, k if fa else "fp16")[1] == placed
