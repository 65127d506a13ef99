"""mlx-lm on Apple silicon (``mlx_lm.server`` / ``mlx_lm.generate``): MLX-quantized checkpoints in unified memory.

Read at ml-explore/mlx-lm@d78bf58e (2026-08-22; ``_version.py`` 0.32.0, v0.31.3 + 43).

* ``mlx_lm/models/gemma4_text.py`` ``Model.make_cache``: one cache per layer below the first
  KV-shared layer -- ``KVCache()`` on full-attention layers, ``RotatingKVCache(max_size=
  sliding_window, keep=0)`` on sliding ones; KV-shared layers get none (they read the shared K/V).
  ``Attention``: on ``attention_k_eq_v`` layers ``values = keys`` before ``v_norm``, and the cache
  stores K and V separately (nothing saved).  The cache holds the activation dtype (bf16 for the
  bf16 and the quantized checkpoints, whose scales are bf16).
* ``mlx_lm/models/cache.py`` ``make_prompt_cache`` defers to ``model.make_cache()``, so
  ``--max-kv-size`` does not bound Gemma 4's cache (it is only used for models without
  ``make_cache``).  ``KVCache.update_and_fetch`` grows in ``step = 256`` cells: a full layer holds
  ``pad256(tokens)`` cells.  ``RotatingKVCache``: a multi-token chunk is concatenated onto the last
  ``max_size - 1`` cells (``_update_concat``: "the largest size is self.max_size + S - 1"), then a
  single token trims it to ``max_size`` (``_update_in_place``); under the window it grows by 256.
  So a sliding layer peaks at ``window - 1 + prefill_step_size`` cells while a long prompt is
  read, ``min(pad256(tokens), window)`` below the window.  The planned context is the prompt plus
  what is generated; the peak is taken for a prompt that fills it (an upper bound by 2 cells).
* ``mlx_lm/generate.py`` ``generate_step``: the prompt is processed in chunks of
  ``prefill_step_size`` (2048; ``mlx_lm/server.py --prefill-step-size`` default 2048), only the
  caches are evaluated, logits for the last position only.
* ``mlx_lm/server.py``: ``--decode-concurrency`` (32) sequences decode in one batch (the batched
  caches pad every sequence to the longest); finished requests' caches are kept as deep copies
  (``LRUPromptCache``, ``--prompt-cache-size`` 10) unless ``--prompt-cache-bytes`` bounds them
  (``trim_to(total - active)``): the printed command sets it to the planned KV cache.
* ``mlx_lm/models/gemma4.py`` ``sanitize`` drops the vision and audio towers: mlx-lm serves text
  (images and audio: mlx-vlm, not modelled).  Weight formats: ``g4sim.analytic.quant`` (family
  ``mlx``, ``mlx_lm.convert -q``) and the bf16 checkpoints.
* The GPU working set: ``mlx_lm/server.py`` (and ``generate.py`` ``wired_limit``) call
  ``mx.set_wired_limit(max_recommended_working_set_size)``, Metal's recommendedMaxWorkingSetSize:
  the hardware profile's ``usable_memory_fraction`` (75 % of RAM from 48 GB up, cited there).
  ``sudo sysctl iogpu.wired_limit_mb=N`` (README "Large models") replaces it: with the setting
  ``wired_limit_mb`` the budget is N MiB (capped at the RAM), and a limit that leaves macOS less
  than the profile's cited OS reserve is refused.
Published repositories: mlx-community/gemma-4-{e2b,e4b,26b-a4b,31b}-it-{4bit,8bit,bf16}.  Apple
silicon only; one Mac (mlx's distributed mode is not modelled).  No torch import.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, ClassVar

from g4sim.analytic.components import Component, Location
from g4sim.analytic.memory import MemoryTerm, kv_layer_bytes
from g4sim.analytic.quant import get_quant
from g4sim.engines.base import (
    Caps, Engine, EngineError, Option, Parsed, Workload, flag_values, model_from_name, to_int,
)
from g4sim.spec import TextSpec
from g4sim.units import MiB

STEP = 256  # mlx_lm/models/cache.py KVCache.step / RotatingKVCache.step
_SIZE = {"e2b": "e2b", "e4b": "e4b", "26b-a4b": "26b-a4b", "31b": "31b"}
_SUFFIX = {"mlx-4bit-g64": "4bit", "mlx-8bit-g64": "8bit", "bf16": "bf16"}
_NAME_FORMAT = (("qat-4bit", "mlx-4bit-g64"), ("4bit", "mlx-4bit-g64"), ("8bit", "mlx-8bit-g64"), ("bf16", "bf16"))
_OTHER_QUANTS = ("3bit", "5bit", "6bit", "mxfp4", "nvfp4", "mxfp8", "dwq", "fp16", "2bit")
_CONTEXT = re.compile(r"#\s*context:\s*([0-9]+)\s+tokens")
_SERVER_FLAGS = {"--model": "model", "--decode-concurrency": "batch", "--prompt-concurrency": "prompt_batch",
                 "--prefill-step-size": "step", "--prompt-cache-bytes": "cache_bytes", "--prompt-cache-size": "cache_n",
                 "--host": "-", "--port": "-", "--max-tokens": "-", "--temp": "-", "--top-p": "-", "--top-k": "-",
                 "--min-p": "-", "--chat-template": "-", "--chat-template-args": "-", "--log-level": "-",
                 "--allowed-origins": "-", "--trust-remote-code": "-", "--use-default-chat-template": "-"}
_GENERATE_FLAGS = {"--model": "model", "--max-kv-size": "max_kv", "--prompt": "-", "-p": "-", "--max-tokens": "-",
                   "-m": "-", "--temp": "-", "--top-p": "-", "--top-k": "-", "--min-p": "-", "--seed": "-",
                   "--system-prompt": "-", "--verbose": "-", "--ignore-chat-template": "-",
                   "--use-default-chat-template": "-", "--trust-remote-code": "-", "--extra-eos-token": "-"}
_SWITCHES = {"--trust-remote-code", "--use-default-chat-template", "--ignore-chat-template"}


def pad(n: int, to: int = STEP) -> int:
    return -(-n // to) * to


def repo_for(spec, quant: str) -> str:
    return f"mlx-community/gemma-4-{_SIZE.get(spec.name, spec.name)}-it-{_SUFFIX[get_quant(quant).name]}"


def format_from_repo(repo: str) -> str:
    """The weight format a checkpoint's name says (an HF repo without a quantization suffix is bf16)."""
    low = repo.lower()
    for needle in _OTHER_QUANTS:
        if low.endswith("-" + needle) or f"-{needle}-" in low:
            raise EngineError(f"{repo}: g4sim plans mlx-lm's 4bit and 8bit (affine, group 64) and bf16 checkpoints, "
                              f"not {needle}")
    for needle, fmt in _NAME_FORMAT:
        if low.endswith("-" + needle):
            return fmt
    return "bf16"


@dataclass(frozen=True)
class MlxEngine(Engine):
    name: ClassVar[str] = "mlx"
    description: ClassVar[str] = "mlx-lm on Apple silicon: rotating window cache, 256-cell growth, MLX quantization"
    caps: ClassVar[Caps] = Caps(weight_formats=frozenset(_SUFFIX), kv_dtypes=frozenset({"bf16"}),
                                device_kinds=frozenset({"soc"}), vendors=frozenset({"apple"}))
    options: ClassVar[tuple[Option, ...]] = (
        Option("prefill_step_size", ("--prefill-step-size",), "prompt tokens per forward pass",
               "mlx_lm/server.py --prefill-step-size default 2048 (generate.py generate_step prefill_step_size=2048)"),
        Option("wired_limit_mb", ("iogpu.wired_limit_mb",), "macOS GPU wired-memory limit in MiB (sudo sysctl)",
               "macOS default (None): Metal's recommendedMaxWorkingSetSize, the profile's usable_memory_fraction, "
               "which mlx_lm sets with mx.set_wired_limit (server.py main)"),
    )
    command_names: ClassVar[tuple[str, ...]] = ("mlx_lm.server", "mlx_lm.generate", "mlx_lm.chat")
    file_kinds: ClassVar[frozenset[str]] = frozenset()  # g4sim plans the published checkpoints by name
    prefill_step_size: int = 2048
    wired_limit_mb: int | None = None

    def __post_init__(self) -> None:
        if self.prefill_step_size < 1:
            raise EngineError(f"--prefill-step-size {self.prefill_step_size} must be a positive integer")
        if self.wired_limit_mb is not None and self.wired_limit_mb < 1:
            raise EngineError(f"iogpu.wired_limit_mb={self.wired_limit_mb} must be a positive number of MiB")

    # ---- what it can run -------------------------------------------------------------
    def compatibility(self, w: Workload, device, gpus: int) -> str | None:
        reason = super().compatibility(w, device, gpus)
        if reason is not None:
            if device.vendor != "apple":
                return f"mlx runs on Apple silicon only (Metal); {device.name} is {device.kind} ({device.vendor})"
            return reason
        if w.vision or w.audio:
            return ("mlx-lm serves Gemma 4's text decoder only (models/gemma4.py drops the towers); "
                    "images and audio: mlx-vlm")
        if self.wired_limit_mb is not None:
            keep = device.reserve.driver_bytes + device.reserve.os_bytes
            if self.wired_limit_mb * MiB > device.memory_bytes - keep:
                return (f"iogpu.wired_limit_mb={self.wired_limit_mb} leaves macOS less than its "
                        f"{keep // MiB} MiB ({device.name} profile's reserve); at most "
                        f"{(device.memory_bytes - keep) // MiB}")
        return None

    def budget_bytes(self, usable_device_bytes: int, device_memory_bytes: int) -> int:
        if self.wired_limit_mb is None:
            return usable_device_bytes  # the profile's usable_memory_fraction (recommendedMaxWorkingSetSize)
        return min(self.wired_limit_mb * MiB, device_memory_bytes)

    # ---- KV cache ----------------------------------------------------------------------
    def kv_cells(self, t: TextSpec, layer: int, ctx: int) -> int:
        if t.is_sliding(layer):
            w = t.sliding_window
            return min(pad(ctx), w) if ctx <= w else min(ctx, w - 1 + self.prefill_step_size)
        return pad(ctx)

    def kv_terms(self, t: TextSpec, *, ctx: int, batch: int, kv_dtype: str) -> list[MemoryTerm]:
        out = []
        for component, sliding in ((Component.KV_SLIDING, True), (Component.KV_FULL, False)):
            layers = [i for i in t.cache_layers if t.is_sliding(i) == sliding]
            cells = self.kv_cells(t, layers[0], ctx) if layers else 0
            total = sum(kv_layer_bytes(t, i, cells, kv_dtype, batch) for i in layers)
            rule = (f"RotatingKVCache(window {t.sliding_window}): window - 1 + prefill step {self.prefill_step_size} "
                    "while a prompt is read" if sliding else "KVCache: grows in steps of 256 cells")
            out.append(MemoryTerm(component, total, Location.ACCELERATOR,
                                  f"{len(layers)} layers x {batch} seq x {cells} cells ({rule}) x 2 (K,V) x kv_heads "
                                  f"x head_dim x {kv_dtype}"))
        return out

    def chunk_tokens(self, ctx: int) -> int:
        return self.prefill_step_size

    # ---- commands ---------------------------------------------------------------------
    def launch_command(self, w: Workload, gpus: int, device) -> str:
        kv = sum(x.bytes for x in self.kv_terms(w.spec.text, ctx=w.ctx, batch=w.batch, kv_dtype=w.kv_dtype))
        lines = [f"sudo sysctl iogpu.wired_limit_mb={self.wired_limit_mb}"] if self.wired_limit_mb else []
        lines.append(f"mlx_lm.server --model {repo_for(w.spec, w.quant)} --decode-concurrency {w.batch} "
                     f"--prompt-concurrency {w.batch} --prefill-step-size {self.prefill_step_size} "
                     f"--prompt-cache-bytes {kv}  # context: {w.ctx} tokens per sequence (prompt + generated)")
        return "\n".join(lines)

    @classmethod
    def recognises(cls, text: str) -> bool:
        return any(_mlx_argv(line) is not None for line in _lines(text))

    @classmethod
    def parse_command(cls, text: str) -> Parsed:
        settings: dict[str, Any] = {}
        found: tuple[str, list[str], str] | None = None
        for line in _lines(text):
            try:
                argv = shlex.split(line, comments=True)
            except ValueError as exc:
                raise EngineError(f"cannot read the command {line!r}: {exc}") from None
            words = [a for a in argv if a not in ("sudo", "-w")]
            if words and words[0] == "sysctl":
                for a in words[1:]:
                    key, _, value = a.partition("=")
                    if key != "iogpu.wired_limit_mb":
                        raise EngineError(f"g4sim reads sysctl iogpu.wired_limit_mb, not {key}")
                    n = to_int("iogpu.wired_limit_mb", value)
                    if n > 0:  # 0 restores macOS's default
                        settings["wired_limit_mb"] = n
                continue
            sub = _mlx_argv(line)
            if sub is not None:
                found = (sub[0], sub[1], line)
                continue
            if argv:
                raise EngineError(f"g4sim reads `sudo sysctl iogpu.wired_limit_mb=N` and an mlx_lm.server / "
                                  f"mlx_lm.generate line, not {line.strip()!r}")
        if found is None:
            raise EngineError("expected `mlx_lm.server --model REPO ...` or `mlx_lm.generate --model REPO ...`")
        tool, args, line = found
        known = _SERVER_FLAGS if tool == "server" else _GENERATE_FLAGS
        v = _flags(args, known, tool)
        if "model" not in v:
            raise EngineError(f"mlx_lm.{tool} needs --model REPO")
        repo = str(v["model"])
        quant = format_from_repo(repo)
        m = _CONTEXT.search(line)
        ctx = int(m.group(1)) if m else (to_int("--max-kv-size", v["max_kv"]) if "max_kv" in v else None)
        batch = to_int("--decode-concurrency", v["batch"]) if "batch" in v else (1 if tool != "server" else None)
        if "step" in v:
            settings["prefill_step_size"] = to_int("--prefill-step-size", v["step"])
        if batch is not None and batch < 1:
            raise EngineError(f"--decode-concurrency {batch} must be 1 or more")
        return Parsed(cls(**settings), model_from_name(repo.rsplit("/", 1)[-1]), quant, "bf16", ctx or None, batch, 1,
                      False)


def _lines(text: str) -> list[str]:
    return [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def _mlx_argv(line: str) -> tuple[str, list[str]] | None:
    """(tool, args) of an mlx_lm.server / generate / chat line (also ``mlx_lm server`` and ``python -m``)."""
    try:
        argv = shlex.split(line, comments=True)
    except ValueError:
        return None
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1].startswith("python") and argv[1] == "-m":
        argv = argv[2:]
    if not argv:
        return None
    head = argv[0].rsplit("/", 1)[-1]
    if head in ("mlx_lm.server", "mlx_lm.generate", "mlx_lm.chat"):
        return head.split(".", 1)[1], argv[1:]
    if head == "mlx_lm" and len(argv) > 1 and argv[1] in ("server", "generate", "chat"):
        return argv[1], argv[2:]
    return None


def _flags(args: list[str], known: dict[str, str], tool: str) -> dict[str, str]:
    values = flag_values(args, known, frozenset(_SWITCHES), frozenset({"--verbose"}), tool=f"mlx_lm.{tool}")
    return {k: v for k, v in values.items() if v is not True}  # switches say nothing g4sim plans
