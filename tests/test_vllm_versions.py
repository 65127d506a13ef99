"""vLLM's allocator per release: g4sim's KV figures equal what vLLM's own code returned and logged.

The fixtures (``tests/data/vllm/kv_<version>.json``, written by ``scripts/vllm_kv_check.py``) hold,
for 4 variants x KV dtype bf16 / fp8 x TP 1 / 2, the layer specs g4sim builds (inputs) and the
groups, page sizes, blocks per request, ``num_blocks``, bytes per block, max concurrency and the
"GPU KV cache size" / "Maximum concurrency" log lines that vLLM's KV-cache utilities produced for
them from a fixed available-memory figure (outputs).  Every comparison is exact: a figure that moves
by one unit fails.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from g4sim.analytic.components import Component
from g4sim.engines import EngineError, Workload, get_engine
from g4sim.engines.vllm import DEFAULT_VLLM_VERSION, RELEASES, VllmEngine, VllmLog, get_release, kv_layer_specs
from g4sim.hardware import get_profile
from g4sim.spec import get_variant

DATA = Path(__file__).parent / "data" / "vllm"
FIXTURES = {v: json.loads((DATA / f"kv_{v}.json").read_text()) for v in RELEASES}
ROWS = [(v, r) for v, doc in FIXTURES.items() for r in doc["rows"]]


def row_id(case) -> str:
    v, r = case
    return f"{v}-{r['model']}-{r['kv_dtype']}-tp{r['tp']}"


def g4sim_figures(version: str, row: dict) -> dict:
    """g4sim's figures for a fixture row, in the fixture's vLLM vocabulary."""
    eng = VllmEngine(vllm_version=version, max_num_batched_tokens=row["max_num_batched_tokens"],
                     block_size=row["block_size"])
    t = get_variant(row["model"]).text
    plan = eng.kv_plan(t, row["kv_dtype"], row["tp"])
    blocks = plan.num_blocks(row["available_bytes"])
    L, mnbt = row["max_model_len"], row["max_num_batched_tokens"]
    log = VllmLog(plan.release, 0, 0, row["available_bytes"], plan, blocks, L, mnbt)
    return {
        "groups": [{"layers": [s.layer for s in g.layers], "block_size": g.spec.block_size,
                    "page_size_bytes": g.spec.page_bytes,
                    "max_memory_usage_bytes": g.spec.max_memory_usage_bytes(L, plan.in_flight_tokens(mnbt)),
                    "blocks_per_request": g.blocks_per_request(L, plan.in_flight_tokens(mnbt))} for g in plan.groups],
        "num_blocks": blocks,
        "bytes_per_block": plan.bytes_per_block,
        "max_concurrency": plan.max_concurrency(blocks, L, mnbt),
        "in_flight_tokens": plan.in_flight_tokens(mnbt),
        "log": list(log.lines()[1:]),  # after "Available KV cache memory", which the fixture's input fixes
    }


def vllm_figures(row: dict) -> dict:
    v = row["vllm"]
    return {"groups": [{k: g[k] for k in ("layers", "block_size", "page_size_bytes", "max_memory_usage_bytes",
                                          "blocks_per_request")} for g in v["groups"]],
            **{k: v[k] for k in ("num_blocks", "bytes_per_block", "max_concurrency", "in_flight_tokens", "log")}}


def test_fixtures_cover_every_release_variant_dtype_and_tp():
    assert set(FIXTURES) == set(RELEASES) and DEFAULT_VLLM_VERSION in FIXTURES and len(RELEASES) >= 2
    for version, doc in FIXTURES.items():
        assert doc["vllm_version"] == version and doc["wheel"].startswith(f"vllm-{version}-")
        assert "vllm.v1.kv_cache_interface" in doc["imported"]["modules"]  # vLLM's own code ran
        grid = {(r["model"], r["kv_dtype"], r["tp"]) for r in doc["rows"]}
        assert grid == {(m, kv, tp) for m in ("e2b", "e4b", "26b-a4b", "31b") for kv in ("bf16", "fp8") for tp in (1, 2)}
        assert all("error" not in r["vllm"] for r in doc["rows"])


@pytest.mark.parametrize("case", ROWS, ids=[row_id(c) for c in ROWS])
def test_layer_specs_are_the_ones_vllm_was_given(case):
    version, row = case
    specs = kv_layer_specs(get_variant(row["model"]).text, row["kv_dtype"], row["tp"], row["block_size"],
                           get_release(version))
    assert [{"layer": s.layer, "sliding_window": s.sliding_window, "block_size": s.block_size,
             "num_kv_heads": s.num_kv_heads, "head_size": s.head_size, "dtype_bytes": s.dtype_bytes}
            for s in specs] == row["layers"]
    sliding = [s.block_size for s in specs if s.sliding_window is not None]
    assert sliding[0] == row["vllm"]["sliding_block_size"]  # 0.33.0: vLLM's _largest_kernel_block_within picked it


@pytest.mark.parametrize("case", ROWS, ids=[row_id(c) for c in ROWS])
def test_g4sim_figures_equal_vllms(case):
    version, row = case
    assert g4sim_figures(version, row) == vllm_figures(row)


def test_a_one_unit_change_of_any_figure_fails():
    version, row = ROWS[0]
    mine, theirs = g4sim_figures(version, row), vllm_figures(row)
    assert mine == theirs
    for key in ("num_blocks", "bytes_per_block", "in_flight_tokens"):
        assert {**mine, key: mine[key] + 1} != theirs
    plan_blocks = mine["num_blocks"]
    conc = mine["max_concurrency"]
    assert {**mine, "max_concurrency": conc * (plan_blocks + 1) / plan_blocks} != theirs  # one block more
    for key in ("block_size", "page_size_bytes", "blocks_per_request", "max_memory_usage_bytes"):
        groups = [dict(g) for g in mine["groups"]]
        groups[-1][key] += 1
        assert {**mine, "groups": groups} != theirs
    tokens = int(theirs["log"][0].split("GPU KV cache size: ")[1].split(" tokens")[0].replace(",", ""))
    assert {**mine, "log": [mine["log"][0].replace(f"{tokens:,}", f"{tokens + 1:,}"), *mine["log"][1:]]} != theirs


# ---- the rules that differ between releases ----------------------------------------------------------

def test_the_default_is_the_newest_release_and_unknown_releases_name_the_known_ones():
    assert VllmEngine().vllm_version == DEFAULT_VLLM_VERSION == "0.33.0"
    assert get_engine("vllm", vllm_version="v0.19.1").vllm_version == "0.19.1"
    with pytest.raises(EngineError, match="0.33.0, 0.20.0, 0.19.1"):
        get_engine("vllm", vllm_version="0.25.0")


def test_cuda_graph_memory_is_taken_from_the_budget_from_0_20_0_only():
    w = Workload(get_variant("26b-a4b"), 32768)
    for version, expected in (("0.19.1", 0), ("0.20.0", 512 * 2**20), ("0.33.0", 512 * 2**20)):
        eng = get_engine("vllm", vllm_version=version)
        assert eng.memory(w).get(Component.CUDA_GRAPHS) == expected
        assert get_engine("vllm", vllm_version=version, enforce_eager=True).memory(w).get(Component.CUDA_GRAPHS) == 0


def test_sliding_layers_reserve_two_batches_in_flight_from_0_33_0():
    t = get_variant("26b-a4b").text  # window 1024, --max-num-batched-tokens 2048, block 16
    assert get_engine("vllm", vllm_version="0.19.1").kv_cells(t, 0, 262144) == (-(-(1023 + 2048) // 16) + 1) * 16
    assert get_engine("vllm", vllm_version="0.33.0").kv_cells(t, 0, 262144) == (-(-(1023 + 2 * 2048) // 16) + 1) * 16


def test_the_budget_is_ceil_of_utilisation_of_what_cuda_reports():
    eng = get_engine("vllm", gpu_memory_utilization=0.9)
    h100 = get_profile("h100-sxm")
    usable = h100.usable_bytes(False)
    assert usable == h100.memory_bytes - h100.reserve.driver_bytes  # cudaMemGetInfo's total on a headless card
    assert eng.budget_bytes(usable, h100.memory_bytes) == math.ceil(usable * 0.9)


def test_k_eq_v_layers_get_the_v_slot_of_qkv_proj():
    eng = get_engine("vllm")
    for model, v_slots in (("31b", 10 * 4 * 512 * 5376 * 2), ("26b-a4b", 5 * 2 * 512 * 2816 * 2), ("e4b", 0)):
        spec = get_variant(model)  # full layers x KV heads x global_head_dim x hidden x 2 B (e4b: no k_eq_v)
        m = eng.memory(Workload(spec, 8192))
        file_like = sum(x.bytes for x in eng.weight_terms(spec, "bf16", vision=False, audio=False)
                        if x.component is Component.ATTENTION)
        assert m.get(Component.ATTENTION) - file_like == v_slots


def test_the_sampler_and_the_vision_encoder_are_in_the_profile_run():
    spec = get_variant("31b")
    text_only = get_engine("vllm").memory(Workload(spec, 32768, batch=8))
    assert text_only.get(Component.SAMPLER) == 8 * 262144 * (2 + 4 + 4 + 4)
    with_vision = get_engine("vllm").memory(Workload(spec, 32768, batch=8, vision=True))
    assert with_vision.get(Component.COMPUTE_BUFFER) > 0 == text_only.get(Component.COMPUTE_BUFFER)


# ---- what a user reads ------------------------------------------------------------------------------------

def test_plan_json_carries_the_predicted_vllm_log(capsys):
    from g4sim.cli import main

    with pytest.raises(SystemExit):
        main(["plan", "-m", "31b", "--ctx", "32k", "--gpu", "h100-sxm", "--engine", "vllm", "--json"])
    data = json.loads(capsys.readouterr().out)
    view = data["engine_view"]
    assert view[0] == "vLLM 0.33.0 log (predicted):"
    line = next(x for x in view if x.startswith("GPU KV cache size: "))
    assert "Maximum concurrency for 32,768 tokens per request: " in line
    eng = get_engine("vllm")
    w = Workload(get_variant("31b"), 32768)
    log = eng.vllm_log(w, get_profile("h100-sxm"))
    assert line == f"GPU KV cache size: {log.tokens:,} tokens, Maximum concurrency for 32,768 tokens per request: " \
                   f"{log.concurrency:.2f}x"
    # the pool vLLM would size: what is left of ceil(total x 0.9) once everything else is priced
    assert log.available_bytes == data["capacity"]["budget_bytes"] - (data["memory"]["accelerator_total_bytes"]
                                                                      - data["memory"]["by_category_bytes"]["kv_cache"])


def test_older_releases_log_two_lines_with_their_token_formula():
    w = Workload(get_variant("26b-a4b"), 65536)
    log = get_engine("vllm", vllm_version="0.20.0").vllm_log(w, get_profile("h100-sxm"))
    lines = log.lines()
    assert lines[1] == f"GPU KV cache size: {log.num_blocks // len(log.plan.groups) * 16:,} tokens"
    assert lines[2].startswith("Maximum concurrency for 65,536 tokens per request: ")


def test_the_printed_command_keeps_the_release_and_the_tower_switch():
    w = Workload(get_variant("e4b"), 8192)
    eng = get_engine("vllm", vllm_version="0.19.1")
    cmd = eng.launch_command(w, 1, get_profile("h100-sxm"))
    assert cmd.rstrip().endswith("# g4sim: planned for vLLM 0.19.1") and "--vllm-version" not in cmd
    assert '"video": 0' in cmd  # the vision tower loads unless image and video are both limited to 0
    parsed = VllmEngine.parse_command(cmd)
    assert parsed.engine.vllm_version == "0.19.1" and parsed.vision is False
    plain = VllmEngine.parse_command("vllm serve google/gemma-4-E4B-it --limit-mm-per-prompt '{\"image\": 0}'")
    assert plain.engine.vllm_version == DEFAULT_VLLM_VERSION and plain.vision is True  # video still loads the tower
