"""The command line: output, --json schema, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from g4sim.cli import main


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_plan_prints_breakdown_and_verdict(capsys):
    code, out, _ = run(["plan", "--model", "26b-a4b", "--ctx", "256k", "--gpu", "rtx4090", "--quant", "q4_k_m"], capsys)
    assert code == 0
    for needle in ("Weights", "KV cache", "Activations", "Overhead", "experts", "full layers", "Budget", "Margin",
                   "Largest context that fits", "Largest batch", "computed"):
        assert needle in out
    assert "FIT" in out


def test_plan_json_is_stable_and_consistent(capsys):
    code, out, _ = run(["plan", "-m", "31b", "--ctx", "32k", "--gpu", "h100-sxm", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"g4sim_version", "provenance", "request", "params", "memory", "capacity", "verdict", "fits",
                         "headroom_bytes", "max_context_tokens", "max_batch", "layouts", "throughput", "launch_command"}
    mem = data["memory"]
    assert mem["accelerator_total_bytes"] == sum(t["bytes"] for t in mem["terms"] if t["location"] == "accelerator")
    assert mem["accelerator_total_bytes"] == sum(mem["by_category_bytes"].values())
    assert mem["needed_bytes"] == mem["accelerator_total_bytes"]  # a discrete GPU: host memory is not its budget
    assert data["headroom_bytes"] == data["capacity"]["budget_bytes"] - mem["needed_bytes"]
    assert data["request"]["ctx_tokens"] == 32768 and data["params"]["total"] == 30_697_345_280
    assert data["fits"] is True and data["max_batch"] >= 1


@pytest.mark.parametrize("args,needle", [
    (["plan", "--model", "26b-a4x"], "did you mean '26b-a4b'"),
    (["plan", "--model", "e2b", "--gpu", "rtx4009"], "did you mean 'rtx4090'"),
    (["plan", "--model", "e2b", "--quant", "q4_k_x"], "valid:"),
    (["plan", "--model", "e2b", "--engine", "tgi"], "unknown engine 'tgi'"),
    (["plan", "--model", "e2b", "--kv-dtype", "int3"], "unknown KV-cache dtype"),
    (["plan", "--model", "e2b", "--ctx", "-5"], "'-5'"),
    (["plan", "--model", "e2b", "--ctx", "12q"], "'12q'"),
    (["plan", "--model", "e2b", "--batch", "0"], "--batch"),
    (["plan", "--model", "e2b", "--ctx", "256k"], "--allow-beyond-max"),
    (["plan", "--model", "26b-a4b", "--with-audio"], "no audio tower"),
    (["plan", "--config", "/nonexistent/config.json"], "no config file"),
])
def test_bad_input_is_one_line_exit_2(args, needle, capsys):
    code, out, err = run(args, capsys)
    assert code == 2
    assert needle in err and err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err + out


def test_beyond_max_when_allowed(capsys):
    code, out, _ = run(["plan", "-m", "e2b", "--ctx", "256k", "--allow-beyond-max", "--gpu", "h100-sxm", "--json"], capsys)
    assert code == 0 and json.loads(out)["request"]["ctx_tokens"] == 262144
    # the largest-context search goes past the model's maximum too (only an engine's own limit stops it)
    assert json.loads(out)["max_context_tokens"] > 131072


def test_plan_from_config_json(tmp_path, capsys):
    from conftest import hf_config
    from g4sim.spec import get_variant

    (tmp_path / "config.json").write_text(json.dumps(hf_config(get_variant("e4b")).to_dict()))
    code, out, _ = run(["plan", "--config", str(tmp_path), "--ctx", "32k", "--json"], capsys)
    assert code == 0 and json.loads(out)["params"]["total"] == 7_463_013_376


def test_models_and_gpus_list(capsys):
    code, out, _ = run(["models"], capsys)
    assert code == 0 and "26b-a4b" in out
    code, out, _ = run(["models", "--json"], capsys)
    assert {m["model"]: m["params_active"] for m in json.loads(out)}["26b-a4b"] == 3_822_530_560
    code, out, _ = run(["gpus", "--json"], capsys)
    assert code == 0 and {"rtx4090", "h100-sxm", "rpi5-8gb"} <= {g["name"] for g in json.loads(out)}


def test_plan_path_does_not_import_torch():
    code = ("import sys; from g4sim.cli import main\n"
            "try:\n    main(['plan','--model','26b-a4b','--ctx','256k','--gpu','rtx4090','--json'])\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "bad = [m for m in ('torch', 'pandas', 'plotly', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_gpus_shows_every_profile_name_whole_at_80_columns():
    from g4sim.hardware import load_profiles

    out = subprocess.run([sys.executable, "-m", "g4sim", "gpus"], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "COLUMNS": "80"}).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    names = {line.split()[0] for line in out.splitlines()[4:] if line.strip() and not line.startswith("  ")}
    assert set(load_profiles()) <= names, set(load_profiles()) - names


def test_calibrate_writes_only_when_asked(capsys):
    from pathlib import Path

    from g4sim.hardware import get_profile

    path = Path(get_profile("ci-cpu-2core").path)
    before = path.read_bytes()
    code, out, err = run(["calibrate", "--device-profile", "ci-cpu-2core"], capsys)
    assert code == 0 and "dry run: nothing written" in err and path.read_bytes() == before
