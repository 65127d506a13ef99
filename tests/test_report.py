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


def _band_case(device: str):
    """A llamacpp q4_k_m report on one device, its Evaluation, and its decode-vs-batch trace."""
    from g4sim.evaluation import evaluate
    from g4sim.hardware import get_profile
    from g4sim.outputs.report import ReportRequest, build_html, request, throughput_vs_batch
    from g4sim.spec import get_variant

    r = ReportRequest("t", (get_variant("26b-a4b"),), (get_profile(device),), quants=("q4_k_m",), engine="llamacpp")
    e = evaluate(request(r, r.models[0], "q4_k_m", r.devices[0]))
    trace = next(t for t in throughput_vs_batch(r).data if "predicted" in t.name)
    return e, build_html(r), trace


@pytest.mark.parametrize("device, cls", [("rtx4090", "llamacpp/cuda"), ("desktop-ddr5", "llamacpp/cpu-x86")])
def test_calibrated_speeds_carry_their_held_out_band(device, cls):
    from g4sim.evaluation.speed import speed_classes

    e, text, trace = _band_case(device)
    assert e.speed.calibrated and e.speed.speed_class == cls
    assert e.speed.bands == dict(speed_classes()[cls].bands)  # the class's held-out band, as fitted
    for phase in ("prefill", "decode"):
        b = e.speed.bands[phase]
        assert b["n"] > 0
        band = f"held-out error for {cls}: median {b['median']:.0%}, p90 {b['p90']:.0%}, n={b['n']}"
        assert f"<td class='band'>{band}</td>" in text  # beside its tok/s in the verdict table
    p90 = e.speed.bands["decode"]["p90"]
    assert trace.error_y.type == "percent" and trace.error_y.value == p90 * 100
    assert f"± p90 {p90:.0%} ({cls})" in trace.name and f"p90 {p90:.0%}" in trace.hovertemplate
    assert cls in trace.hovertemplate


def test_uncalibrated_speeds_say_so_and_draw_no_band():
    e, text, trace = _band_case("mi300x")
    assert not e.speed.calibrated and e.speed.speed_class == "llamacpp/rocm"
    assert text.count("<td class='band'>no error band: no fitted speed terms for llamacpp/rocm</td>") == 2
    assert "held-out error for" not in text
    assert trace.error_y.type is None and trace.error_y.value is None
    assert "uncalibrated" in trace.name and "no error band" in trace.hovertemplate
