"""``g4sim inspect FILE_OR_DIR``: what a GGUF file or checkpoint holds, tensor by tensor, and where it lives."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich import box
from rich.table import Table

from g4sim.cli.app import app, out
from g4sim.errors import UserError


def placements(wf) -> dict[str, list[dict[str, Any]]]:
    """Per engine that loads this kind of file (default settings): bytes per component and location."""
    from g4sim.analytic.components import Component
    from g4sim.engines import ENGINES

    order = list(Component)
    from g4sim.engines import Workload

    vision, audio = wf.has("vision_tower"), wf.has("audio_tower")
    w = Workload(wf.spec, wf.spec.max_context, 1, wf.format, vision=vision, audio=audio, file=wf)
    result: dict[str, list[dict[str, Any]]] = {}
    for name, cls in ENGINES.items():
        if wf.kind not in cls.file_kinds or not cls().loads_format(wf.format, w):
            continue
        terms = cls().weight_terms(wf.spec, wf.format, vision=vision, audio=audio, file=wf)
        terms = sorted(terms, key=lambda t: (order.index(t.component), t.location.value))
        result[name] = [{"component": t.component.value, "location": t.location.value, "bytes": t.bytes,
                         "source": t.source} for t in terms]
    return result


def inspect_dict(wf) -> dict[str, Any]:
    t = wf.spec.text
    return {
        **wf.summary(),
        "model": {"name": wf.spec.name, "layers": t.num_layers, "hidden_size": t.hidden_size,
                  "layer_types": list(t.layer_types), "sliding_window": t.sliding_window,
                  "num_heads": t.num_heads, "kv_heads": [t.kv_heads(i) for i in range(t.num_layers)],
                  "head_dim": t.head_dim, "global_head_dim": t.global_head_dim,
                  "attention_k_eq_v": t.attention_k_eq_v, "num_kv_shared_layers": t.num_kv_shared_layers,
                  "intermediate_size": t.intermediate_size, "use_double_wide_mlp": t.use_double_wide_mlp,
                  "vocab_size": t.vocab_size, "hidden_size_per_layer_input": t.hidden_size_per_layer_input,
                  "num_experts": t.num_experts, "top_k_experts": t.top_k_experts,
                  "moe_intermediate_size": t.moe_intermediate_size, "max_context_tokens": t.max_position_embeddings,
                  "tie_word_embeddings": t.tie_word_embeddings},
        "tensors": [x._asdict() for x in wf.tensors],
        "totals": {"tensors": len(wf.tensors), "bytes": wf.total_bytes, "by_component": wf.by_component(),
                   "by_type": wf.by_type()},
        "placement": placements(wf),
    }


def _gib(n: int) -> str:
    from g4sim.units import format_bytes

    return format_bytes(n)


@app.command()
def inspect(
    path: str = typer.Argument(..., help="A GGUF file, or an HF checkpoint directory (config.json + *.safetensors)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (sizes in bytes)."),
) -> None:
    """Every tensor of a weight file (name, component, layer, type, bytes), totals, and where each engine keeps it."""
    from g4sim.weightfiles import WeightFileError, read_weight_file

    try:
        wf = read_weight_file(path)
    except WeightFileError as exc:
        raise UserError(str(exc)) from exc
    data = inspect_dict(wf)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    t = wf.spec.text
    out.print(f"{wf.path}: {'GGUF file' if wf.kind == 'gguf' else 'safetensors checkpoint'}, {wf.label} "
              f"(g4sim plans it as {wf.format})", soft_wrap=True)
    out.print(f"model {wf.spec.name}: {t.num_layers} layers, hidden {t.hidden_size}, vocab {t.vocab_size:,}"
              + (f", {t.num_experts} experts (top {t.top_k_experts})" if t.enable_moe_block else "")
              + (f", PLE {t.hidden_size_per_layer_input}" if t.has_ple else "")
              + f"; {len(wf.tensors):,} tensors, {wf.total_bytes:,} bytes ({_gib(wf.total_bytes)}); "
              f"{wf.size_bytes:,} bytes on disk in {len(wf.parts)} file(s)", soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col, justify in (("tensor", "left"), ("component", "left"), ("layer", "right"), ("type", "left"),
                         ("bytes", "right")):
        table.add_column(col, justify=justify, no_wrap=col != "tensor", overflow="fold")
    for x in wf.tensors:
        table.add_row(x.name, x.component, str(x.layer) if x.layer >= 0 else "-", x.type, f"{x.bytes:,}")
    out.print(table)
    totals = Table(title="Totals by component", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                   collapse_padding=True)
    for col in ("component", "tensors", "bytes", "size", "share", "types"):
        totals.add_column(col, justify="left" if col in ("component", "types") else "right", no_wrap=col != "types")
    for component, n in wf.by_component().items():
        mine = [x for x in wf.tensors if x.component == component]
        types: dict[str, int] = {}
        for x in mine:
            types[x.type] = types.get(x.type, 0) + x.bytes
        totals.add_row(component, str(len(mine)), f"{n:,}", _gib(n), f"{n / max(wf.total_bytes, 1):.1%}",
                       ", ".join(f"{k} {v / n:.0%}" for k, v in sorted(types.items(), key=lambda kv: -kv[1])))
    totals.add_row("total", str(len(wf.tensors)), f"{wf.total_bytes:,}", _gib(wf.total_bytes), "100.0%",
                   ", ".join(f"{k} {v / max(wf.total_bytes, 1):.0%}" for k, v in wf.by_type().items()))
    out.print(totals)
    where = data["placement"]
    if not where:
        return
    place = Table(title="Where it lives (default engine settings)", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    place.add_column("component", no_wrap=True)
    for engine in where:
        place.add_column(engine)
    components = list(dict.fromkeys(term["component"] for terms in where.values() for term in terms))
    for component in components:
        cells = []
        for terms in where.values():
            parts = [f"{term['location']} {_gib(term['bytes'])}" for term in terms if term["component"] == component]
            cells.append(" + ".join(parts) or "-")
        place.add_row(component, *cells)
    out.print(place)
