"""Check g4sim's vLLM KV-cache arithmetic against vLLM's own code, per release; write the fixtures.

For every Gemma 4 variant x KV dtype (bf16, fp8) x tensor parallelism (1, 2) x release g4sim
reproduces (``g4sim.engines.vllm.RELEASES``), g4sim builds the per-layer KV specs of one TP rank
(``kv_layer_specs``: cache-owning layers, heads per rank, block size per layer type).  The same specs
are then handed to vLLM's own KV-cache utilities, imported from the release's wheel, in the order
the engine core calls them (``vllm/v1/engine/core.py`` ``EngineCore._initialize_kv_caches``):

* 0.19.1 / 0.20.0: ``kv_cache_utils.get_kv_cache_configs`` (grouping, page-size unification,
  ``num_blocks``; it logs "GPU KV cache size" / "Maximum concurrency" through
  ``_report_kv_cache_config``), ``generate_scheduler_kv_cache_config``,
  ``get_max_concurrency_for_kv_cache_config``;
* 0.33.0: ``attention.backends.utils.resolve_kv_cache_layout`` (FLASH_ATTN's layouts),
  ``kv_cache_planning.get_global_kv_cache_groups`` and ``get_kv_cache_configs``,
  ``kv_cache_utils.generate_scheduler_kv_cache_config`` and ``update_kv_cache_capacity`` (which logs),
  ``get_max_concurrency_for_kv_cache_config``; the sliding layers' block size comes from vLLM's
  ``_largest_kernel_block_within`` with ``FlashAttentionBackend``.

Inputs per row: the layer specs, ``max_model_len``, ``max_num_batched_tokens``, ``--block-size`` and
an available-memory figure (what ``determine_available_memory`` would return: fixed here, so the
comparison covers exactly the deterministic part).  Outputs: the groups (layers, block size, page
bytes, blocks one request takes), ``num_blocks``, bytes per block, max concurrency, and the log lines
vLLM printed, captured from its logger.  ``tests/test_vllm_versions.py`` asserts g4sim's figures equal
them.  The ``VllmConfig`` handed to vLLM is a stub holding only the fields these functions read (a
real one needs a model directory, a platform and a device); ``max_in_flight_tokens`` and
``max_concurrent_batches`` are ``VllmConfig``'s own properties bound to it, with async scheduling
on, as ``VllmConfig.__post_init__`` sets it for ``vllm serve``.

Setup (a separate venv; nothing is installed into g4sim's)::

    python3 -m venv /tmp/vllmenv
    echo /path/to/g4sim/.venv/lib/python3.11/site-packages > /tmp/vllmenv/lib/python3.11/site-packages/zz.pth
    /tmp/vllmenv/bin/pip install cbor2 pyzmq aiohttp openai openai-harmony pillow pybase64 cachetools msgspec \
        cloudpickle uvloop py-cpuinfo prometheus_client xgrammar fastapi partial_json_parser llguidance einops
    python scripts/vllm_kv_check.py --vllm-python /tmp/vllmenv/bin/python --wheels /tmp/vw

(torch comes from g4sim's venv through the .pth line; the wheels are fetched with
``pip download --no-deps vllm==X`` and unpacked into ``WHEELS/fullX`` when missing.  vLLM's compiled
extensions do not load on a CPU machine; the KV-cache utilities do not need them.)
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "vllm"
GiB = 2**30

# The grid: per variant a max_model_len (one long, one short enough that the sliding reservation is
# capped by it, one not a multiple of 16); per TP size an available-memory figure and max_num_batched_tokens.
CTX = {"e2b": 131072, "e4b": 8192, "26b-a4b": 262144, "31b": 2000}
TP = {1: (20 * GiB + 1_234_567, 2048), 2: (9 * GiB + 7_654_321, 8192)}
KV_DTYPES = ("bf16", "fp8")
BLOCK_SIZE = 16
_MARK = "G4SIM-VLLM-RESULT "


def rows_for(version: str) -> list[dict]:
    """g4sim's inputs and figures for every row of one release (run in g4sim's venv)."""
    from g4sim.engines.vllm import VllmEngine, get_release, kv_layer_specs
    from g4sim.spec import get_variant

    release = get_release(version)
    rows = []
    for model, ctx in CTX.items():
        t = get_variant(model).text
        for kv in KV_DTYPES:
            for tp, (available, mnbt) in TP.items():
                eng = VllmEngine(vllm_version=version, max_num_batched_tokens=mnbt, block_size=BLOCK_SIZE)
                specs = kv_layer_specs(t, kv, tp, BLOCK_SIZE, release)
                plan = eng.kv_plan(t, kv, tp)
                blocks = plan.num_blocks(available)
                rows.append({
                    "model": model, "kv_dtype": kv, "tp": tp, "max_model_len": ctx, "max_num_batched_tokens": mnbt,
                    "block_size": BLOCK_SIZE, "available_bytes": available,
                    "layers": [{"layer": s.layer, "sliding_window": s.sliding_window, "block_size": s.block_size,
                                "num_kv_heads": s.num_kv_heads, "head_size": s.head_size,
                                "dtype_bytes": s.dtype_bytes} for s in specs],
                    "g4sim": {
                        "groups": [{"layers": [s.layer for s in g.layers], "block_size": g.spec.block_size,
                                    "page_size_bytes": g.spec.page_bytes,
                                    "blocks_per_request": g.blocks_per_request(ctx, plan.in_flight_tokens(mnbt))}
                                   for g in plan.groups],
                        "num_blocks": blocks, "bytes_per_block": plan.bytes_per_block,
                        "max_concurrency": plan.max_concurrency(blocks, ctx, mnbt),
                        "kv_cache_tokens": plan.kv_cache_tokens(blocks, ctx, mnbt),
                    },
                })
    return rows


# ---- the worker: runs under the vLLM venv, imports only vLLM (and torch) ----------------------

def worker(version: str) -> None:
    import dataclasses
    import logging
    import types

    import torch

    captured: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record.getMessage())

    import vllm
    import vllm.logger as vlog
    from vllm.platforms import current_platform
    from vllm.config import VllmConfig
    from vllm.v1 import kv_cache_interface as ki

    logging.getLogger("vllm").setLevel(logging.INFO)
    logging.getLogger("vllm").addHandler(Capture())  # after vLLM's own logging config is in place

    new = version == "0.33.0"
    if new:
        from vllm.model_executor.layers.attention.attention import _largest_kernel_block_within
        from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend
        from vllm.v1.attention.backends.utils import get_supported_kv_cache_layouts, resolve_kv_cache_layout
        from vllm.v1.core import kv_cache_planning as planning
        from vllm.v1.core import kv_cache_utils as utils
    else:
        from vllm.v1.core import kv_cache_utils as utils
        planning = utils
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (ki.FullAttentionSpec, ki.SlidingWindowSpec)}
    quant_mode = getattr(ki, "get_kv_quant_mode", None)

    class Config:  # VllmConfig's own properties, on a stub holding only what the KV-cache code reads
        max_in_flight_tokens = getattr(VllmConfig, "max_in_flight_tokens", None)
        max_concurrent_batches = getattr(VllmConfig, "max_concurrent_batches", None)
        use_v2_model_runner = False
        num_prefill_lookahead_tokens = 0
        speculative_config = None
        kv_transfer_config = None

    def config(row: dict):
        from vllm.config import CacheConfig

        c = Config()
        c.model_config = types.SimpleNamespace(max_model_len=row["max_model_len"],
                                               original_max_model_len=row["max_model_len"],
                                               supports_kv_cache_grouping=False, use_mla=False)
        c.scheduler_config = types.SimpleNamespace(max_num_batched_tokens=row["max_num_batched_tokens"],
                                                   disable_hybrid_kv_cache_manager=False, async_scheduling=True)
        c.parallel_config = types.SimpleNamespace(decode_context_parallel_size=1, prefill_context_parallel_size=1,
                                                  tensor_parallel_size=row["tp"], pipeline_parallel_size=1)
        c.cache_config = CacheConfig(block_size=row["block_size"], gpu_memory_utilization=0.9)
        c.attention_config = types.SimpleNamespace(hisparse_config=None)
        c.device_config = types.SimpleNamespace(device_type="cuda")
        return c

    def specs(row: dict) -> dict:
        out = {}
        kv = "fp8" if row["kv_dtype"] == "fp8" else "auto"
        dtype = torch.uint8 if kv == "fp8" else torch.bfloat16  # STR_DTYPE_TO_TORCH_DTYPE["fp8"] is uint8
        for s in row["layers"]:
            cls = ki.FullAttentionSpec if s["sliding_window"] is None else ki.SlidingWindowSpec
            kw = dict(block_size=s["block_size"], num_kv_heads=s["num_kv_heads"], head_size=s["head_size"], dtype=dtype)
            if "kv_quant_mode" in fields[cls] and quant_mode is not None:
                kw["kv_quant_mode"] = quant_mode(kv)
            if "head_size_v" in fields[cls]:  # as Attention.get_kv_cache_spec passes it (0.19.1: full layers only)
                kw["head_size_v"] = s["head_size"]
            name = f"language_model.model.layers.{s['layer']}.self_attn.attn"
            if s["sliding_window"] is None:
                out[name] = ki.FullAttentionSpec(**kw)
            else:
                if new:  # Attention.get_kv_cache_spec: the sliding block vLLM picks itself
                    probe = ki.SlidingWindowSpec(**{**kw, "block_size": 1}, sliding_window=s["sliding_window"])
                    per_token = probe.real_page_size_bytes
                    kw["block_size"] = _largest_kernel_block_within(FlashAttentionBackend, per_token,
                                                                    per_token * row["block_size"],
                                                                    row["block_size"], probe)
                out[name] = ki.SlidingWindowSpec(**kw, sliding_window=s["sliding_window"])
        return out

    layer_of = lambda name: int(name.split(".layers.")[1].split(".")[0])  # noqa: E731
    results = []
    for row in json.load(sys.stdin):
        captured.clear()
        for fn in ("_print_info_once", "_print_warning_once", "_print_debug_once"):
            if hasattr(getattr(vlog, fn, None), "cache_clear"):
                getattr(vlog, fn).cache_clear()
        cfg = config(row)
        per_worker = [specs(row) for _ in range(row["tp"])]
        out: dict = {"sliding_block_size": next((s.block_size for s in per_worker[0].values()
                                                 if isinstance(s, ki.SlidingWindowSpec)), None)}
        try:
            avail = [row["available_bytes"]] * row["tp"]
            if new:
                layout = resolve_kv_cache_layout(
                    cfg, [[x.name for x in get_supported_kv_cache_layouts([FlashAttentionBackend])]],
                    [s for w in per_worker for s in w.values()])
                out["kv_cache_layout"] = layout.name
                groups = planning.get_global_kv_cache_groups(cfg, per_worker)
                configs = planning.get_kv_cache_configs(cfg, per_worker, avail, groups)
            else:
                configs = utils.get_kv_cache_configs(cfg, per_worker, avail)
            sched = utils.generate_scheduler_kv_cache_config(configs)
            if new:
                utils.update_kv_cache_capacity(cfg, sched)
            conc = utils.get_max_concurrency_for_kv_cache_config(cfg, configs[0])
            inflight = cfg.max_in_flight_tokens if new else row["max_num_batched_tokens"]
            out.update({
                "groups": [{"layers": [layer_of(n) for n in g.layer_names], "type": type(g.kv_cache_spec).__name__,
                            "block_size": g.kv_cache_spec.block_size, "page_size_bytes": g.kv_cache_spec.page_size_bytes,
                            "max_memory_usage_bytes": g.kv_cache_spec.max_memory_usage_bytes(cfg),
                            "blocks_per_request": -(-g.kv_cache_spec.max_memory_usage_bytes(cfg)
                                                    // g.kv_cache_spec.page_size_bytes)}
                           for g in sched.kv_cache_groups],
                "num_blocks": configs[0].num_blocks,
                "bytes_per_block": sum(x.size for x in configs[0].kv_cache_tensors) // configs[0].num_blocks
                if not new else next(iter({x.size for x in configs[0].kv_cache_tensors})) // configs[0].num_blocks,
                "max_concurrency": conc, "in_flight_tokens": inflight,
                "log": [m for m in captured if "KV cache size" in m or "Maximum concurrency" in m],
            })
        except Exception as exc:  # vLLM refusing a row is an output too
            import traceback

            out["error"] = f"{type(exc).__name__}: {exc}"
            print(traceback.format_exc(), file=sys.stderr)
        results.append(out)
    imported = {"torch": torch.__version__, "python": sys.version.split()[0], "platform": type(current_platform).__name__,
                "modules": sorted(m for m in sys.modules if m.startswith("vllm.v1.core.kv_cache")
                                  or m == "vllm.v1.kv_cache_interface")}
    print(_MARK + json.dumps({"vllm_version": vllm.__version__, "imported": imported, "results": results}))


# ---- the driver: runs in g4sim's venv ------------------------------------------------------------

def unpacked(version: str, wheels: Path) -> Path:
    """WHEELS/fullX (the unpacked wheel), fetched and unpacked when missing; and the wheel file."""
    target = wheels / f"full{version}"
    wheel = next(iter(sorted(wheels.glob(f"vllm-{version}-*.whl"))), None)
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", f"vllm=={version}", "-d", str(wheels)],
                       check=True)
        wheel = next(iter(sorted(wheels.glob(f"vllm-{version}-*.whl"))))
    if not (target / "vllm").is_dir():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(target)
    return target


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm-python", default="/tmp/vllmenv/bin/python", help="python of the venv that imports vLLM")
    ap.add_argument("--wheels", type=Path, default=Path("/tmp/vw"), help="where vllm wheels are (or go)")
    ap.add_argument("--versions", nargs="*", default=None, help="releases (default: every one g4sim reproduces)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker)
        return
    from g4sim.engines.vllm import RELEASES

    OUT.mkdir(parents=True, exist_ok=True)
    for version in a.versions or list(RELEASES):
        rows = rows_for(version)
        target = unpacked(version, a.wheels)
        wheel = next(iter(sorted(a.wheels.glob(f"vllm-{version}-*.whl"))))
        proc = subprocess.run([a.vllm_python, __file__, "--worker", version], input=json.dumps(rows), text=True,
                              capture_output=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin",
                                                        "VLLM_LOGGING_LEVEL": "INFO", "HOME": "/tmp"})
        if proc.returncode:
            sys.exit(f"vLLM {version} worker failed:\n{proc.stderr[-4000:]}")
        got = json.loads(next(line for line in reversed(proc.stdout.splitlines()) if line.startswith(_MARK))[len(_MARK):])
        assert got["vllm_version"] == version, got["vllm_version"]
        for row, res in zip(rows, got["results"]):
            row["vllm"] = res
        doc = {"vllm_version": version, "wheel": wheel.name, "wheel_sha256": sha256(wheel),
               "imported": got["imported"], "date": datetime.date.today().isoformat(),
               "command": "python scripts/vllm_kv_check.py", "generated_by": "scripts/vllm_kv_check.py",
               "note": "inputs: layers (g4sim's specs per TP rank), max_model_len, max_num_batched_tokens, block_size, "
                       "available_bytes; vllm: what vLLM's own KV-cache utilities returned and logged for them; "
                       "g4sim: g4sim's figures when the fixture was written (the tests recompute them)",
               "rows": rows}
        path = OUT / f"kv_{version}.json"
        head = json.dumps({k: x for k, x in doc.items() if k != "rows"}, indent=1)[:-2]
        path.write_text(head + ',\n "rows": [\n' + ",\n".join(json.dumps(r) for r in rows) + "\n ]\n}\n")
        bad = [(r["model"], r["kv_dtype"], r["tp"]) for r in rows if _differs(r)]
        print(f"{path.relative_to(ROOT)}: {len(rows)} rows, {len(bad)} differ from vLLM {bad}")


def _differs(row: dict) -> bool:
    g, v = row["g4sim"], row["vllm"]
    if "error" in v:
        return True
    return (g["num_blocks"] != v["num_blocks"] or g["bytes_per_block"] != v["bytes_per_block"]
            or f"{g['max_concurrency']:.2f}" != f"{v['max_concurrency']:.2f}"
            or [(x["layers"], x["block_size"], x["page_size_bytes"], x["blocks_per_request"]) for x in g["groups"]]
            != [(x["layers"], x["block_size"], x["page_size_bytes"], x["blocks_per_request"]) for x in v["groups"]])


if __name__ == "__main__":
    main()
