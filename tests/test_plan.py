"""Plans a user can act on: fit searches, three-way verdicts with a margin, auto engine and format.

Each case of issue "One evaluation" that a new user hit is here, asserting the corrected behaviour.
"""

from __future__ import annotations

import json
import math

import pytest

from g4sim.analytic import get_quant
from g4sim.cli import main
from g4sim.engines import Workload, get_engine
from g4sim.evaluation import Margin, Request, Verdict, fit, parse_margin
from g4sim.hardware import get_profile
from g4sim.plan import make_plan
from g4sim.plan.search import largest_fitting, max_batch, max_context
from g4sim.spec import get_variant


def req(model="26b-a4b", gpu="rtx4090", engine="llamacpp", gpus=1, margin=Margin(), **kw) -> Request:
    w = Workload(get_variant(model), **{"ctx": 32768, **kw})
    return Request(w, get_profile(gpu), get_engine(engine), gpus, margin)


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_largest_fitting_binary_search():
    assert largest_fitting(lambda n: n <= 37, 1, 100) == 37
    assert largest_fitting(lambda n: True, 1, 100) == 100
    assert largest_fitting(lambda n: False, 1, 100) == 0


@pytest.mark.parametrize("model,gpu,quant,engine", [("26b-a4b", "rtx4090", "q4_k_m", "llamacpp"),
                                                    ("31b", "h100-sxm", "bf16", "vllm"),
                                                    ("e2b", "rpi5-8gb", "q4_0", "llamacpp"),
                                                    ("e4b", "l4", "fp8", "vllm")])
def test_max_context_fits_with_the_margin_and_one_more_token_does_not(model, gpu, quant, engine):
    r = req(model, gpu, engine, quant=quant)
    n = max_context(r)
    assert fit(r.with_workload(ctx=n)).safe
    if n < r.spec.max_context:
        assert not fit(r.with_workload(ctx=n + 1)).safe


@pytest.mark.parametrize("model,gpu,ctx", [("e4b", "h100-sxm", 8192), ("26b-a4b", "h200", 131072)])
def test_max_batch_fits_and_one_more_does_not(model, gpu, ctx):
    r = req(model, gpu, "vllm", ctx=ctx)
    n = max_batch(r)
    assert n >= 1 and fit(r.with_workload(batch=n)).safe and not fit(r.with_workload(batch=n + 1)).safe


def test_three_way_verdict_at_the_margin_boundary():
    r = req("26b-a4b", "rtx4090", "llamacpp", quant="q4_k_m", ctx=262144)
    f = fit(r)
    spare = f.headroom_bytes
    assert f.loads
    at = fit(Request(r.workload, r.device, r.engine, margin=Margin(0.0, spare)))
    above = fit(Request(r.workload, r.device, r.engine, margin=Margin(0.0, spare + 1)))
    assert at.verdict is Verdict.FITS and above.verdict is Verdict.TIGHT
    over = fit(r.with_workload(quant="q8_0"))
    assert over.verdict is Verdict.DOES_NOT_FIT and over.headroom_bytes < 0


def test_budget_is_the_profile_reserve_then_the_engine_rule():
    dev = get_profile("h100-sxm")
    r = req("31b", "h100-sxm", "vllm")
    # vLLM asks ceil(total x utilisation) of what cudaMemGetInfo reports: the card less its driver reserve
    assert r.budget_bytes() == math.ceil(dev.usable_bytes(True) * 0.9)
    desk = req("31b", "rtx4090", "llamacpp", quant="q4_k_m")
    assert desk.budget_bytes() == get_profile("rtx4090").usable_bytes(True)
    headless = Request(desk.workload, desk.device, desk.engine, display_attached=False)
    assert headless.budget_bytes() - desk.budget_bytes() == get_profile("rtx4090").reserve.display_bytes


@pytest.mark.parametrize("text,expected", [("5%", Margin(0.05)), ("0.1", Margin(0.1)),
                                           ("1.5GiB", Margin(0.0, 3 * 2**29)), ("512MiB", Margin(0.0, 2**29)),
                                           ("2GB", Margin(0.0, 2 * 10**9))])
def test_margin_forms(text, expected):
    assert parse_margin(text) == expected


def test_unified_memory_counts_host_terms_against_the_same_ram():
    r = req("e2b", "rpi5-8gb", "llamacpp", quant="q4_0", ctx=8192)
    f = fit(r)
    assert f.memory.total(None) == f.needed_bytes > f.memory.total()  # the PLE table lives in the same RAM


# ---- the cases a new user hit (issue "One evaluation") -------------------------------------

def test_transformers_cannot_load_a_gguf_and_says_what_does(capsys):
    code, _, err = run(["plan", "-m", "31b", "--ctx", "32k", "--gpu", "rtx4090", "--quant", "q4_k_m",
                        "--engine", "transformers"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "transformers does not load q4_k_m" in err and "--engine llamacpp" in err


def test_auto_picks_llamacpp_for_a_gguf_and_says_why(capsys):
    code, out, _ = run(["plan", "-m", "31b", "--ctx", "32k", "--gpu", "rtx4090", "--quant", "q4_k_m", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["request"]["engine"] == "llamacpp" and "GGUF" in data["request"]["engine_reason"]
    assert data["launch_command"].startswith("llama-server -m gemma-4-31B-it-Q4_K_M.gguf")


def test_vllm_does_not_run_on_apple_silicon(capsys):
    code, _, err = run(["plan", "-m", "e4b", "--gpu", "apple-m4-pro-48gb", "--engine", "vllm", "--quant", "bf16"], capsys)
    assert code == 2 and "vllm does not run on apple-m4-pro-48gb" in err and "--engine llamacpp" in err


@pytest.mark.parametrize("device", ["phone-8gb", "rpi5-8gb", "apple-m4-pro-48gb", "jetson-orin-nano-8gb"])
def test_no_multi_device_layouts_on_phones_boards_or_macs(device):
    plan = make_plan(req("31b", device, "llamacpp", quant="q4_k_m", ctx=131072))
    assert plan.layouts == () or all(l.evaluation.request.gpus == 1 for l in plan.layouts)
    with pytest.raises(Exception, match="not a GPU"):
        fit(req("31b", device, "llamacpp", gpus=2, quant="q4_k_m"))


def test_flagship_without_flags_gives_a_plan_with_real_headroom(capsys):
    code, out, _ = run(["plan", "--model", "26b-a4b", "--ctx", "256k", "--gpu", "rtx4090", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["verdict"] == "fits"
    assert data["headroom_bytes"] >= data["capacity"]["margin_bytes"] > 0
    assert data["request"]["engine"] == "llamacpp" and get_quant(data["request"]["quant"]).family == "gguf"
    assert data["choice"].startswith(data["request"]["quant"]) and data["request"]["engine_reason"]
    assert data["throughput"]["decode_tokens_per_s"] > 0 and data["launch_command"].startswith("llama-server")
    # the format it picked is the smallest-loss one that keeps the margin: the next better one does not
    code, out, _ = run(["plan", "--model", "26b-a4b", "--ctx", "256k", "--gpu", "rtx4090", "--quant", "q5_k_m", "--json"],
                       capsys)
    assert json.loads(out)["verdict"] != "fits"


def test_tight_layouts_never_rank_first():
    plan = make_plan(req("26b-a4b", "rtx4090", "vllm", quant="bf16", ctx=262144))
    verdicts = [l.evaluation.verdict for l in plan.layouts]
    assert verdicts and verdicts[0] is Verdict.FITS
    assert verdicts == sorted(verdicts, key=lambda v: v is not Verdict.FITS)
    for a, b in zip(plan.layouts, plan.layouts[1:]):
        if a.evaluation.verdict is b.evaluation.verdict:
            assert a.quality_loss <= b.quality_loss


def test_vllm_quantized_formats_print_a_command_that_loads_them(capsys):
    code, out, _ = run(["plan", "-m", "26b-a4b", "--ctx", "32k", "--gpu", "h100-sxm", "--engine", "vllm",
                        "--quant", "mxfp4", "--json"], capsys)
    cmd = json.loads(out)["launch_command"]
    assert code == 0 and "gemma-4-26B-A4B-it-MXFP4" in cmd and "google/gemma-4-26B-A4B-it " not in cmd
    code, out, _ = run(["plan", "-m", "31b", "--ctx", "32k", "--gpu", "h100-sxm", "--quant", "fp8", "--json"], capsys)
    assert "--quantization fp8" in json.loads(out)["launch_command"]


def test_transformers_on_two_gpus_prints_a_multi_gpu_command(capsys):
    code, out, _ = run(["plan", "-m", "31b", "--ctx", "32k", "--gpu", "h100-sxm:2", "--engine", "transformers",
                        "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["request"]["gpus"] == 2 and "device_map='auto'" in data["launch_command"]


def test_engine_settings_are_plan_options(capsys):
    base = ["plan", "-m", "26b-a4b", "--ctx", "32k", "--gpu", "rtx4090", "--quant", "q4_k_m", "--json"]
    _, out, _ = run(base, capsys)
    _, out2, _ = run(base + ["--ubatch-size", "2048"], capsys)
    a, b = json.loads(out), json.loads(out2)
    assert b["request"]["engine_settings"]["n_ubatch"] == 2048 and "-ub 2048" in b["launch_command"]
    assert b["memory"]["by_category_bytes"]["activations"] > a["memory"]["by_category_bytes"]["activations"]
    code, _, err = run(base + ["--engine", "llamacpp", "--gpu-memory-utilization", "0.8"], capsys)
    assert code == 2 and "llamacpp has no setting 'gpu_memory_utilization'" in err
    _, out, _ = run(["plan", "-m", "31b", "--ctx", "32k", "--gpu", "h100-sxm", "--gpu-memory-utilization", "0.5",
                     "--json"], capsys)
    data = json.loads(out)  # a vLLM-only setting makes auto pick vLLM
    assert data["request"]["engine"] == "vllm" and "--gpu-memory-utilization 0.5" in data["launch_command"]
    assert data["capacity"]["budget_bytes"] == math.ceil(get_profile("h100-sxm").usable_bytes(True) * 0.5)


def test_gpu_count_conflict_is_refused(capsys):
    code, _, err = run(["plan", "-m", "31b", "--gpu", "h100-sxm:2", "--gpus", "4"], capsys)
    assert code == 2 and "h100-sxm:2" in err and "--gpus" in err


def test_ollama_plan_shows_what_ollama_ps_will_print(capsys):
    from g4sim.engines import get_engine

    code, out, _ = run(["plan", "-m", "26b-a4b", "--ctx", "32k", "--gpu", "rtx4090", "--engine", "ollama",
                        "--quant", "q4_k_m", "--json"], capsys)
    data = json.loads(out)
    w = Workload(get_variant("26b-a4b"), 32768, 1, "q4_k_m", "bf16")
    ps = get_engine("ollama").bind(w).ps_line(w, get_profile("rtx4090"))
    assert code == 0 and data["engine_view"][0] == "ollama ps (predicted):"
    assert f"SIZE  {ps.size}" in data["engine_view"][1] and ps.processor in data["engine_view"][1]


def test_mlx_wired_limit_is_a_plan_option(capsys):
    base = ["plan", "-m", "31b", "--ctx", "32k", "--gpu", "apple-m4-pro-48gb", "--quant", "mlx-4bit-g64", "--json"]
    _, out, _ = run(base, capsys)
    _, raised, _ = run(base + ["--wired-limit-mb", "40000"], capsys)
    a, b = json.loads(out), json.loads(raised)
    assert a["request"]["engine"] == b["request"]["engine"] == "mlx"
    assert b["capacity"]["budget_bytes"] == 40000 * 2**20 > a["capacity"]["budget_bytes"]
    assert "sysctl iogpu.wired_limit_mb=40000" in b["launch_command"]
