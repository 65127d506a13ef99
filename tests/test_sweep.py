"""g4sim sweep: the cross product as a tidy table, consistent with the plan, written atomically."""

from __future__ import annotations

import pandas as pd
import pytest

from g4sim.analytic import estimate_memory
from g4sim.spec import get_variant
from g4sim.sweep import SweepAxes, sweep, write_table


def test_sweep_rows_and_consistency():
    frame = sweep(SweepAxes(models=("26b-a4b", "e2b"), devices=("rtx4090", "rpi5-8gb"), quants=("bf16", "q4_k_m"),
                            contexts=(8192, 262144)))
    # e2b's max context is 128k: its 256k rows are skipped
    assert len(frame) == 2 * 2 * 2 + 1 * 2 * 2
    row = frame[(frame.model == "26b-a4b") & (frame.device == "rtx4090") & (frame.quant == "q4_k_m") & (frame.ctx == 8192)]
    m = estimate_memory(get_variant("26b-a4b"), ctx=8192, quant="q4_k_m", prefill_chunk=4096)
    assert int(row.total_bytes.iloc[0]) == m.total()
    assert int(row.kv_cache_bytes.iloc[0]) == m.by_category()["kv_cache"]
    assert bool(row.fits.iloc[0]) == (m.total() <= 24 * 2**30)
    assert (frame.decode_tokens_per_s <= frame.decode_tokens_per_s_roofline).all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_write_table_formats(tmp_path, suffix):
    frame = sweep(SweepAxes(models=("e4b",), devices=("l4",), quants=("bf16",), contexts=(4096,)))
    path = write_table(frame, tmp_path / f"out{suffix}")
    back = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".json": pd.read_json}[suffix](path)
    assert int(back["total_bytes"].iloc[0]) == int(frame["total_bytes"].iloc[0])
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]  # no temporary left behind


def test_write_table_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="valid: .csv, .json, .parquet"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "out.xlsx")
    assert not list(tmp_path.iterdir())
