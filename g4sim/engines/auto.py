"""``--engine auto``: the engine users of a device and weight format actually run, and why.

The rule, in order (the first engine that can run the combination wins):
* an MLX format (mlx-4bit-g64, mlx-8bit-g64) -> mlx: those are the checkpoints mlx_lm.convert
  writes and mlx-lm loads (mlx-community publishes them); mlx runs only on Apple silicon, so on
  any other device auto refuses with mlx's reason;
* a GGUF format (q8_0, q4_k_m, ...) -> llama.cpp: GGUF is llama.cpp's file format (Ollama and
  LM Studio run it underneath);
* ``litertlm`` (the .litertlm files litert-community ships) -> LiteRT-LM, the runtime they are for;
* a CPU, Apple silicon, a Jetson, a phone or a board -> llama.cpp, then transformers: llama.cpp is
  what runs Gemma on these (it ships Metal, CPU, CUDA-on-Jetson and Android builds);
* an NVIDIA or AMD GPU -> vLLM, then llama.cpp, then transformers: vLLM serves 16-bit, FP8, int4
  and FP4 checkpoints on CUDA / ROCm, llama.cpp the rest.
Ollama is never picked automatically: since v0.30 it runs llama.cpp's llama-server (same cache,
same buffers), and llama.cpp plans the same deployment with every setting on its command line;
``--engine ollama`` plans Ollama's own defaults (num_ctx x parallel, automatic num_batch, the
projector always loaded) and prints an Ollama recipe.  g4sim's own runtime is a measuring tool,
never picked automatically.  No torch import.
"""

from __future__ import annotations

from g4sim.analytic.quant import get_quant
from g4sim.engines import ENGINES, Engine, EngineError, Workload

_WHY = {
    "mlx": "MLX-quantized checkpoints (mlx_lm.convert) run in mlx-lm, on Apple silicon",
    "gguf": "GGUF files run in llama.cpp (Ollama and LM Studio run it underneath)",
    "litertlm": ".litertlm files run in LiteRT-LM",
    "edge": "on CPUs, Apple silicon, Jetsons, phones and boards people run llama.cpp",
    "gpu": "on NVIDIA / AMD GPUs, vLLM serves 16-bit, FP8, int4 and FP4 checkpoints",
}


def preference(w: Workload, device) -> tuple[list[str], str]:
    """Engine names in the order auto tries them, and the reason for that order."""
    family = get_quant(w.quant).family
    if family == "mlx":
        return ["mlx"], _WHY["mlx"]
    if family == "gguf":
        return ["llamacpp"], _WHY["gguf"]
    if family == "litertlm":
        return ["litert-lm"], _WHY["litertlm"]
    if device.kind != "gpu":
        return ["llamacpp", "transformers"], _WHY["edge"]
    return ["vllm", "llamacpp", "transformers"], _WHY["gpu"]


def choose(w: Workload, device, gpus: int = 1, settings: dict | None = None) -> tuple[Engine, str]:
    """The engine auto picks for ``w`` on ``gpus`` x ``device`` and a one-line reason.

    With ``settings`` (field -> value) only engines that have every one of those settings are
    considered, and they get them.  Raises EngineError naming every engine's reason when none can run it.
    """
    order, why = preference(w, device)
    if settings:
        order = [n for n in order if set(settings) <= {o.field for o in ENGINES[n].options}]
        if not order:
            raise EngineError(f"no engine that runs {w.spec.name} {get_quant(w.quant).name} on {device.name} has the "
                              f"settings {', '.join(sorted(settings))}")
    reasons: list[str] = []
    for name in order:
        engine = ENGINES[name]().with_settings(settings) if settings else ENGINES[name]()
        problem = engine.compatibility(w, device, gpus)
        if problem is None:
            return engine, why if not reasons else f"{why}; {order[0]} cannot: {reasons[0]}"
        reasons.append(problem)
    raise EngineError(f"no engine g4sim models runs {w.spec.name} {get_quant(w.quant).name} (KV {w.kv_dtype}) on "
                      f"{gpus} x {device.name}: " + "; ".join(reasons))


def engines_that_run(w: Workload, device, gpus: int = 1) -> list[str]:
    """Every engine that can run ``w`` on ``gpus`` x ``device`` (for refusals that name what does)."""
    return [name for name, cls in ENGINES.items() if cls().compatibility(w, device, gpus) is None]
