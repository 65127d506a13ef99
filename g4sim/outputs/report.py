"""Self-contained HTML reports (plotly, JavaScript embedded: opens offline).

The capacity report: a verdict table (each predicted speed beside its error band: the held-out
error of its engine/backend class, or "no error band" where uncalibrated), memory vs context per
weight format (stacked by component, with each device's budget), a fit matrix (model x format x
device, colour = headroom), the largest context and batch per device, and decode throughput vs batch
(only batches that fit; error bars of ± the class's held-out p90 where it has one) beside its
roofline — every number from ``g4sim.evaluation.evaluate`` / ``fit``, the calls ``plan`` makes.
Each series has one colour in every subplot and in the legend (``_colors``), and every chart's
title names the engine and format.  The validation report holds predicted vs measured.  Written
atomically: a failed run leaves no half-written file.  No torch import.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path

from g4sim.analytic.components import CATEGORIES
from g4sim.engines import Engine, EngineError, Workload, get_engine
from g4sim.engines.auto import choose
from g4sim.evaluation import Evaluation, Margin, Request, evaluate, fit
from g4sim.hardware import HardwareProfile
from g4sim.files import write_text
from g4sim.plan.search import max_batch, max_context
from g4sim.spec import ModelSpec
from g4sim.units import format_bytes, format_context

GIB = 2**30
CATEGORY_COLORS = {"weights": "#4C78A8", "kv_cache": "#F58518", "activations": "#54A24B", "overhead": "#B279A2"}
SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                 "#ff7f0e")
CONTEXTS = (1024, 4096, 8192, 16384, 32768, 65536, 131072, 196608, 262144)
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class ReportRequest:
    title: str
    models: tuple[ModelSpec, ...]
    devices: tuple[HardwareProfile, ...]
    quants: tuple[str, ...] = ("bf16", "q8_0", "q4_k_m")
    ctx: int = 32768
    batch: int = 1
    kv_dtype: str = "bf16"
    engine: str | None = None  # None: --engine auto, per format and device
    margin: Margin = Margin()
    description: str = ""
    notes: tuple[str, ...] = field(default=())


def _colors(names) -> dict[str, str]:
    """One colour per series name, the same in every subplot and in the legend."""
    return {n: SERIES_COLORS[i % len(SERIES_COLORS)] for i, n in enumerate(dict.fromkeys(names))}


def request(r: ReportRequest, spec: ModelSpec, quant: str, dev: HardwareProfile, ctx: int | None = None,
            batch: int | None = None) -> Request | str:
    """The evaluation request of one cell, or why it cannot run."""
    w = Workload(spec, min(ctx or r.ctx, spec.max_context), batch or r.batch, quant,
                 quant if quant in ("fp16", "fp32") and r.kv_dtype == "bf16" else r.kv_dtype)
    try:
        engine, why = choose(w, dev) if r.engine is None else (get_engine(r.engine), "")
    except EngineError as exc:
        return str(exc)
    problem = engine.compatibility(w, dev, 1)
    return problem or Request(w, dev, engine, margin=r.margin, engine_reason=why)


def _engine_label(r: ReportRequest, spec: ModelSpec, quant: str) -> str:
    engines = sorted({x.engine.name for d in r.devices if isinstance(x := request(r, spec, quant, d), Request)})
    return "/".join(engines) or "no engine"


def memory_vs_context(r: ReportRequest):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    spec = r.models[0]
    ctxs = [c for c in CONTEXTS if c <= spec.max_context]
    titles, columns = [], []
    for quant in r.quants:  # memory is per engine: each column uses the engine of the first device that runs it
        req = next((x for d in r.devices if isinstance(x := request(r, spec, quant, d), Request)), None)
        if req is not None:
            columns.append((quant, req))
            titles.append(f"{spec.name} · {quant} · {req.engine.name}")
    fig = make_subplots(rows=1, cols=max(1, len(columns)), shared_yaxes=True, subplot_titles=titles)
    device_colors = _colors(d.name for d in r.devices)
    for col, (quant, req) in enumerate(columns, start=1):
        fits = [fit(req.with_workload(ctx=c)) for c in ctxs]
        for cat in CATEGORIES:
            fig.add_trace(go.Scatter(
                x=[format_context(c) for c in ctxs], y=[f.memory.by_category()[cat.value] / GIB for f in fits],
                name=cat.title, stackgroup=f"s{col}", line={"color": CATEGORY_COLORS[cat.value]},
                fillcolor=CATEGORY_COLORS[cat.value], legendgroup=cat.value, showlegend=col == 1,
                hovertemplate=f"{cat.title}: %{{y:.2f}} GiB<extra>{quant}</extra>"), row=1, col=col)
        for dev in r.devices:
            budget = Request(req.workload, dev, req.engine, margin=r.margin).budget_bytes()
            fig.add_trace(go.Scatter(
                x=[format_context(c) for c in ctxs], y=[budget / GIB] * len(ctxs), mode="lines",
                line={"dash": "dash", "width": 1.5, "color": device_colors[dev.name]}, name=f"{dev.name} budget",
                legendgroup=dev.name, showlegend=col == 1,
                hovertemplate=f"{dev.name}: %{{y:.1f}} GiB budget<extra></extra>"), row=1, col=col)
    fig.update_yaxes(title_text="GiB on the accelerator", row=1, col=1)
    fig.update_layout(title=f"Memory vs context, stacked by component (computed; engine per subplot title, "
                            f"batch {r.batch}, KV {r.kv_dtype})", height=460)
    return fig


def fit_matrix(r: ReportRequest):
    import plotly.graph_objects as go

    ys, z, text = [], [], []
    for spec in r.models:
        for quant in r.quants:
            ys.append(f"{spec.name} · {quant}")
            row_z, row_t = [], []
            for dev in r.devices:
                req = request(r, spec, quant, dev)
                if not isinstance(req, Request):
                    row_z.append(None)
                    row_t.append(f"cannot run: {html.escape(req)}")
                    continue
                f = fit(req)
                head = f.headroom_bytes / GIB
                row_z.append(head)
                row_t.append(f"{f.verdict.value.replace('_', ' ')} ({req.engine.name}): headroom {head:.1f} GiB<br>"
                             + "<br>".join(f"{k}: {v / GIB:.2f} GiB" for k, v in f.memory.by_category().items()))
            z.append(row_z)
            text.append(row_t)
    fig = go.Figure(go.Heatmap(
        z=z, x=[d.name for d in r.devices], y=ys, text=text, hovertemplate="%{y} on %{x}<br>%{text}<extra></extra>",
        colorscale=[[0, "#c0392b"], [0.5, "#f7f7f7"], [1, "#1e8449"]], zmid=0, colorbar={"title": "headroom GiB"},
        texttemplate="%{z:.1f}"))
    engine = r.engine or "auto (per cell)"
    fig.update_layout(title=f"Fit matrix at {format_context(r.ctx)} context, batch {r.batch}, engine {engine} "
                            "(colour = headroom; blank = cannot run)", height=140 + 40 * len(ys))
    return fig


def limits(r: ReportRequest):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["largest context that fits with the margin (tokens)",
                                                         f"largest batch at {format_context(r.ctx)}"])
    names = [f"{s.name} · {q} · {_engine_label(r, s, q)}" for s in r.models for q in r.quants]
    colors = _colors(names)
    for spec in r.models:
        for quant in r.quants:
            ctxs, batches = [], []
            for dev in r.devices:
                req = request(r, spec, quant, dev)
                ctxs.append(max_context(req) if isinstance(req, Request) else 0)
                batches.append(max_batch(req) if isinstance(req, Request) else 0)
            name = f"{spec.name} · {quant} · {_engine_label(r, spec, quant)}"
            for col, ys in ((1, ctxs), (2, batches)):
                fig.add_trace(go.Bar(x=[d.name for d in r.devices], y=ys, name=name, legendgroup=name,
                                     marker={"color": colors[name]}, showlegend=col == 1), row=1, col=col)
    fig.update_layout(title="Limits per device with the margin kept (computed; engine in each series name)",
                      barmode="group", height=420)
    return fig


def throughput_vs_batch(r: ReportRequest):
    import plotly.graph_objects as go

    spec, quant = r.models[0], r.quants[-1]
    ctx = min(r.ctx, spec.max_context)
    fig = go.Figure()
    colors = _colors(d.name for d in r.devices)
    engines = set()
    for dev in r.devices:
        req = request(r, spec, quant, dev, ctx=ctx, batch=1)
        if not isinstance(req, Request):
            continue
        limit = max_batch(req)
        batches = [b for b in BATCHES if b <= limit]  # only batches that fit
        if not batches:
            continue
        engines.add(req.engine.name)
        speeds = [evaluate(req.with_workload(batch=b)).speed for b in batches]
        speed = speeds[0]  # the same class, so the same band, at every batch
        band = speed.bands.get("decode") if speed.calibrated else None
        p90 = band["p90"] if band and band["n"] else None
        tag = (f"± p90 {p90:.0%} ({speed.speed_class})" if p90 is not None
               else "fitted, no held-out band" if speed.calibrated else "uncalibrated")
        name = f"{dev.name} ({req.engine.name}) predicted, {tag}"
        fig.add_trace(go.Scatter(x=batches, y=[s.decode_tokens_per_s for s in speeds], name=name,
                                 mode="lines+markers", line={"color": colors[dev.name]},
                                 marker={"color": colors[dev.name]}, legendgroup=dev.name,
                                 error_y=None if p90 is None else {"type": "percent", "value": p90 * 100,
                                                                   "color": colors[dev.name]},
                                 hovertemplate=f"batch %{{x}}: %{{y:,.1f}} tok/s<br>"
                                               f"{html.escape(speed.band_text('decode'))}"
                                               f"<extra>{html.escape(name)}</extra>"))
        fig.add_trace(go.Scatter(x=batches, y=[s.decode_tokens_per_s_roofline for s in speeds],
                                 name=f"{dev.name} roofline", mode="lines", legendgroup=dev.name,
                                 line={"dash": "dot", "color": colors[dev.name]}))
    fig.update_xaxes(type="log", title="concurrent sequences (batch; only batches that fit)")
    fig.update_yaxes(type="log", title="aggregate decode tokens/s")
    fig.update_layout(title=f"Decode throughput vs batch: {spec.name} · {quant} · {'/'.join(sorted(engines)) or '-'} "
                            f"at {format_context(ctx)} (predicted, ± its class's held-out p90 where it has one; "
                            "with the roofline bound)", height=440)
    return fig


def _verdicts(r: ReportRequest) -> str:
    rows = []
    for spec in r.models:
        for quant in r.quants:
            for dev in r.devices:
                req = request(r, spec, quant, dev)
                if not isinstance(req, Request):
                    rows.append(f"<tr><td>{spec.name}</td><td>{quant}</td><td>-</td><td>{dev.name}</td>"
                                f"<td class='no'>cannot run</td><td colspan=6>{html.escape(req)}</td></tr>")
                    continue
                e: Evaluation = evaluate(req)
                cls = {"fits": "ok", "tight": "tight", "does_not_fit": "no"}[e.verdict.value]
                rows.append(f"<tr><td>{spec.name}</td><td>{quant}</td><td>{req.engine.name}</td><td>{dev.name}</td>"
                            f"<td class='{cls}'>{e.verdict.value.replace('_', ' ')}</td>"
                            f"<td>{format_bytes(e.needed_bytes)}</td><td>{format_bytes(e.budget_bytes)}</td>"
                            f"<td>{e.speed.prefill_tokens_per_s:,.0f}</td>"
                            f"<td class='band'>{html.escape(e.speed.band_text('prefill'))}</td>"
                            f"<td>{e.speed.decode_tokens_per_s:,.1f}</td>"
                            f"<td class='band'>{html.escape(e.speed.band_text('decode'))}</td></tr>")
    return ("<table><tr><th>model</th><th>weights</th><th>engine</th><th>device</th><th>verdict</th><th>needs</th>"
            "<th>budget</th><th>prefill tok/s</th><th class='band'>prefill error band</th><th>decode tok/s</th>"
            "<th class='band'>decode error band</th></tr>" + "".join(rows) + "</table>")


def _assumptions(r: ReportRequest) -> str:
    from g4sim import __version__
    from g4sim.measure.measurements import git_commit

    commit, dirty = git_commit()
    engines: dict[str, Engine] = {}
    for spec in r.models:
        for quant in r.quants:
            for dev in r.devices:
                req = request(r, spec, quant, dev)
                if isinstance(req, Request):
                    engines.setdefault(req.engine.name, req.engine)
    items = [f"engine <b>{html.escape(name)}</b>: {html.escape(e.description)}; settings "
             + html.escape(", ".join(f"{k}={v}" for k, v in e.settings().items()) or "none")
             for name, e in engines.items()]
    items += [f"engine choice: {'--engine ' + r.engine if r.engine else 'auto (what users of each device and format run)'}",
              f"margin {html.escape(r.margin.describe())}; KV cache {html.escape(r.kv_dtype)}; batch {r.batch}; "
              "text decoder only (towers not loaded)"]
    for dev in r.devices:
        e = dev.efficiency
        items.append(f"<b>{dev.name}</b>: {format_bytes(dev.memory_bytes)} ({format_bytes(dev.usable_memory_bytes)} after "
                     f"OS / display / driver), {dev.memory_bandwidth_bytes_per_s / 1e9:,.0f} GB/s, "
                     f"bf16 {dev.flops('bf16') / 1e12:,.1f} TFLOP/s; efficiencies prefill {e.prefill_compute:.2f}, "
                     f"decode {e.decode_bandwidth:.2f} ({html.escape(e.provenance)}); sources: "
                     + ", ".join(html.escape(s) for s in dev.sources))
    items += [html.escape(n) for n in r.notes]
    items.append(f"g4sim {__version__}, commit {commit}{' (modified)' if dirty else ''}, generated "
                 f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;background:#fafafa;color:#222}
header{background:#1f2937;color:#fff;padding:24px 40px} header h1{margin:0;font-size:26px} header p{margin:6px 0 0;color:#cbd5e1}
main{padding:24px 40px;max-width:1400px} section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px;margin:0 0 20px}
h2{font-size:18px;margin:0 0 8px} table{border-collapse:collapse;font-size:14px} th,td{padding:4px 12px;text-align:right;border-bottom:1px solid #eee}
th:nth-child(-n+3),td:nth-child(-n+3){text-align:left} td.ok{color:#1e8449;font-weight:600} td.no{color:#c0392b;font-weight:600} td.tight{color:#b7950b;font-weight:600}
.band{text-align:left;color:#555;font-size:12px} li{margin:4px 0;font-size:14px} .note{color:#666;font-size:13px}
"""



def _page(title: str, description: str, body: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(description)}</p></header><main>{body}</main></body></html>")


def _figures_html(figures) -> str:
    import plotly.io as pio

    parts = []
    for i, fig in enumerate(figures):
        fig.update_layout(template="plotly_white", margin={"t": 60, "l": 60, "r": 20, "b": 50})
        parts.append("<section>" + pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0),
                                               config={"displaylogo": False}) + "</section>")
    return "".join(parts)


def figures(r: ReportRequest) -> list:
    return [memory_vs_context(r), fit_matrix(r), limits(r), throughput_vs_batch(r)]


def build_html(r: ReportRequest) -> str:
    engine = r.engine or "auto"
    body = (f"<section><h2>Verdicts at {format_context(r.ctx)} context, batch {r.batch}, engine {engine}, "
            f"margin {html.escape(r.margin.describe())}</h2>{_verdicts(r)}"
            "<p class='note'>Memory is computed by g4sim's analytic model; speeds are predicted (fitted speed terms "
            "of the engine/backend class where it has some, else the hardware profiles' efficiencies; see "
            "assumptions), each beside its error band: the held-out error of that class. Nothing on this page is "
            "measured: predicted vs measured is in the validation report "
            "(<code>g4sim validate --report FILE</code>).</p></section>"
            + _figures_html(figures(r)) + f"<section><h2>Assumptions</h2>{_assumptions(r)}</section>")
    return _page(r.title, r.description, body)


def predicted_vs_measured(checks):
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = _colors(("prefill_peak_bytes", "prefill_tokens_per_s", "decode_tokens_per_s"))
    for figure, unit, scale in (("prefill_peak_bytes", "MiB", 2**20), ("prefill_tokens_per_s", "tok/s", 1),
                                ("decode_tokens_per_s", "tok/s", 1)):
        cs = [c for c in checks if c.figure == figure]
        fig.add_trace(go.Scatter(
            x=[c.measured / scale for c in cs], y=[c.predicted / scale for c in cs], mode="markers", name=figure,
            marker={"color": colors[figure]}, text=[f"{c.config}<br>error {c.error:+.1%}" for c in cs],
            hovertemplate="%{text}<br>measured %{x:,.1f}<br>predicted %{y:,.1f}" + f" {unit}<extra>{figure}</extra>"))
    xs = [x for t in fig.data for x in t.x]
    fig.add_trace(go.Scatter(x=[min(xs), max(xs)], y=[min(xs), max(xs)], mode="lines",
                             line={"dash": "dash", "color": "#888"}, name="predicted = measured"))
    fig.update_xaxes(type="log", title="measured")
    fig.update_yaxes(type="log", title="predicted")
    fig.update_layout(title="Predicted vs measured (engine g4sim: the measurement store's runs of g4sim's model)",
                      height=460)
    return fig


def validation_html(checks, summary_rows) -> str:
    rows = "".join(f"<tr><td>{html.escape(r['figure'])}</td><td>{r['rows']}</td><td>{r['held_to_tolerance']}</td>"
                   f"<td>{r['mean_abs_error']:.2%}</td><td>{r['worst_error']:+.2%}</td><td>{r['failures']}</td></tr>"
                   for r in summary_rows)
    body = ("<section><h2>Summary (held-out rows)</h2><table><tr><th>figure</th><th>rows</th><th>held</th>"
            f"<th>mean |error|</th><th>worst</th><th>failures</th></tr>{rows}</table></section>"
            + _figures_html([predicted_vs_measured(checks)]))
    return _page("g4sim validation: predicted vs measured", "reports/measurements, with provenance per row", body)


def write_html(text: str, path: Path) -> Path:
    """Write ``text`` atomically, readable by everyone (0644) like any other tool's output."""
    return write_text(path, text)


def write_report(r: ReportRequest, path: Path) -> Path:
    return write_html(build_html(r), path)  # built fully before anything touches the disk


__all__ = ["ReportRequest", "build_html", "figures", "validation_html", "write_html", "write_report"]
