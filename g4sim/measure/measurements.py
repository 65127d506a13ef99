"""The measurement store: one tidy CSV per device under reports/measurements/, one row per run.

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
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.+)", text)
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def provenance(device: str, command: list[str] | None = None) -> dict[str, Any]:
    import torch

    commit, dirty = git_commit()
    row: dict[str, Any] = {
        "device": device, "cpu_model": cpu_model(), "gpu_name": "", "driver_version": "", "cuda_version": "",
        "torch_version": torch.__version__, "python_version": platform.python_version(),
        "g4sim_commit": commit, "g4sim_dirty": dirty,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(command or sys.argv), "threads": torch.get_num_threads(),
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


def store_path(device: str, store: Path | None = None) -> Path:
    return (store or STORE_DIR) / f"{device}.csv"


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
