"""g4sim check: passes on the committed baseline, fails on an inflated figure, reports improvements."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from g4sim.outputs import check as check_mod
from g4sim.cli import main


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr()


def test_committed_baseline_passes(capsys):
    code, out = run(["check", "--baseline", str(check_mod.BASELINE)], capsys)
    assert code == 0, out.out
    assert "0 regressions" in out.out


def test_one_byte_per_token_of_kv_fails(monkeypatch, tmp_path, capsys):
    import g4sim.analytic.memory as memory

    original = memory.kv_bytes_per_cell
    monkeypatch.setattr(memory, "kv_bytes_per_cell", lambda t, layer, dt: original(t, layer, dt) + 1)
    import g4sim.engines.base as base
    monkeypatch.setattr(base, "kv_layer_bytes",
                        lambda t, layer, cells, kv_dtype="bf16", batch=1: 0 if t.is_kv_shared(layer) else
                        batch * cells * (original(t, layer, memory.get_kv_dtype(kv_dtype)) + 1))
    from g4sim.evaluation import clear_caches

    clear_caches()  # memory is cached per deployment: the patched rule must be recomputed
    junit = tmp_path / "junit.xml"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out = run(["check", "--baseline", str(check_mod.BASELINE), "--junit", str(junit)], capsys)
    assert code == 1
    assert "regression" in out.out and "::error file=" in out.out
    suite = ET.parse(junit).getroot()
    assert int(suite.get("failures")) >= 1 and suite.find("testcase/failure") is not None
    monkeypatch.undo()
    clear_caches()


def test_analytic_figures_are_exact_both_ways_and_measured_ones_one_sided(tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    code, _ = run(["check", "--baseline", str(baseline), "--update"], capsys)
    assert code == 0
    data = json.loads(baseline.read_text())
    name = check_mod.MATRIX[0]["name"]
    data["configs"][name]["total_bytes"] += 1  # the figure is now one byte smaller than the baseline: a change
    baseline.write_text(json.dumps(data))
    code, out = run(["check", "--baseline", str(baseline)], capsys)
    assert code == 1 and "changed" in out.out
    data["configs"][name]["total_bytes"] -= 1
    measured = next(k for k in data["configs"] if k.startswith("measured:"))
    data["configs"][measured]["measured_prefill_peak_bytes"] *= 1.5  # the run used to peak higher: improvement
    baseline.write_text(json.dumps(data))
    code, out = run(["check", "--baseline", str(baseline)], capsys)
    assert code == 0 and "improvement" in out.out
    data["configs"][measured]["measured_prefill_peak_bytes"] /= 1.5 * 1.06  # now 6 % above: past the 5 % tolerance
    baseline.write_text(json.dumps(data))
    code, out = run(["check", "--baseline", str(baseline)], capsys)
    assert code == 1 and "regression" in out.out


def test_missing_baseline_is_a_one_line_error(tmp_path, capsys):
    code, out = run(["check", "--baseline", str(tmp_path / "none.json")], capsys)
    assert code == 2 and out.err.startswith("error: ") and out.err.count("\n") == 1
