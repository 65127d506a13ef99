"""The engine-aware speed model: its work terms, its fitter, its roofline bound.

The fitted terms themselves are checked against llama.cpp's measured rows in tests/test_speed_validation.py;
here the machinery: the fitter recovers terms it is given, a prediction never beats its roofline, and the
work llama.cpp does in prefill (every layer over every prompt token) is counted from the converter's tensor
table (g4sim/measure/gguf_files.py), not from g4sim's own tensor list.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from g4sim.analytic.work import prefill_flop
from g4sim.engines import Workload, get_engine
from g4sim.evaluation.speed import EngineSpeed, format_family, predict, speed_class_of, work
from g4sim.hardware import get_profile
from g4sim.measure import speedfit
from g4sim.measure.gguf_files import gguf_tensor_table
from g4sim.spec import get_variant


def test_nonnegative_lstsq_recovers_a_nonnegative_solution_and_drops_a_negative_column():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.1, 1.0, (12, 3))
    x = np.array([2.0, 0.5, 3.0])
    assert np.allclose(speedfit.nonnegative_lstsq(a, a @ x), x)
    b = a[:, :2] @ np.array([1.0, 1.0]) - 0.3 * a[:, 2]  # the third column would fit negative
    got = speedfit.nonnegative_lstsq(a, b)
    assert got[2] == 0 and np.all(got >= 0)


@pytest.mark.parametrize("quant,family", [("q4_k_m", "q4_k"), ("q4_k_s", "q4_k"), ("q8_0", "q8_0"), ("q4_0", "q4_0"),
                                          ("bf16", "16bit"), ("fp16", "16bit"), ("q5_k_m", "q5_k"), ("q6_k", "q6_k"),
                                          ("nvfp4", "nvfp4"), ("int4-g128", "int4-g128")])
def test_format_families(quant, family):
    assert format_family(quant) == family


def test_llamacpp_prefill_computes_kv_shared_layers_for_every_prompt_token():
    """e2b: the 20 KV-shared layers' matmuls (q, o, gate, up, down, PLE gate/proj) run for all n tokens."""
    spec, n = get_variant("e2b"), 4096
    shared = {i for i in range(spec.text.num_layers) if spec.text.is_kv_shared(i)}
    params = sum(int(np.prod(shape)) for name, shape, _ in gguf_tensor_table(spec.text)
                 if name.startswith("blk.") and int(name.split(".")[1]) in shared and len(shape) == 2)
    extra = prefill_flop(spec, n, shared_all=True) - prefill_flop(spec, n)
    attention = sum(4.0 * spec.text.num_heads * spec.text.head_dim_of(i) *
                    (sum(min(p + 1, spec.text.sliding_window) if spec.text.is_sliding(i) else p + 1
                         for p in range(n - 1)))
                    for i in shared)  # the n - 1 positions the engine that skips them does not attend from
    assert extra == pytest.approx(2.0 * params * (n - 1) + attention, rel=1e-12)
    lcpp, hf = get_engine("llamacpp"), get_engine("transformers")
    w = Workload(spec, n, 1, "q4_k_m", "fp16")
    assert lcpp.prefill_runs_kv_shared_layers and not hf.prefill_runs_kv_shared_layers
    assert predict(lcpp, w, get_profile("rtx4090")).prefill_flop == prefill_flop(spec, n, shared_all=True)


TERMS = EngineSpeed("llamacpp/cuda", (("q4_k", 0.3), ("q8_0", 0.45)), (("q4_k", 0.6), ("q8_0", 0.7)),
                    prefill_layer_seconds=2e-4, decode_layer_seconds=3e-5, expert_rows_at_peak=20.0,
                    provenance="test")


def _runs(split: str = "calibration"):
    engine, device = get_engine("llamacpp"), get_profile("rtx4090")
    runs = []
    for model in ("e2b", "26b-a4b", "31b"):
        for quant in ("q4_k_m", "q8_0"):
            for ctx in (512, 2048, 8192):
                w = Workload(get_variant(model), ctx, 1, quant, "fp16")
                p = predict(engine, w, device, terms=TERMS)
                d = predict(engine, replace(w, ctx=ctx + 64), device, terms=TERMS)
                row = speedfit.speed_row(engine, w, device, prefill_s=p.prefill_seconds,
                                         decode_step_s=d.decode_step_seconds, split=split, label=f"{model}",
                                         source="synthetic", decode_ctx=ctx + 64)
                runs.append(speedfit.Run(row, engine, w, device, ctx + 64, speed_class_of(engine, device)))
    return runs


def test_the_fit_recovers_the_terms_that_made_the_rows():
    entry, scored = speedfit.fit_runs(_runs(), "llamacpp/cuda", "test")
    assert entry["prefill_compute"] == {"q4_k": 0.3, "q8_0": 0.45}
    assert entry["decode_bandwidth"] == {"q4_k": 0.6, "q8_0": 0.7}
    assert entry["prefill_layer_seconds"] == pytest.approx(2e-4, rel=1e-3)
    assert entry["decode_layer_seconds"] == pytest.approx(3e-5, rel=1e-3)
    assert entry["expert_rows_at_peak"] == pytest.approx(20.0, abs=0.01)
    assert max(abs(s["error"]) for s in scored) < 1e-3
    assert entry["in_sample"]["decode"]["n"] == 18 and entry["bands"]["decode"]["n"] == 0


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["e2b", "e4b", "26b-a4b", "31b"]), st.sampled_from(["q4_k_m", "q8_0", "q4_0", "bf16"]),
       st.integers(1, 200_000), st.integers(1, 8), st.floats(0.01, 1.0), st.floats(0.01, 1.0),
       st.floats(0, 1e-3), st.floats(0, 1e-3), st.floats(0, 100))
def test_fitted_terms_never_beat_the_roofline(model, quant, ctx, batch, e_p, e_d, c_p, c_d, rows):
    terms = EngineSpeed("llamacpp/cuda", (("q4_k", e_p),), (("q4_k", e_d),), c_p, c_d, rows, "test")
    t = predict(get_engine("llamacpp"), Workload(get_variant(model), ctx, batch, quant, "fp16"), get_profile("rtx4090"),
                terms=terms)
    assert t.prefill_seconds >= t.prefill_seconds_roofline * (1 - 1e-12)
    assert t.decode_step_seconds >= t.decode_step_seconds_roofline * (1 - 1e-12)
    assert t.speed_class == "llamacpp/cuda" and t.calibrated


def test_a_phase_timed_while_other_work_took_the_cpu_is_left_out():
    row = {"prefill_seconds": "2.0", "prefill_others_cpu_s": "0.21", "decode_seconds": "1.0",
           "decode_others_cpu_s": "0.1"}
    assert speedfit.contended(row, "prefill") and not speedfit.contended(row, "decode")  # 10.5 % vs 10 % of a core
    assert not speedfit.contended({"prefill_seconds": "2.0"}, "prefill")  # rows from before the column: load_1min says
    from g4sim.measure.profile import busy_cpu_seconds, others_cpu_seconds
    start = busy_cpu_seconds()
    assert others_cpu_seconds(start) >= 0 and start[0] >= start[1] > 0


def test_quantized_gguf_on_a_cpu_is_bounded_by_the_int8_peak():
    """ggml-cpu multiplies a quantized type by integer dot products (activations quantized to Q8_0 / Q8_K), so a CPU
    profile's int8 peak bounds it; an SoC's or GPU's peaks are its GPU's, and a float GGUF stays float."""
    from g4sim.engines import get_engine
    from g4sim.hardware import get_profile

    lcpp, ollama = get_engine("llamacpp"), get_engine("ollama")
    pi, jetson, ci = get_profile("rpi5-8gb"), get_profile("jetson-orin-nano-8gb"), get_profile("ci-cpu-2core")
    assert lcpp.compute_dtype_on("q4_k_m", pi) == ollama.compute_dtype_on("q8_0", pi) == "int8"
    assert lcpp.compute_dtype_on("q4_k_m", jetson) == lcpp.compute_dtype_on("bf16", pi) == "bf16"
    assert pi.flops("int8") == 614.4e9 and ci.flops("int8") == ci.flops("bf16")  # no int8 figure: the bf16 peak
    w = Workload(get_variant("e2b"), 512, 1, "q4_0", "fp16")
    assert predict(lcpp, w, pi).prefill_seconds_roofline == pytest.approx(
        work(lcpp, w)[0] / 614.4e9, rel=1e-12)


def test_engines_on_an_socs_cpu_cores_are_priced_at_the_cores_peak():
    """phone-8gb's peak_flops are its Adreno GPU's and Hexagon NPU's; llama.cpp and LiteRT-LM's CPU backend run on its
    Kryo cores (cpu_peak_flops), and a profile without them is refused for LiteRT-LM's CPU backend."""
    from g4sim.engines import get_engine
    from g4sim.hardware import get_profile

    phone, mac, pi = get_profile("phone-8gb"), get_profile("apple-m4-16gb"), get_profile("rpi5-8gb")
    lcpp, litert = get_engine("llamacpp"), get_engine("litert-lm", backend="cpu")
    assert phone.cpu_flops("int8") == 1568e9 and phone.flops("int8") == 34e12
    assert lcpp.peak_flops_on("q4_0", phone) == 1568e9  # int8 dot products on the Kryo cores
    assert lcpp.peak_flops_on("bf16", phone) == 784e9  # a float GGUF: the cores' fp16 rate
    assert litert.peak_flops_on("litertlm", phone) == 1568e9 and litert.peak_flops_on("litertlm", pi) == 614.4e9
    assert get_engine("litert-lm", backend="gpu").peak_flops_on("litertlm", phone) == 5.6e12  # the Adreno's fp16
    w = Workload(get_variant("e2b"), 4096, 1, "litertlm", "fp32")
    assert litert.compatibility(w, phone, 1) is None
    assert "no cpu_peak_flops" in litert.compatibility(w, mac, 1)
    assert mac.cpu_flops("fp32") is None and pi.cpu_flops("fp32") == pi.flops("fp32")
