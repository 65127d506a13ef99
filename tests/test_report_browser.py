"""The report in a real browser: headless Chromium renders every figure with no console errors.

Chromium comes from Debian's `chromium` package; the fixture installs it when missing (as root),
and the test is skipped with the reason only when that is impossible.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from g4sim.cli import main

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def chromium():
    path = shutil.which("chromium")
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=600)
        path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed and cannot be installed here")
    return path


@pytest.mark.slow
def test_report_renders_every_figure_without_console_errors(chromium, tmp_path):
    report = tmp_path / "report.html"
    with pytest.raises(SystemExit) as exc:
        main(["report", "--model", "26b-a4b", "--gpu", "rtx4090,rtx5090,h100-sxm", "--out", str(report)])
    assert exc.value.code == 0
    expected = report.read_text().count('class="plotly-graph-div"')
    profile = tmp_path / "profile"
    dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=15000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=180)
    rendered = len(re.findall(r'class="main-svg"', dom.stdout))
    assert expected >= 4 and rendered >= expected, (expected, rendered)  # each plot draws at least one main-svg
    # every colour drawn in a plot is a colour of its legend, and every legend colour is drawn
    for figure in re.split(r'class="plotly-graph-div[^"]*"', dom.stdout)[1:]:
        at = figure.find('class="legend"')
        legend, plot = (figure[at:], figure[:at]) if at >= 0 else ("", figure)
        legend_colors = set(re.findall(r'class="(?:js-line|js-fill|legendundefined|scatterpts)"[^>]*?'
                                       r'(?:stroke|fill): (rgb\([^)]*\))', legend))
        drawn = (set(re.findall(r'class="js-line"[^>]*?stroke: (rgb\([^)]*\))', plot))
                 | set(re.findall(r'class="point"><path[^>]*?fill: (rgb\([^)]*\))', plot)))
        assert drawn == legend_colors, (drawn - legend_colors, legend_colors - drawn)
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not console_errors, console_errors
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                    "--window-size=1400,3200", f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 50_000
    target = os.environ.get("G4SIM_SCREENSHOT")  # set to refresh docs/report-screenshot.png
    if target:
        shutil.copy(shot, target)
