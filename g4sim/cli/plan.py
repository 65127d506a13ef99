"""``g4sim plan``: will it fit, how fast, and the command that launches it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Optional

import typer

from g4sim.cli.app import app, out
from g4sim.cli.resolve import (
    resolve_context, resolve_engine_name, resolve_gpu, resolve_kv_dtype, resolve_margin, resolve_quant, resolve_spec,
    user_device,
)
from g4sim.errors import UserError

# plan option -> engine setting, each named as the engine names it (the engine modules cite the defaults)
_ON_OFF = {"on": True, "off": False, "auto": True}


def _on_off(flag: str, value: str) -> bool:
    if value.lower() not in _ON_OFF:
        raise UserError(f"{flag} {value!r}; valid: on, off, auto")
    return _ON_OFF[value.lower()]


def engine_settings(**given: Any) -> dict[str, Any]:
    """The engine settings the user gave (field -> value), parsed."""
    from g4sim.engines.llamacpp import cache_type

    fields = {"attn_implementation": "attn_implementation", "prefill_chunk_size": "prefill_chunk",
              "ubatch_size": "n_ubatch", "n_gpu_layers": "n_gpu_layers", "n_cpu_moe": "n_cpu_moe",
              "gpu_memory_utilization": "gpu_memory_utilization", "max_num_batched_tokens": "max_num_batched_tokens",
              "block_size": "block_size", "wired_limit_mb": "wired_limit_mb", "prefill_step_size": "prefill_step_size",
              "vllm_version": "vllm_version", "batch_size": "n_batch", "backend": "backend",
              "cpu_thread_count": "cpu_thread_count"}
    settings = {fields[k]: v for k, v in given.items() if k in fields and v is not None}
    if given.get("flash_attn") is not None:
        settings["flash_attn"] = _on_off("--flash-attn", given["flash_attn"])
    if given.get("cache_type_v") is not None:
        try:
            settings["cache_type_v"] = cache_type("--cache-type-v", given["cache_type_v"])
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    if given.get("backend") is not None and given["backend"] not in ("cpu", "gpu"):
        raise UserError(f"--backend {given['backend']!r}; valid: cpu, gpu")
    for switch in ("swa_full", "kv_unified", "enforce_eager", "ringbuffers_local_attention"):
        if given.get(switch):
            settings[switch] = True
    if given.get("no_repack"):
        settings["repack"] = False
    if given.get("no_host"):
        settings["no_host"] = True
    return settings


def weight_file(gguf: str | None, checkpoint: str | None, **others: str | None):
    """The file ``--gguf`` / ``--checkpoint`` names, read header-only (None when neither is given).

    The file fixes the model and its format, so ``--model``, ``--config``, ``--quant`` and ``--from``
    are refused beside it."""
    if gguf is None and checkpoint is None:
        return None
    flag = "--gguf" if gguf is not None else "--checkpoint"
    if gguf is not None and checkpoint is not None:
        raise UserError("give --gguf FILE or --checkpoint DIR, not both")
    clash = next((name for name, v in others.items() if v is not None), None)
    if clash:
        option = {"from_command": "--from"}.get(clash, f"--{clash}")
        raise UserError(f"{flag} fixes the model and its weight format; drop {option}")
    from pathlib import Path

    from g4sim.weightfiles import WeightFileError, read_checkpoint, read_gguf

    path = Path(gguf if gguf is not None else checkpoint)
    if gguf is not None and path.is_dir():
        raise UserError(f"--gguf {gguf!r} is a directory; give a .gguf file (--checkpoint reads a checkpoint directory)")
    if checkpoint is not None and path.is_file():
        raise UserError(f"--checkpoint {checkpoint!r} is a file; give the checkpoint's directory (--gguf reads a GGUF file)")
    try:
        return read_gguf(path) if gguf is not None else read_checkpoint(path)
    except WeightFileError as exc:
        raise UserError(str(exc)) from exc


def _engine(name: str | None, settings: dict, w, device, gpus: int):
    """(engine, why auto chose it) — the named one with its settings, or auto's pick."""
    from g4sim.engines import EngineError, get_engine
    from g4sim.engines.auto import choose, engines_that_run

    try:
        if name is None:
            return choose(w, device, gpus, settings)
        engine = get_engine(name, **settings)
    except EngineError as exc:
        raise UserError(str(exc)) from exc
    problem = engine.compatibility(w, device, gpus)
    if problem:
        others = engines_that_run(w, device, gpus)
        raise UserError(problem + (f"; what runs it: --engine {' or '.join(others)}" if others
                                   else "; no engine g4sim models runs it there"))
    return engine, ""


@app.command()
def plan(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Variant: e2b, e4b, 26b-a4b, 31b."),
    config: Optional[str] = typer.Option(None, "--config", help="Plan any HF config.json (or a directory holding one)."),
    from_command: Optional[str] = typer.Option(None, "--from", help="Plan the command you run: \"llama-server -m ...\", "
                                               "\"vllm serve ...\"."),
    gguf: Optional[str] = typer.Option(None, "--gguf", help="Plan exactly this GGUF file (model, format and every "
                                       "tensor's bytes from the file; runs in llama.cpp)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Plan exactly this HF checkpoint directory "
                                             "(config.json + safetensors; AWQ / GPTQ / FP8 / NVFP4 as it states)."),
    ctx: Optional[str] = typer.Option(None, "--ctx", "-c", help="Context per sequence: 8192, 32k, 256k (default 8k)."),
    gpu: str = typer.Option("rtx4090", "--gpu", "-g", help="Hardware profile (see `g4sim gpus`) or your own profile "
                            "file (./my-device.yaml, docs/hardware-profile.md); NAME:N or FILE:N for N of them."),
    gpus: Optional[int] = typer.Option(None, "--gpus", min=1, max=64, help="How many GPUs of --gpu."),
    quant: Optional[str] = typer.Option(None, "--quant", "-q", help="Weight format (default: the smallest-loss one that "
                                        "fits with the margin): bf16, fp8, int4-g128, q4_k_m, ..."),
    kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype", help="KV-cache format: bf16, fp16, fp8, q8_0, q4_0 "
                                           "(default: the model's 16-bit dtype)."),
    batch: Optional[int] = typer.Option(None, "--batch", "-b", min=1, max=65536, help="Concurrent sequences (slots)."),
    engine: str = typer.Option("auto", "--engine", "-e", help="auto, llamacpp, vllm, ollama, mlx, litert-lm, "
                               "transformers, g4sim."),
    margin: str = typer.Option("5%", "--margin", help="Spare memory a plan keeps: 5%, 0.05, 1.5GiB."),
    headless: bool = typer.Option(False, "--headless", help="The GPU drives no display (frees the desktop's share)."),
    attn_implementation: Optional[str] = typer.Option(None, "--attn", help="transformers: sdpa or eager."),
    prefill_chunk_size: Optional[int] = typer.Option(None, "--prefill-chunk-size", min=1, max=1 << 24,
                                                     help="transformers / g4sim: prompt tokens per forward pass."),
    ubatch_size: Optional[int] = typer.Option(None, "--ubatch-size", "--num-batch", min=1, max=65536,
                                               help="llama.cpp -ub / Ollama num_batch: micro-batch tokens."),
    flash_attn: Optional[str] = typer.Option(None, "--flash-attn", help="llama.cpp -fa: on or off."),
    swa_full: bool = typer.Option(False, "--swa-full", help="llama.cpp: full-size sliding-window cache."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, max=1 << 20,
                                             help="llama.cpp -b: logical batch (caps -ub)."),
    no_repack: bool = typer.Option(False, "--no-repack", help="llama.cpp on CPU: no repacked weight copy."),
    no_host: bool = typer.Option(False, "--no-host", help="llama.cpp: no GPU host buffer (host weights repacked)."),
    kv_unified: bool = typer.Option(False, "--kv-unified", help="llama.cpp: one KV buffer for all slots."),
    cache_type_v: Optional[str] = typer.Option(None, "--cache-type-v", help="llama.cpp -ctv (default: as -ctk)."),
    n_gpu_layers: Optional[int] = typer.Option(None, "--n-gpu-layers", "--num-gpu", min=0, max=100_000,
                                                help="llama.cpp -ngl / Ollama num_gpu."),
    n_cpu_moe: Optional[int] = typer.Option(None, "--n-cpu-moe", min=0, max=100_000, help="llama.cpp: experts of the first N layers on the host."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization", min=0.01, max=1.0, help="vLLM: share of GPU memory."),
    max_num_batched_tokens: Optional[int] = typer.Option(None, "--max-num-batched-tokens", min=1, max=1 << 24, help="vLLM: tokens per step."),
    block_size: Optional[int] = typer.Option(None, "--block-size", min=1, max=4096, help="vLLM: tokens per KV block."),
    enforce_eager: bool = typer.Option(False, "--enforce-eager", help="vLLM: no CUDA graphs."),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version", help="vLLM release whose allocator to plan "
                                               "(0.33.0 default, 0.20.0, 0.19.1)."),
    wired_limit_mb: Optional[int] = typer.Option(None, "--wired-limit-mb", min=1, max=1 << 24,
                                                 help="MLX on macOS: sysctl iogpu.wired_limit_mb (GPU working set)."),
    prefill_step_size: Optional[int] = typer.Option(None, "--prefill-step-size", min=1, max=1 << 20,
                                                    help="MLX: prompt tokens per step."),
    backend: Optional[str] = typer.Option(None, "--backend", help="LiteRT-LM: cpu or gpu."),
    cpu_thread_count: Optional[int] = typer.Option(None, "--cpu-thread-count", min=1, max=1024,
                                                   help="LiteRT-LM: CPU threads (default 4)."),
    ringbuffers_local_attention: bool = typer.Option(False, "--ringbuffers-local-attention",
                                                     help="LiteRT-LM on a GPU: window-sized sliding-layer cache."),
    text_only: bool = typer.Option(False, "--text-only", help="Text decoder only (default)."),
    with_vision: bool = typer.Option(False, "--with-vision", help="Also load the vision tower."),
    with_audio: bool = typer.Option(False, "--with-audio", help="Also load the audio tower."),
    allow_beyond_max: bool = typer.Option(False, "--allow-beyond-max", help="Allow contexts past the model's maximum."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (stable keys, sizes in bytes)."),
) -> None:
    """Will it fit? Memory breakdown, verdict, limits, speed, ranked layouts and the launch command."""
    from g4sim.analytic.quant import get_quant
    from g4sim.engines import ENGINES, EngineError, Workload
    from g4sim.evaluation import Incompatible, Request
    from g4sim.plan import choose_format, make_plan, plan_to_dict
    from g4sim.plan.search import BEYOND_MAX_CAP

    settings = engine_settings(
        attn_implementation=attn_implementation, prefill_chunk_size=prefill_chunk_size, ubatch_size=ubatch_size,
        flash_attn=flash_attn, swa_full=swa_full, kv_unified=kv_unified, cache_type_v=cache_type_v,
        n_gpu_layers=n_gpu_layers, n_cpu_moe=n_cpu_moe, gpu_memory_utilization=gpu_memory_utilization,
        batch_size=batch_size, no_repack=no_repack, no_host=no_host,
        max_num_batched_tokens=max_num_batched_tokens, block_size=block_size, enforce_eager=enforce_eager,
        wired_limit_mb=wired_limit_mb, prefill_step_size=prefill_step_size, vllm_version=vllm_version,
        backend=backend, cpu_thread_count=cpu_thread_count, ringbuffers_local_attention=ringbuffers_local_attention)
    if text_only and (with_vision or with_audio):
        raise UserError("--text-only cannot be combined with --with-vision / --with-audio")
    file = weight_file(gguf, checkpoint, model=model, config=config, quant=quant, from_command=from_command)
    device, count = resolve_gpu(gpu, gpus)
    margin_ = resolve_margin(margin)
    choice = ""
    if from_command is not None:
        given = [flag for flag, v in (("--ctx", ctx), ("--quant", quant), ("--kv-dtype", kv_dtype), ("--batch", batch),
                                      ("--config", config)) if v is not None]
        given += ["--engine"] if engine != "auto" else []
        given += [f"engine setting {k}" for k in settings]
        if given:
            raise UserError(f"--from fixes the engine, its settings and the workload; drop {given[0]} or edit the command")
        from g4sim.plan.commandline import read_command, request_from_command

        try:
            named = read_command(from_command).parsed.file  # the command's -m file / checkpoint, when it is here
            if named is not None and model:
                raise UserError(f"the command names {named.path}, which holds {named.spec.name}; drop --model")
            spec_ = named.spec if named is not None else resolve_spec(model, None) if model else None
            req = request_from_command(from_command, spec_, device, gpus=count, margin=margin_,
                                       display_attached=not headless)
        except EngineError as exc:
            raise UserError(str(exc)) from exc
        if named is not None:
            req = req.with_workload(file=named)  # kept while the command's format is the file's
        file = req.workload.file
        spec = req.spec
        if req.workload.ctx > spec.max_context and not allow_beyond_max:
            raise UserError(f"the command's context {req.workload.ctx:,} is beyond {spec.name}'s maximum of "
                            f"{spec.max_context:,}; pass --allow-beyond-max to plan it anyway")
        problem = req.engine.compatibility(req.workload, req.device, req.gpus)
        if problem:
            raise UserError(problem)
    else:
        spec = file.spec if file is not None else resolve_spec(model, config)
        if with_vision and spec.vision is None:
            raise UserError(f"{spec.name} has no vision tower")
        if with_audio and spec.audio is None:
            raise UserError(f"{spec.name} has no audio tower (audio: e2b, e4b)")
        ctx_tokens = resolve_context(ctx or "8k", spec, allow_beyond_max)
        name = resolve_engine_name(engine)
        q = file.format if file is not None else resolve_quant(quant) if quant else None
        if q is None and name is not None and len(ENGINES[name].caps.weight_formats) == 1:
            q = next(iter(ENGINES[name].caps.weight_formats))  # the one format this engine loads (LiteRT-LM's)
        kv = resolve_kv_dtype(kv_dtype) if kv_dtype else None
        w = Workload(spec, ctx_tokens, batch or 1, q or "bf16", kv or "bf16", with_vision, with_audio, file)
        if q is None:
            from g4sim.engines import get_engine

            if name is None:  # a placeholder: choose_format picks the engine per format
                name_ = next((n for n, cls in ENGINES.items() if set(settings) <= {o.field for o in cls.options}), None)
                if name_ is None:
                    raise UserError(f"no one engine has all of the settings {', '.join(sorted(settings))}")
            try:
                base = get_engine(name or name_, **settings)
            except EngineError as exc:
                raise UserError(str(exc)) from exc
            template = Request(w, device, base, count, margin_, not headless)
            try:
                req, choice = choose_format(template, auto_engine=name is None, settings=settings)
            except EngineError as exc:
                raise UserError(str(exc)) from exc
        else:
            if kv is None and q in ("fp16", "fp32"):
                w = replace(w, kv_dtype=q)  # the model's dtype
            elif kv is None and get_quant(q).kv_dtype:
                w = replace(w, kv_dtype=get_quant(q).kv_dtype)  # what the file's graphs fix
            eng, why = _engine(name, settings, w, device, count)
            req = Request(w, device, eng, count, margin_, not headless, why)
    try:
        result = make_plan(req, choice, context_cap=BEYOND_MAX_CAP if allow_beyond_max else None)
    except Incompatible as exc:
        raise UserError(str(exc)) from exc
    if as_json:
        data = plan_to_dict(result)
        if file is not None:
            data["file"] = file.summary()
        if user_device(device) is not None:
            data["device_file"] = user_device(device)
        typer.echo(json.dumps(data, indent=2))
    else:
        from g4sim.outputs.render import render_plan

        if file is not None:
            kind = "GGUF file" if file.kind == "gguf" else "safetensors checkpoint"
            out.print(f"file {file.path}: {kind}, {file.label} (g4sim plans it as {file.format}), "
                      f"{len(file.tensors):,} tensors, {file.total_bytes:,} bytes of weights (`g4sim inspect` lists "
                      "them)", soft_wrap=True)
        if user_device(device) is not None:
            out.print(user_device(device)["note"], soft_wrap=True)
        render_plan(result, out)
