"""The measurement store: one tidy CSV per device and machine under reports/measurements/, one row per run.

A CPU measurement belongs to the CPU that made it: its file is named for the hardware profile *and*
the detected CPU (model, cores, the instruction sets that change kernels: AVX2, AVX-512, AMX), so a
run on another machine never lands in this machine's tracked file (a file named for the profile alone,
``<profile>.csv``, holds rows from before files carried the CPU's name; ci-cpu-2core's was retired by
split v4 when g4sim's own rows were measured again).

Rows are appended atomically (the whole file is rewritten to a temporary file and renamed over the
old one), so an interrupted sweep loses no completed row and never leaves a torn file.  Every row
carries its provenance: device, versions, g4sim commit, date, the exact command, threads.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STORE_DIR = Path(__file__).resolve().parents[2] / "reports" / "measurements"


def git_commit() -> tuple[str, bool]:
    """(commit, dirty) of the g4sim checkout, ('unknown', False) outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers: a VM may name only "AMD EPYC", which Zen 4 and Zen 5
    machines share, and a row must never be filed under another machine (the numbers tell them apart)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    m = re.search(r"model name\s*:\s*(.+)", text)
    name = m.group(1).strip() if m else platform.processor()
    family, model = re.search(r"cpu family\s*:\s*(\d+)", text), re.search(r"^model\s*:\s*(\d+)", text, re.M)
    return f"{name} (family {family.group(1)} model {model.group(1)})" if family and model else name


_KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")  # what ggml / torch dispatch on


def cpu_flags() -> tuple[str, ...]:
    """The instruction-set flags that change which kernels run (read from /proc/cpuinfo, never assumed)."""
    try:
        m = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return ()
    present = set(m.group(1).split()) if m else set()
    return tuple(f for f in _KERNEL_FLAGS if f in present)


def cpu_slug() -> str:
    """A file-name-safe name for this CPU: model, cores and kernel flags (amd-epyc-2c-avx2)."""
    model = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$", "", cpu_model().lower())
    model = re.sub(r"[^a-z0-9]+", "-", model).strip("-") or "cpu"
    flags = [f.replace("_", "") for f in cpu_flags() if f in ("avx2", "avx512f", "amx_tile")]
    return "-".join([model, f"{os.cpu_count() or 0}c", *flags])


def provenance(device: str, command: list[str] | None = None) -> dict[str, Any]:
    import torch

    commit, dirty = git_commit()
    row: dict[str, Any] = {
        "device": device, "cpu_model": cpu_model(), "cpu_cores": os.cpu_count() or 0,
        "cpu_flags": " ".join(cpu_flags()), "gpu_name": "", "driver_version": "", "cuda_version": "",
        "torch_version": torch.__version__, "python_version": platform.python_version(),
        "g4sim_commit": commit, "g4sim_dirty": dirty,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(command or sys.argv), "threads": torch.get_num_threads(),
        # what else ran: a 1-minute load above the threads used means the timings shared the cores
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else "",
    }
    if torch.cuda.is_available():
        row["gpu_name"] = torch.cuda.get_device_name()
        row["cuda_version"] = torch.version.cuda or ""
        try:
            import pynvml

            pynvml.nvmlInit()
            row["driver_version"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # NVML absent or not permitted: the row says so by leaving it empty
            pass
    return row


def store_path(device: str, store: Path | None = None, torch_device: str = "cpu") -> Path:
    """Where a run's rows go: ``<profile>__<this CPU>.csv`` for CPU runs, ``<profile>.csv`` for GPU runs."""
    name = f"{device}__{cpu_slug()}" if torch_device == "cpu" else device
    return (store or STORE_DIR) / f"{name}.csv"


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row, atomically: readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    columns: list[str] = []
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    columns += [k for k in row if k not in columns]
    rows.append(row)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # a measurement file is for everyone who reads the repository
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_store(store: Path | None = None):
    """Every row of every device file, as one pandas DataFrame."""
    import pandas as pd

    files = sorted((store or STORE_DIR).glob("*.csv"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
