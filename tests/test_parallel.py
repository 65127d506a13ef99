"""Multi-GPU per-GPU memory, tensor-parallel validity, and ranked layouts when one device is not enough."""

from __future__ import annotations

import json

import pytest

from g4sim.cli import main
from g4sim.hardware import get_profile
from g4sim.parallel import per_gpu_memory, ranked_layouts, tp_valid
from g4sim.plan import PlanRequest
from g4sim.spec import get_variant


def req(model="26b-a4b", gpu="h100-sxm", **kw):
    return PlanRequest(spec=get_variant(model), device=get_profile(gpu), **{"ctx": 32768, **kw})


def test_tensor_parallel_validity():
    r = req()  # 16 query heads; 8 KV heads on sliding layers, 2 on full layers
    assert tp_valid(r, 2) and tp_valid(r, 4) and tp_valid(r, 8)
    assert not tp_valid(r, 3)


def test_per_gpu_memory_splits_weights_and_replicates_kv_heads():
    r = req()
    one, four = r.memory(), per_gpu_memory(r, 4)
    assert four.get("weights: experts") == -(-one.get("weights: experts") // 4)
    assert four.get("weights: norms") == one.get("weights: norms")  # replicated
    assert four.get("kv cache: sliding layers") == one.get("kv cache: sliding layers") // 4  # 8 heads / 4
    assert four.get("kv cache: full layers") == one.get("kv cache: full layers") // 2  # 2 heads: one each, replicated
    assert four.get("activations: hidden states") == one.get("activations: hidden states")


def test_31b_at_256k_on_a_4090_gets_ranked_layouts_that_fit():
    layouts = ranked_layouts(req("31b", "rtx4090", ctx=262144))
    assert len(layouts) >= 3 and all(l.fits for l in layouts)
    assert [l.gpus for l in layouts] == sorted(l.gpus for l in layouts)
    assert any(l.gpus > 1 for l in layouts) and any("offload" in l.name for l in layouts)
    assert all(l.command for l in layouts)


def test_plan_on_several_gpus(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plan", "-m", "31b", "--ctx", "128k", "--gpu", "h100-sxm:2", "--engine", "vllm", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0 and data["request"]["gpus"] == 2 and data["fits"]
    assert "--tensor-parallel-size 2" in data["launch_command"]
    with pytest.raises(SystemExit) as exc:
        main(["plan", "-m", "31b", "--gpu", "h100-sxm:3"])
    assert exc.value.code == 2 and "valid tensor-parallel sizes: 1, 2, 4" in capsys.readouterr().err
