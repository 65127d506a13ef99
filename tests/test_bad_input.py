"""Bad input never gives a traceback, a silent wrong answer or a bogus measurement (issue 13).

Every case a new user hit is here; then a hypothesis fuzz test throws random flags, values, config
mutations and paths at the CLI and asserts exit 0 or 2, no traceback, no partial file, bounded time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from g4sim.cli import error_table, main
from g4sim.spec import get_variant


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def one_line_error(code, err, needle=""):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert needle in err, err


@pytest.fixture()
def config_dir(tmp_path):
    """A real config.json (transformers' own serialisation of E4B) to mutate."""
    from conftest import hf_config

    def write(mutate=None, name="cfg"):
        cfg = hf_config(get_variant("e4b")).to_dict()
        if mutate:
            mutate(cfg["text_config"])
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        (d / "config.json").write_text(json.dumps(cfg))
        return str(d)
    return write


# ---- unwritable outputs: one line, exit 2, nothing left behind --------------------------------

@pytest.mark.parametrize("args,needle", [
    (["report", "--model", "e2b", "--gpu", "rtx4090", "--out", "/proc/r.html"], "cannot write in /proc"),
    (["sweep", "--model", "e2b", "--gpu", "l4", "--out", "/proc/sw.csv"], "cannot write in /proc"),
    (["check", "--junit", "/proc/j.xml"], "cannot write in /proc"),
    (["report", "--model", "e2b", "--gpu", "rtx4090", "--out", "rep.pdf"], "give a file ending in .html"),
    (["sweep", "--out", "t.xlsx"], "give a file ending in .csv, .json, .parquet"),
])
def test_unwritable_or_wrong_outputs(args, needle, capsys):
    code, _, err = run(args, capsys)
    one_line_error(code, err, needle)


def test_output_under_a_file_is_refused_and_nothing_is_written(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = run(["report", "--model", "e2b", "--gpu", "rtx4090", "--out", str(blocker / "r.html")], capsys)
    one_line_error(code, err, "is a file, not a folder")
    code, _, err = run(["sweep", "--model", "e2b", "--gpu", "l4", "--out", str(tmp_path)], capsys)
    one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ---- devices that are not there, and profiles that are malformed ------------------------------

def test_gpus_with_a_malformed_profile_is_one_line(tmp_path, monkeypatch, capsys):
    from g4sim import hardware

    (tmp_path / "broken.yaml").write_text("name: broken\nkind: [unclosed\n")
    monkeypatch.setenv("G4SIM_HARDWARE_DIR", str(tmp_path))
    hardware._load_all.cache_clear()
    try:
        code, _, err = run(["gpus"], capsys)
        one_line_error(code, err, "broken.yaml")
    finally:
        monkeypatch.delenv("G4SIM_HARDWARE_DIR")
        hardware._load_all.cache_clear()


@pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None, reason="needs torch")
def test_cuda_that_is_not_there(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(["generate", "--checkpoint", str(tmp_path), "--prompt-ids", "1,2", "--device", "cuda"], capsys)
    one_line_error(code, err, "no CUDA device")
    store = tmp_path / "store"
    code, _, err = run(["profile", "--model", "e2b", "--layers", "5", "--ctx", "64", "--device", "cuda",
                        "--store", str(store)], capsys)
    one_line_error(code, err, "no CUDA device")
    assert not store.exists()  # no row recorded, under any profile


@pytest.mark.parametrize("args, needle", [
    (["--quant", "int8"], "unknown GGUF format 'int8'; valid: bf16, fp16"),
    (["--batch", "2"], "--batch 2: --impl llamacpp measures one sequence"),
    (["--device", "cuda"], "--impl llamacpp measures llama.cpp's CPU build"),
])
def test_profile_llamacpp_refuses_what_it_cannot_measure(args, needle, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "llama_cpp" else real(name, *a))
    store = tmp_path / "store"
    code, _, err = run(["profile", "--impl", "llamacpp", "--model", "e2b", "--layers", "5", "--ctx", "64",
                        "--store", str(store), *args], capsys)
    one_line_error(code, err, needle)
    assert not store.exists()


def test_profile_llamacpp_without_llama_cpp_says_how_to_build_it(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    code, _, err = run(["profile", "--impl", "llamacpp", "--model", "e2b", "--ctx", "64", "--store",
                        str(tmp_path / "s")], capsys)
    one_line_error(code, err, "scripts/llamacpp_quantize_check.py --install")


def test_a_crashed_worker_is_a_crash_with_its_cause_not_an_oom():
    from g4sim.measure.profile import worker_failure

    assert worker_failure(-9, "")[0] == "oom"
    status, why = worker_failure(1, "Traceback ...\nValueError: bad chunk\n")
    assert status == "crash" and "ValueError: bad chunk" in why and "exited with 1" in why


# ---- configs: bounds with the reason ------------------------------------------------------------

@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.update(hidden_size=-5), "hidden_size = -5 is out of range"),
    (lambda c: c.update(num_attention_heads=0), "num_attention_heads = 0 is out of range"),
    (lambda c: c.update(vocab_size=0), "vocab_size = 0 is out of range"),
    (lambda c: c.update(num_hidden_layers=0), "num_hidden_layers = 0 is out of range"),
    (lambda c: c.update(num_hidden_layers=1000), "num_hidden_layers = 1,000 is out of range; g4sim plans 1..512"),
    (lambda c: c.update(num_hidden_layers=100_000), "num_hidden_layers = 100,000 is out of range"),
    (lambda c: c.pop("hidden_size_per_layer_input"), "config is missing hidden_size_per_layer_input"),
    (lambda c: c.update(hidden_size="big"), "hidden_size = 'big' must be a whole number"),
    (lambda c: c.update(head_dim=1.5), "head_dim = 1.5 must be a whole number"),
    (lambda c: c.update(num_key_value_heads=3), "not divisible by 3 KV heads"),
    (lambda c: c.update(num_kv_shared_layers=42), "num_kv_shared_layers"),
    (lambda c: c.update(layer_types=["sliding_attention"] * 3), "layer_types has 3 entries"),
])
def test_config_values_are_bounded_with_the_reason(config_dir, mutate, needle, capsys):
    code, _, err = run(["plan", "--config", config_dir(mutate), "--ctx", "4k"], capsys)
    one_line_error(code, err, needle)


def test_empty_config_names_what_is_missing(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    code, _, err = run(["plan", "--config", str(tmp_path)], capsys)
    one_line_error(code, err, "config is missing hidden_size, num_hidden_layers")


def test_the_longest_config_allowed_plans(config_dir, capsys):
    """512 layers (the bound) plans; how fast is benchmarks/bench_plan.py's business (0.6 s cold measured)."""
    def longest(c):
        c.update(num_hidden_layers=512, num_kv_shared_layers=0, layer_types=(c["layer_types"] * 20)[:512])

    code, out, err = run(["plan", "--config", config_dir(longest), "--ctx", "32k", "--json"], capsys)
    assert code == 0 and json.loads(out)["params"]["total"] > 0, err


# ---- conflicting options are refused, never silently resolved ----------------------------------

@pytest.mark.parametrize("args,needle", [
    (["plan", "--model", "31b", "--config", "x"], "give --model or --config, not both"),
    (["report", "--scenario", "chat-8k", "--model", "31b"], "--scenario names its own models"),
    (["plan", "--model", "31b", "--gpu", "h100-sxm:2", "--gpus", "4"], "--gpus says 4"),
    (["plan", "--model", "31b", "--margin", "150%"], "--margin"),
    (["plan", "--model", "31b", "--margin", "lots"], "give a share"),
])
def test_conflicts_and_absurd_values(args, needle, capsys):
    code, _, err = run(args, capsys)
    one_line_error(code, err, needle)


def test_error_table_maps_each_expected_failure_to_exit_2():
    from g4sim.engines import EngineError
    from g4sim.errors import UserError
    from g4sim.hardware import ProfileError
    from g4sim.scenarios import ScenarioError
    from g4sim.spec import SpecError
    from g4sim.units import UnitError

    table = error_table()
    for exc in (UserError("u"), EngineError("e"), ProfileError("p"), SpecError("s"), ScenarioError("c"), UnitError("n"),
                PermissionError(13, "Permission denied", "/x"), IsADirectoryError(21, "Is a directory", "/d")):
        matches = [(message(exc), code) for types, message, code in table if isinstance(exc, types)]
        assert matches and matches[0][1] == 2 and matches[0][0]
    assert not [1 for types, _, _ in table if isinstance(RuntimeError("bug"), types)]  # a bug still shows itself


# ---- the fuzz test ------------------------------------------------------------------------------

COMMANDS = ["plan", "sweep", "report", "check", "capacity", "models", "gpus"]
FLAGS = ["--model", "-m", "--ctx", "--gpu", "--gpus", "--quant", "--kv-dtype", "--batch", "--engine", "--margin",
         "--from", "--config", "--out", "--junit", "--scenario", "--ubatch-size", "--flash-attn",
         "--gpu-memory-utilization", "--n-cpu-moe", "--json", "--headless", "--allow-beyond-max", "--with-audio"]
VALUES = st.one_of(
    st.sampled_from(["31b", "e2b", "26b-a4b", "8k", "256k", "-1", "0", "1e9", "h100-sxm:2", "rpi5-8gb", "q4_k_m", "fp8",
                     "mxfp4", "auto", "vllm", "llamacpp", "5%", "2GiB", "on", "maybe", "llama-server -m x.gguf",
                     "vllm serve google/gemma-4-31B-it --foo", "chat-8k", "", " ", "\x00", "NaN", "1" * 30]),
    st.text(max_size=12))


@settings(max_examples=int(os.environ.get("G4SIM_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(COMMANDS), pairs=st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=4),
       where=st.sampled_from(["file", "dir", "missing", "proc", "none"]))
def test_fuzz_the_cli(tmp_path_factory, command, pairs, where, capsys):
    base = tmp_path_factory.mktemp("fuzz")
    args = [command]
    for flag, value in pairs:
        if flag in ("--json", "--headless", "--allow-beyond-max", "--with-audio"):
            args.append(flag)
        elif flag in ("--out", "--junit"):
            target = {"file": base / "o.csv", "dir": base, "missing": base / "a" / "b" / "o.html",
                      "proc": Path("/proc/o.csv"), "none": base / f"o{value[:4]}"}[where]
            args += [flag, str(target)]
        else:
            args += [flag, value]
    if command == "sweep" and "--out" not in args:
        args += ["--model", "e2b", "--gpu", "l4", "--quant", "q4_0", "--ctx", "4k"]  # keep stdout small
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(args)
    elapsed = time.perf_counter() - start
    _, err = capsys.readouterr()
    allowed = {0, 2, 1} if command == "check" else {0, 2}  # check exits 1 only for a real regression
    assert exc.value.code in allowed, (args, err)
    assert "Traceback" not in err, (args, err)
    assert elapsed < 20, args
    leftovers = [p for p in base.rglob("*") if p.name.startswith(".")]  # temporary files of atomic writers
    assert not leftovers, leftovers


CONFIG_KEYS = sorted({*__import__("g4sim.spec", fromlist=["_TEXT_DEFAULTS"])._TEXT_DEFAULTS, "layer_types",
                      "rope_parameters", "per_layer_config", "text_config", "vision_config", "model_type"})
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                        st.text(max_size=8), st.lists(st.integers(-3, 3), max_size=3),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=int(os.environ.get("G4SIM_FUZZ_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(CONFIG_KEYS), JSON_VALUES), min_size=1, max_size=3),
       where=st.sampled_from(["text", "top"]))
def test_fuzz_config_mutations(tmp_path_factory, edits, where, capsys):
    from conftest import hf_config

    cfg = hf_config(get_variant("26b-a4b")).to_dict()
    target = cfg["text_config"] if where == "text" else cfg
    for key, value in edits:
        target[key] = value
    d = tmp_path_factory.mktemp("cfg")
    (d / "config.json").write_text(json.dumps(cfg))
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--config", str(d), "--ctx", "8k", "--json"])
    _, err = capsys.readouterr()
    assert exc.value.code in (0, 2), (edits, err)
    assert "Traceback" not in err and time.perf_counter() - start < 5, edits


@pytest.mark.parametrize("this_cpu, refused", [("AMD EPYC (family 26 model 2)", True),
                                               ("AMD EPYC (family 25 model 17)", False)])
def test_profile_files_rows_only_under_this_machines_profile(this_cpu, refused, tmp_path, monkeypatch, capsys):
    """ci-cpu-2core was measured on a Zen 4 (family 25 model 17); a Zen 5 VM that also calls itself "AMD EPYC" with
    2 cores must name its own profile, and nothing is recorded."""
    import os

    from g4sim.measure import measurements, profile

    monkeypatch.setattr(measurements, "cpu_model", lambda: this_cpu)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    ran = []
    monkeypatch.setattr(profile, "profile", lambda runs: ran.append(runs) or [])
    store = tmp_path / "store"
    code, _, err = run(["profile", "--model", "e2b", "--layers", "5", "--ctx", "64", "--store", str(store)], capsys)
    if refused:
        one_line_error(code, err, "this CPU (AMD EPYC (family 26 model 2)) is not ci-cpu-2core's "
                                  "(AMD EPYC (family 25 model 17)); name this machine's own hardware profile with "
                                  "--device-profile")
        assert not ran and not store.exists()
    else:
        assert code == 0 and len(ran) == 1 and ran[0][0].device_profile == "ci-cpu-2core"
