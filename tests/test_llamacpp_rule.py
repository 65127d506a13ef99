"""g4sim's llama.cpp rule against KV-cache sizes a real llama.cpp logged (tests/data/llamacpp_logged.csv).

The data is made by `python scripts/llamacpp_check.py` (llama-cpp-python built from source); each row
carries its llama-cpp-python version, date and command.  Cells and layers must match exactly; K and V
sizes match llama.cpp's own MiB figure to its two printed decimals.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "llamacpp_logged.csv"
_spec = importlib.util.spec_from_file_location("llamacpp_check", ROOT / "scripts" / "llamacpp_check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

ROWS = list(csv.DictReader(DATA.open()))


def _case(row):
    return (check.SPECS[row["spec"]], int(row["n_ctx"]), int(row["n_ubatch"]), row["flash_attn"] == "True",
            row["swa_full"] == "True", row["cache_type"])


def test_logged_data_covers_the_mechanisms():
    assert {r["spec"] for r in ROWS} == set(check.SPECS)  # KV sharing + PLE, MoE + k_eq_v, dense + k_eq_v
    assert {r["flash_attn"] for r in ROWS} == {"True", "False"} and {r["swa_full"] for r in ROWS} == {"True", "False"}
    assert {r["cache_type"] for r in ROWS} == {"f16", "q8_0"} and len({r["n_ubatch"] for r in ROWS}) >= 3
    assert all(r["llama_cpp_python"] and r["date_utc"] for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['spec']}-{r['n_ctx']}-{r['n_ubatch']}-fa{r['flash_attn']}-"
                                                   f"swafull{r['swa_full']}-{r['cache_type']}-{r['group']}")
def test_rule_reproduces_the_logged_kv_cache(row):
    predicted = check.predicted(*_case(row))
    group = predicted[0] if row["group"] == "full" else predicted[1]
    assert group["cells"] == int(row["logged_cells"])
    assert group["layers"] == int(row["logged_layers"])
    assert f"{group['k_bytes'] / 2**20:.2f}" == f"{float(row['logged_k_mib']):.2f}"
    assert f"{group['v_bytes'] / 2**20:.2f}" == f"{float(row['logged_v_mib']):.2f}"


@pytest.mark.parametrize("spec", sorted(check.SPECS))
def test_weights_equal_the_logged_model_buffer(spec):
    logged = {float(r["logged_model_mib"]) for r in ROWS if r["spec"] == spec}
    assert logged == {round(check.predicted_weights_bytes(check.SPECS[spec]) / 2**20, 2)}


def test_quantized_v_needs_flash_attention():
    from g4sim.engines import estimate_memory
    from g4sim.engines import get_engine
    from g4sim.spec import get_variant

    with pytest.raises(ValueError, match=r"quantized V cache \(q8_0\) requires flash attention"):
        estimate_memory(get_variant("e2b"), ctx=4096, kv_dtype="q8_0", engine=get_engine("llamacpp", flash_attn=False))
