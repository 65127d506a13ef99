"""g4sim's GGUF types and bytes equal llama.cpp's own quantizer, tensor by tensor.

The oracle (DESIGN.md, "GGUF file bytes, per-tensor types"): llama.cpp's ``llama_model_quantize`` in
dry-run mode on header-only, full-depth F16 GGUF files of the four variants, recorded by
``scripts/llamacpp_quantize_check.py`` in ``tests/data/llamacpp_quantize/`` (provenance.json says
which llama.cpp).  These tests read the committed data and need no llama.cpp; the ``llamacpp``
marked test reruns the quantizer for one case (``pytest -m llamacpp``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import tempfile
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import pytest

from g4sim.analytic import QUANT_FORMATS, get_quant, weight_bytes_by_component
from g4sim.analytic.tensors import gguf_name, quant_context, text_tensors
from g4sim.spec import get_variant

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "llamacpp_quantize"
VARIANTS = ("e2b", "e4b", "26b-a4b", "31b")
GGUF_FORMATS = sorted(name for name, f in QUANT_FORMATS.items() if f.family == "gguf")


@lru_cache(maxsize=None)
def llama_cpp_tensors(variant: str) -> dict[str, dict[str, tuple[str, int]]]:
    """format -> tensor name -> (llama.cpp type, bytes)."""
    out: dict[str, dict[str, tuple[str, int]]] = defaultdict(dict)
    with (DATA / f"{variant}.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            assert r["variant"] == variant
            assert r["tensor"] not in out[r["format"]], f"duplicate row {r}"
            out[r["format"]][r["tensor"]] = (r["type"], int(r["bytes"]))
    return dict(out)


@lru_cache(maxsize=None)
def llama_cpp_totals() -> dict[tuple[str, str], int]:
    with (DATA / "totals.csv").open(newline="") as f:
        return {(r["variant"], r["format"]): int(r["bytes"]) for r in csv.DictReader(f)}


def g4sim_tensors(variant: str, fmt: str) -> dict[str, tuple[set[str], int]]:
    """tensor name -> (g4sim's GGML types, bytes); the experts' gate and up share one fused name."""
    spec = get_variant(variant)
    q, ctx = get_quant(fmt), quant_context(spec.text)
    out: dict[str, tuple[set[str], int]] = {}
    for t in text_tensors(spec.text):
        name = gguf_name(t)
        types, b = out.get(name, (set(), 0))
        out[name] = (types | {q.gguf_type(t, ctx)}, b + q.tensor_bytes(t, ctx))
    return out


def test_the_data_covers_every_variant_and_gguf_format():
    assert {v for v, _ in llama_cpp_totals()} == set(VARIANTS)
    assert {f for _, f in llama_cpp_totals()} == set(GGUF_FORMATS)
    for v in VARIANTS:
        assert set(llama_cpp_tensors(v)) == set(GGUF_FORMATS)
    prov = json.loads((DATA / "provenance.json").read_text())
    assert prov["llama_cpp_python"] and prov["llama_cpp_commit"] and prov["date_utc"] and prov["command"]


@pytest.mark.parametrize("fmt", GGUF_FORMATS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tensor_has_llama_cpps_type_and_bytes(variant, fmt):
    theirs = llama_cpp_tensors(variant)[fmt]
    ours = g4sim_tensors(variant, fmt)
    assert "" not in ours, "a text tensor without a GGUF name"
    assert sorted(ours) == sorted(theirs), "not the tensor table llama.cpp's converter writes"
    wrong = {name: (sorted(types), b, theirs[name]) for name, (types, b) in ours.items()
             if types != {theirs[name][0]} or b != theirs[name][1]}
    assert not wrong, f"{len(wrong)} tensors differ (g4sim types, bytes; llama.cpp): {dict(list(wrong.items())[:8])}"


@pytest.mark.parametrize("fmt", GGUF_FORMATS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_total_bytes_equal_llama_cpps_exactly(variant, fmt):
    total = llama_cpp_totals()[(variant, fmt)]
    assert sum(b for _, b in llama_cpp_tensors(variant)[fmt].values()) == total  # the data agree with themselves
    assert sum(weight_bytes_by_component(get_variant(variant), fmt).values()) == total


@pytest.mark.llamacpp
def test_live_llama_cpp_quantizer_agrees_for_one_case():
    """Rerun llama.cpp's dry-run quantizer on a header-only E2B file (Q4_K_S) and compare with g4sim."""
    pytest.importorskip("llama_cpp", reason="no llama-cpp-python (scripts/llamacpp_quantize_check.py --install)")
    script = ROOT / "scripts" / "llamacpp_quantize_check.py"
    spec = importlib.util.spec_from_file_location("llamacpp_quantize_check", script)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    variant, fmt = "e2b", "q4_k_s"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{variant}.gguf"
        check.write_gguf(get_variant(variant).text, path, sparse=True)
        log = check.run_child({"mode": "quantize", "path": str(path), "out": str(Path(d) / "unused.gguf"),
                               "ftype": check.FTYPES[fmt]})
    assert "QUANTIZE_RC=0" in log, log[-3000:]
    rows, _, _, _ = check.parse_dry_run(log, check.GGML())
    theirs = {r["tensor"]: (r["type"], r["bytes"]) for r in rows}
    ours = g4sim_tensors(variant, fmt)
    assert {n: ({t}, b) for n, (t, b) in theirs.items()} == ours
    assert sum(b for _, b in theirs.values()) == sum(weight_bytes_by_component(get_variant(variant), fmt).values())
