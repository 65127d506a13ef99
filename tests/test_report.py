"""g4sim report: one self-contained HTML file, written atomically."""

from __future__ import annotations

import pytest

from g4sim.cli import main


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr()


def test_model_report_is_self_contained(tmp_path, capsys):
    out = tmp_path / "r.html"
    code, _ = run(["report", "--model", "26b-a4b", "--gpu", "rtx4090,rtx5090,h100-sxm", "--out", str(out)], capsys)
    assert code == 0
    text = out.read_text()
    assert "<script src=\"http" not in text and "plotly" in text.lower()  # plotly.js is inline
    assert text.count("class=\"plotly-graph-div\"") >= 4
    assert "Assumptions" in text and "Fit matrix" in text and "roofline" in text


def test_scenario_report(tmp_path, capsys):
    out = tmp_path / "s.html"
    code, _ = run(["report", "--scenario", "codebase-256k", "--out", str(out)], capsys)
    assert code == 0 and "codebase-256k" in out.read_text()


def test_failed_report_leaves_no_file(tmp_path, capsys, monkeypatch):
    import g4sim.outputs.report as report

    def boom(r):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(report, "throughput_vs_batch", boom)
    out = tmp_path / "r.html"
    with pytest.raises(RuntimeError):
        main(["report", "--model", "e2b", "--gpu", "rtx4090", "--out", str(out)])
    assert not out.exists() and not list(tmp_path.iterdir())


def test_report_bad_scenario(capsys):
    code, out = run(["report", "--scenario", "codebase-265k"], capsys)
    assert code == 2 and "did you mean 'codebase-256k'" in out.err


def test_one_colour_per_series_and_engine_and_format_in_every_title():
    from g4sim.hardware import get_profile
    from g4sim.outputs.report import ReportRequest, figures
    from g4sim.spec import get_variant

    r = ReportRequest("t", (get_variant("26b-a4b"),), tuple(get_profile(d) for d in ("rtx4090", "rtx5090", "h100-sxm")))
    for fig in figures(r):
        colors: dict[str, set] = {}
        for trace in fig.data:
            if trace.type in ("scatter", "bar"):
                color = (trace.line.color if trace.type == "scatter" else trace.marker.color)
                colors.setdefault(trace.legendgroup, set()).add(color)
        assert all(len(c) == 1 for c in colors.values()), colors
        shown = [t.legendgroup for t in fig.data if t.showlegend is not False and t.type != "heatmap"]
        assert len(set(shown)) == len({g for g in colors}) or not colors  # every group appears in the legend
        text = fig.layout.title.text + " ".join(a.text for a in fig.layout.annotations) + " ".join(
            t.name or "" for t in fig.data)
        assert any(e in text for e in ("llamacpp", "vllm", "auto")), fig.layout.title.text
        assert any(q in text for q in r.quants) or "Fit matrix" in fig.layout.title.text
