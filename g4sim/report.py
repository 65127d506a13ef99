"""Self-contained HTML capacity reports (plotly, JavaScript embedded: opens offline).

One page: a verdict table, memory vs context per weight format (stacked by component, with each
device's capacity), a fit matrix (model x device x format, colour = headroom), the largest context
and batch per device, decode throughput vs batch beside its roofline, predicted vs measured from
the measurement store, and the assumptions (engine, overheads, efficiencies, sources, version,
commit, date).  Written atomically: a failed run leaves no half-written report.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from g4sim.analytic import estimate_memory
from g4sim.engines import get_engine
from g4sim.hardware import HardwareProfile
from g4sim.plan import DEFAULT_PREFILL_CHUNK, PlanRequest, max_batch, max_context
from g4sim.spec import ModelSpec
from g4sim.throughput import predict
from g4sim.units import format_bytes, format_context

GIB = 2**30
COLORS = {"weights": "#4C78A8", "kv_cache": "#F58518", "activations": "#54A24B", "overhead": "#B279A2"}
CONTEXTS = (1024, 4096, 8192, 16384, 32768, 65536, 131072, 196608, 262144)


@dataclass(frozen=True)
class ReportRequest:
    title: str
    models: tuple[ModelSpec, ...]
    devices: tuple[HardwareProfile, ...]
    quants: tuple[str, ...] = ("bf16", "q8_0", "q4_k_m")
    ctx: int = 32768
    batch: int = 1
    kv_dtype: str = "bf16"
    engine: str = "transformers"
    description: str = ""
    notes: tuple[str, ...] = field(default=())


def _contexts(spec: ModelSpec) -> list[int]:
    return [c for c in CONTEXTS if c <= spec.max_context]


def memory_vs_context(r: ReportRequest):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    spec = r.models[0]
    fig = make_subplots(rows=1, cols=len(r.quants), shared_yaxes=True, subplot_titles=[f"{spec.name} · {q}" for q in r.quants])
    ctxs = _contexts(spec)
    for col, quant in enumerate(r.quants, start=1):
        mems = [estimate_memory(spec, ctx=c, batch=r.batch, quant=quant, kv_dtype=r.kv_dtype, engine=r.engine,
                                prefill_chunk=DEFAULT_PREFILL_CHUNK) for c in ctxs]
        for cat, color in COLORS.items():
            fig.add_trace(go.Scatter(
                x=[format_context(c) for c in ctxs], y=[m.by_category()[cat] / GIB for m in mems], name=cat,
                stackgroup=f"s{col}", line={"color": color}, legendgroup=cat, showlegend=col == 1,
                hovertemplate=f"{cat}: %{{y:.2f}} GiB<extra>{quant}</extra>"), row=1, col=col)
        for dev in r.devices:
            fig.add_trace(go.Scatter(
                x=[format_context(c) for c in ctxs], y=[dev.usable_memory_bytes / GIB] * len(ctxs), mode="lines",
                line={"dash": "dash", "width": 1.5}, name=f"{dev.name} usable", legendgroup=dev.name,
                showlegend=col == 1, hovertemplate=f"{dev.name}: %{{y:.1f}} GiB usable<extra></extra>"), row=1, col=col)
    fig.update_yaxes(title_text="GiB on the accelerator", row=1, col=1)
    fig.update_layout(title="Memory vs context, stacked by component (computed)", height=460)
    return fig


def fit_matrix(r: ReportRequest):
    import plotly.graph_objects as go

    ys, z, text = [], [], []
    for spec in r.models:
        for quant in r.quants:
            ys.append(f"{spec.name} · {quant}")
            row_z, row_t = [], []
            for dev in r.devices:
                ctx = min(r.ctx, spec.max_context)
                m = estimate_memory(spec, ctx=ctx, batch=r.batch, quant=quant, kv_dtype=r.kv_dtype, engine=r.engine,
                                    prefill_chunk=DEFAULT_PREFILL_CHUNK, device_kind="gpu" if dev.kind == "gpu" else "cpu")
                head = (dev.usable_memory_bytes - m.total()) / GIB
                row_z.append(head)
                cats = m.by_category()
                row_t.append(f"{'fits' if head >= 0 else 'does not fit'}: headroom {head:.1f} GiB<br>" + "<br>".join(
                    f"{k}: {v / GIB:.2f} GiB" for k, v in cats.items()))
            z.append(row_z)
            text.append(row_t)
    fig = go.Figure(go.Heatmap(
        z=z, x=[d.name for d in r.devices], y=ys, text=text, hovertemplate="%{y} on %{x}<br>%{text}<extra></extra>",
        colorscale=[[0, "#c0392b"], [0.5, "#f7f7f7"], [1, "#1e8449"]], zmid=0, colorbar={"title": "headroom GiB"},
        texttemplate="%{z:.1f}"))
    fig.update_layout(title=f"Fit matrix at {format_context(r.ctx)} context, batch {r.batch} (colour = headroom)",
                      height=120 + 40 * len(ys))
    return fig


def limits(r: ReportRequest):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["largest context that fits (tokens)",
                                                         f"largest batch at {format_context(r.ctx)}"])
    for spec in r.models:
        for quant in r.quants:
            ctxs, batches = [], []
            for dev in r.devices:
                req = PlanRequest(spec=spec, device=dev, ctx=min(r.ctx, spec.max_context), batch=r.batch, quant=quant,
                                  kv_dtype=r.kv_dtype, engine=get_engine(r.engine))
                ctxs.append(max(max_context(req), 0))
                batches.append(max_batch(req) if req.fits() else 0)
            name = f"{spec.name} · {quant}"
            fig.add_trace(go.Bar(x=[d.name for d in r.devices], y=ctxs, name=name, legendgroup=name), row=1, col=1)
            fig.add_trace(go.Bar(x=[d.name for d in r.devices], y=batches, name=name, legendgroup=name,
                                 showlegend=False), row=1, col=2)
    fig.update_layout(title="Limits per device (computed)", barmode="group", height=420)
    return fig


def throughput_vs_batch(r: ReportRequest):
    import plotly.graph_objects as go

    spec, quant = r.models[0], r.quants[-1]
    batches = [1, 2, 4, 8, 16, 32, 64, 128]
    ctx = min(r.ctx, spec.max_context)
    fig = go.Figure()
    for dev in r.devices:
        preds = [predict(spec, dev, ctx=ctx, batch=b, quant=quant, kv_dtype=r.kv_dtype, engine=r.engine) for b in batches]
        fig.add_trace(go.Scatter(x=batches, y=[p.decode_tokens_per_s for p in preds], name=f"{dev.name} predicted",
                                 mode="lines+markers", legendgroup=dev.name))
        fig.add_trace(go.Scatter(x=batches, y=[p.decode_tokens_per_s_roofline for p in preds], name=f"{dev.name} roofline",
                                 mode="lines", line={"dash": "dot"}, legendgroup=dev.name))
    fig.update_xaxes(type="log", title="concurrent sequences (batch)")
    fig.update_yaxes(type="log", title="aggregate decode tokens/s")
    fig.update_layout(title=f"Decode throughput vs batch: {spec.name} · {quant} at {format_context(ctx)} "
                            "(predicted, with the roofline bound)", height=440)
    return fig


def predicted_vs_measured():
    import plotly.graph_objects as go

    from g4sim.validate import validate

    checks = validate()
    if not checks:
        return None
    fig = go.Figure()
    for figure, unit, scale in (("prefill_peak_bytes", "MiB", 2**20), ("prefill_tokens_per_s", "tok/s", 1),
                                ("decode_tokens_per_s", "tok/s", 1)):
        cs = [c for c in checks if c.figure == figure]
        fig.add_trace(go.Scatter(
            x=[c.measured / scale for c in cs], y=[c.predicted / scale for c in cs], mode="markers", name=figure,
            text=[f"{c.config}<br>error {c.error:+.1%}" for c in cs],
            hovertemplate="%{text}<br>measured %{x:,.1f}<br>predicted %{y:,.1f}" + f" {unit}<extra>{figure}</extra>"))
    lo = min(min(t.x) for t in fig.data if len(t.x))
    hi = max(max(t.x) for t in fig.data if len(t.x))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dash", "color": "#888"},
                             name="predicted = measured"))
    fig.update_xaxes(type="log", title="measured")
    fig.update_yaxes(type="log", title="predicted")
    fig.update_layout(title="Predicted vs measured (reports/measurements, g4sim's model on the CPU)", height=460)
    return fig


def _verdicts(r: ReportRequest) -> str:
    rows = []
    for spec in r.models:
        for quant in r.quants:
            for dev in r.devices:
                ctx = min(r.ctx, spec.max_context)
                m = estimate_memory(spec, ctx=ctx, batch=r.batch, quant=quant, kv_dtype=r.kv_dtype, engine=r.engine,
                                    prefill_chunk=DEFAULT_PREFILL_CHUNK, device_kind="gpu" if dev.kind == "gpu" else "cpu")
                fits = m.total() <= dev.usable_memory_bytes
                t = predict(spec, dev, ctx=ctx, batch=r.batch, quant=quant, kv_dtype=r.kv_dtype, engine=r.engine)
                rows.append(f"<tr><td>{spec.name}</td><td>{quant}</td><td>{dev.name}</td>"
                            f"<td class='{'ok' if fits else 'no'}'>{'fits' if fits else 'does not fit'}</td>"
                            f"<td>{format_bytes(m.total())}</td><td>{format_bytes(dev.usable_memory_bytes)}</td>"
                            f"<td>{t.prefill_tokens_per_s:,.0f}</td><td>{t.decode_tokens_per_s:,.1f}</td></tr>")
    return ("<table><tr><th>model</th><th>weights</th><th>device</th><th>verdict</th><th>needs</th><th>usable</th>"
            "<th>prefill tok/s</th><th>decode tok/s</th></tr>" + "".join(rows) + "</table>")


def _assumptions(r: ReportRequest) -> str:
    from g4sim import __version__
    from g4sim.measurements import git_commit

    eng = get_engine(r.engine)
    commit, dirty = git_commit()
    items = [f"engine <b>{html.escape(r.engine)}</b>: {html.escape(eng.description)}",
             f"CUDA context {format_bytes(eng.cuda_context_bytes)}; allocator reserve {eng.allocator_reserve_fraction:.0%} "
             f"of KV + activations; prefill chunk {DEFAULT_PREFILL_CHUNK:,} tokens; logits kept for {eng.logits_kept} position",
             f"KV cache {html.escape(r.kv_dtype)}; batch {r.batch}; text decoder only (towers not loaded)"]
    for dev in r.devices:
        e = dev.efficiency
        items.append(f"<b>{dev.name}</b>: {format_bytes(dev.memory_bytes)}, {dev.memory_bandwidth_bytes_per_s / 1e9:,.0f} GB/s, "
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
th:nth-child(-n+3),td:nth-child(-n+3){text-align:left} td.ok{color:#1e8449;font-weight:600} td.no{color:#c0392b;font-weight:600}
li{margin:4px 0;font-size:14px} .note{color:#666;font-size:13px}
"""


def build_html(r: ReportRequest) -> str:
    import plotly.io as pio

    figures = [memory_vs_context(r), fit_matrix(r), limits(r), throughput_vs_batch(r)]
    measured = predicted_vs_measured()
    if measured is not None:
        figures.append(measured)
    parts = []
    for i, fig in enumerate(figures):
        fig.update_layout(template="plotly_white", margin={"t": 60, "l": 60, "r": 20, "b": 50})
        parts.append("<section>" + pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0),
                                               config={"displaylogo": False}) + "</section>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(r.title)}</title>"
            f"<style>{_CSS}</style></head><body><header><h1>{html.escape(r.title)}</h1>"
            f"<p>{html.escape(r.description)}</p></header><main>"
            f"<section><h2>Verdicts at {format_context(r.ctx)} context, batch {r.batch}</h2>{_verdicts(r)}"
            "<p class='note'>Memory is computed by g4sim's analytic model; speeds are predicted from the hardware "
            "profiles (see assumptions). Nothing on this page is a measurement except the predicted-vs-measured chart.</p>"
            "</section>" + "".join(parts) + f"<section><h2>Assumptions</h2>{_assumptions(r)}</section></main></body></html>")


def write_report(r: ReportRequest, path: Path) -> Path:
    text = build_html(r)  # built fully before anything touches the disk
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
