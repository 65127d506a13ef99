"""Regenerate the GGUFs and run the real llama.cpp (marker `llamacpp`; `pytest -m llamacpp`)."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.llamacpp
ROOT = Path(__file__).resolve().parent.parent


def test_real_llama_cpp_agrees_with_the_rule():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install llama-cpp-python)")
    spec = importlib.util.spec_from_file_location("llamacpp_check", ROOT / "scripts" / "llamacpp_check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    with tempfile.TemporaryDirectory() as d:
        for name, n_ctx, ub, fa, swa_full, cache in check.CASES:
            path = Path(d) / f"{name}.gguf"
            if not path.exists():
                check.write_gguf(check.SPECS[name], path)
            logged = check.run_case(path, n_ctx, ub, fa, swa_full, cache)
            predicted = check.predicted(check.SPECS[name], n_ctx, ub, fa, swa_full, cache)
            for lg, pr in zip(logged, predicted):
                assert int(lg["cells"]) == pr["cells"] and int(lg["layers"]) == pr["layers"]
                assert lg["k_mib"] == f"{pr['k_bytes'] / 2**20:.2f}" and lg["v_mib"] == f"{pr['v_bytes'] / 2**20:.2f}"
