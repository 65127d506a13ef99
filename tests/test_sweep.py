"""g4sim sweep: every row is the plan's own evaluation, so sweep and plan --json agree figure for figure."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from g4sim.cli import main
from g4sim.engines import get_engine
from g4sim.outputs.sweep import SweepAxes, sweep, write_table
from g4sim.spec import VARIANTS

# A sample matrix: every engine (auto too), GGUF / float / fp8 / fp4 formats, short and long contexts,
# one and several GPUs, consumer and datacenter devices.
MATRIX = [
    ("auto", ("26b-a4b", "31b"), ("rtx4090", "h100-sxm"), ("bf16", "q4_k_m", "fp8"), (8192, 200704), 1),
    ("vllm", ("31b",), ("h100-sxm",), ("bf16",), (196608,), 1),  # the case where sweep and plan disagreed
    ("vllm", ("31b",), ("h100-sxm",), ("bf16", "nvfp4", "mxfp4"), (32768, 196608), 2),
    ("llamacpp", ("e2b", "e4b"), ("rpi5-8gb", "rtx3090"), ("q4_0", "q8_0"), (4096, 131072), 1),
    ("transformers", ("e4b",), ("l4", "h100-sxm"), ("bf16", "fp16"), (16384,), 1),
    ("g4sim", ("e2b",), ("ci-cpu-2core",), ("bf16", "int8"), (2048,), 1),
]


def plan_json(capsys, row) -> dict:
    args = ["plan", "-m", row.model, "--gpu", f"{row.device}:{row.gpus}", "--quant", row.quant, "--ctx", str(row.ctx),
            "--kv-dtype", row.kv_dtype, "--engine", row.engine, "--json"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("engine,models,devices,quants,contexts,gpus", MATRIX)
def test_every_sweep_row_equals_plan_json(engine, models, devices, quants, contexts, gpus, capsys):
    skipped: list[str] = []
    frame = sweep(SweepAxes(models=models, devices=devices, quants=quants, contexts=contexts, gpus=gpus,
                            engine=None if engine == "auto" else get_engine(engine)), skipped)
    asked = sum(len(devices) * len(quants) for m in models for c in contexts if c <= VARIANTS[m].max_context)
    assert len(frame) >= 1 and len(frame) + len(skipped) == asked  # every combination is a row or counted
    for row in frame.itertuples():
        plan = plan_json(capsys, row)
        assert plan["request"]["engine"] == row.engine
        assert plan["memory"]["by_category_bytes"] == {c: getattr(row, f"{c}_bytes")
                                                       for c in ("weights", "kv_cache", "activations", "overhead")}
        assert plan["memory"]["needed_bytes"] == row.needed_bytes
        assert plan["capacity"]["budget_bytes"] == row.budget_bytes and plan["capacity"]["margin_bytes"] == row.margin_bytes
        assert (plan["verdict"], plan["headroom_bytes"]) == (row.verdict, row.headroom_bytes)
        assert plan["throughput"]["decode_tokens_per_s"] == row.decode_tokens_per_s
        assert plan["throughput"]["speed_class"] == row.speed_class
        assert (plan["throughput"]["bands"].get("decode") or {}).get("p90") == (
            None if row.decode_heldout_error_p90 != row.decode_heldout_error_p90 else row.decode_heldout_error_p90)
        assert plan["throughput"]["prefill_tokens_per_s"] == row.prefill_tokens_per_s
        assert plan["launch_command"] == (row.launch_command if isinstance(row.launch_command, str) else None)


def test_sweep_leaves_out_what_cannot_run_and_says_why():
    skipped: list[str] = []
    frame = sweep(SweepAxes(models=("e2b",), devices=("rpi5-8gb",), quants=("fp8", "q4_0"), contexts=(4096,)), skipped)
    assert list(frame.quant) == ["q4_0"] and skipped == ["e2b fp8 on rpi5-8gb"]
    assert (frame.decode_tokens_per_s <= frame.decode_tokens_per_s_roofline).all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_write_table_formats(tmp_path, suffix):
    frame = sweep(SweepAxes(models=("e4b",), devices=("l4",), quants=("bf16",), contexts=(4096,)))
    path = write_table(frame, tmp_path / f"out{suffix}")
    back = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".json": pd.read_json}[suffix](path)
    assert int(back["needed_bytes"].iloc[0]) == int(frame["needed_bytes"].iloc[0])
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]  # no temporary left behind
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_table_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="valid: .csv, .json, .parquet"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.xlsx")
    assert not list(tmp_path.iterdir())
