"""Hardware a user brings (``--gpu ./my-device.yaml``): planned exactly as a shipped profile with the same figures,
validated with one-line errors, uncited figures marked assumed; and each device's CPU feature set, which decides
llama.cpp's CPU weight repacking (``cpu_features``)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from g4sim import hardware
from g4sim.cli import main
from g4sim.hardware import (CPU_FEATURE_SETS, PROFILE_DIR, FieldSource, ProfileError, get_profile, load_profile,
                            load_profiles, parse_gpu_spec)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(autouse=True)
def _forget_user_files():
    """A user file registers its profile for the process: drop it after each test (a copy may shadow a shipped name)."""
    hardware.forget_user_files()
    yield
    hardware.forget_user_files()


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def _copy(name, tmp_path) -> Path:
    target = tmp_path / f"{name}.yaml"
    shutil.copy(PROFILE_DIR / f"{name}.yaml", target)
    return target


def _write(tmp_path, name, data) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _raw(name):
    return yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())


# ---- a user file plans as the shipped profile with the same figures ------------------------------------------------

@pytest.mark.parametrize("profile,args", [
    ("rtx4090", ["--model", "26b-a4b", "--ctx", "32k"]),
    ("rpi5-8gb", ["--model", "e2b", "--quant", "q4_0", "--ctx", "8k"]),  # a CPU: llama.cpp repacks per cpu_features
    ("apple-m4-pro-48gb", ["--model", "e4b", "--ctx", "16k"]),
])
def test_user_file_plans_as_the_shipped_profile(tmp_path, capsys, profile, args):
    copy = _copy(profile, tmp_path)
    code, shipped, _ = run(["plan", *args, "--gpu", profile, "--json"], capsys)
    assert code == 0
    code, mine, _ = run(["plan", *args, "--gpu", str(copy), "--json"], capsys)
    assert code == 0
    shipped, mine = json.loads(shipped), json.loads(mine)
    origin = mine.pop("device_file")  # the one difference: where the device came from
    assert "device_file" not in shipped
    assert mine == shipped
    assert origin["path"] == str(copy.resolve()) and origin["name"] == profile
    assert origin["assumed_without_provenance"] == []  # the copy cites every figure as the shipped file does
    # the text output says so too
    code, text, _ = run(["plan", *args, "--gpu", str(copy)], capsys)
    assert code == 0 and f"device {profile} from user file {copy.resolve()}" in text


def test_user_file_with_a_count_plans_as_name_with_a_count(tmp_path, capsys):
    copy = _copy("h100-sxm", tmp_path)
    args = ["plan", "--model", "31b", "--ctx", "32k", "--quant", "bf16", "--json"]
    code, shipped, _ = run([*args, "--gpu", "h100-sxm:2"], capsys)
    assert code == 0
    code, mine, _ = run([*args, "--gpu", f"{copy}:2"], capsys)
    assert code == 0
    mine = json.loads(mine)
    mine.pop("device_file")
    assert mine == json.loads(shipped) and mine["request"]["gpus"] == 2
    prof, n = parse_gpu_spec(f"{copy}:8")
    assert (prof.name, n, prof.user_file) == ("h100-sxm", 8, True)
    with pytest.raises(ProfileError, match="whole number in 1..64"):
        parse_gpu_spec(f"{copy}:0")
    with pytest.raises(ProfileError, match="whole number in 1..64"):
        parse_gpu_spec(f"{copy}:")


def test_sweep_and_report_take_a_user_file(tmp_path, capsys):
    copy = _copy("l4", tmp_path)
    code, shipped, _ = run(["sweep", "--model", "e2b", "--quant", "q4_k_m", "--ctx", "8k", "--gpu", "l4"], capsys)
    assert code == 0
    code, mine, err = run(["sweep", "--model", "e2b", "--quant", "q4_k_m", "--ctx", "8k", "--gpu", str(copy)], capsys)
    assert code == 0 and mine == shipped and f"from user file {copy.resolve()}" in err
    out = tmp_path / "r.html"
    code, _, err = run(["report", "--model", "e2b", "--quant", "q4_k_m", "--gpu", str(copy), "--out", str(out)],
                       capsys)
    assert code == 0 and out.is_file() and "from user file" in err


def test_uncited_figures_are_assumed_and_the_plan_says_so(tmp_path, capsys):
    data = _raw("rtx4090")
    data["name"] = "my-gpu"
    for key in ("provenance", "sources"):
        data.pop(key)
    data["reserved"].pop("sources")
    data["efficiency"].pop("provenance")
    data["interconnect"].pop("source")
    path = _write(tmp_path, "my-gpu", data)
    prof = get_profile(str(path))
    assert prof.user_file and prof.memory_bytes == 24 * 2**30
    assumed = FieldSource("assumed", f"user file {path.resolve()} (no provenance given)")
    assert set(prof.provenance.values()) == {assumed} and len(prof.provenance) == 13
    assert prof.sources == (f"user file {path.resolve()}",)
    # a figure the file does cite keeps its kind and source
    data["provenance"] = {"memory_bytes": {"kind": "measured", "source": "nvidia-smi on my card"}}
    path = _write(tmp_path, "my-gpu", data)
    code, out, _ = run(["plan", "--model", "e2b", "--gpu", str(path), "--json"], capsys)
    assert code == 0
    origin = json.loads(out)["device_file"]
    assert len(origin["assumed_without_provenance"]) == 12 and "memory_bytes" not in origin["assumed_without_provenance"]
    assert "12 figures without provenance, taken as assumed" in origin["note"]
    assert get_profile(str(path)).source_of("memory_bytes") == FieldSource("measured", "nvidia-smi on my card")


def test_shipped_profiles_still_must_cite(tmp_path):
    """Only a user file may leave out provenance: load_profile (shipped profiles, tests) stays strict."""
    data = _raw("rtx4090")
    data.pop("provenance")
    with pytest.raises(ProfileError, match="field 'provenance' is missing"):
        load_profile(_write(tmp_path, "rtx4090", data))


def test_hardware_dir_files_are_user_files(tmp_path, monkeypatch, capsys):
    data = _raw("rtx3090")
    data["name"] = "lab-3090"
    data.pop("provenance")
    _write(tmp_path, "lab-3090", data)
    monkeypatch.setenv("G4SIM_HARDWARE_DIR", str(tmp_path))
    hardware._load_all.cache_clear()
    try:
        code, out, _ = run(["plan", "--model", "e2b", "--gpu", "lab-3090", "--json"], capsys)
        assert code == 0 and json.loads(out)["device_file"]["name"] == "lab-3090"
    finally:
        monkeypatch.delenv("G4SIM_HARDWARE_DIR")
        hardware._load_all.cache_clear()


# ---- bad files: one line, exit 2, the file, the field and what is valid ---------------------------------------------

def _mutated(mutate):
    data = _raw("rtx4090")
    data["name"] = "my-gpu"
    mutate(data)
    return data


@pytest.mark.parametrize("mutate,needles", [
    (lambda d: d.pop("memory_bytes"), ["my-gpu.yaml", "field 'memory_bytes' is missing", "bytes"]),
    (lambda d: d.update(memory_bandwidth_bytes_per_s=-1),
     ["my-gpu.yaml", "field 'memory_bandwidth_bytes_per_s'", "positive number of bytes/s", "-1"]),
    (lambda d: d.update(colour="green"), ["my-gpu.yaml", "field 'colour' is not a profile field", "valid: name,",
                                          "cpu_features"]),
    (lambda d: d.update(kind="tpu"), ["my-gpu.yaml", "field 'kind'", "valid: gpu, cpu, soc"]),
    (lambda d: d["peak_flops"].update(fp7=1.0), ["field 'peak_flops.fp7'", "valid: fp32, tf32"]),
    (lambda d: d.update(memory_bandwidth_bytes_per_s="1e12"), ["field 'memory_bandwidth_bytes_per_s'", "1.0e+12"]),
    (lambda d: d["efficiency"].update(decode_bandwidth=1.5), ["field 'efficiency.decode_bandwidth'", "(0, 1]"]),
    (lambda d: d["reserved"].update(os_bytes=-1), ["field 'reserved.os_bytes'", "non-negative integer number of bytes"]),
    (lambda d: d["efficiency"].update(by_format={"int3": {"prefill_compute": 0.5, "decode_bandwidth": 0.5}}),
     ["field 'efficiency.by_format.int3'", "int8, int4-g128"]),
    (lambda d: d["efficiency"].update(by_format={"int8": {"prefill_compute": 0.5, "decode_bandwidth": 2}}),
     ["field 'efficiency.by_format.int8.decode_bandwidth'", "(0, 1]", "2"]),
    (lambda d: d["efficiency"].update(bands={"prefill": {"median": 0.1, "p90": 0.2, "n": 3},
                                             "decode": {"median": None, "p90": 0.1, "n": 0}}),
     ["field 'efficiency.bands.decode.p90'", "null when n is 0", "0.1"]),
    (lambda d: d.update(name="other"), ["field 'name' is 'other' but the file is my-gpu.yaml"]),
    (lambda d: d.update(cpu_features={"set": "avx9"}), ["field 'cpu_features.set'", "valid: x86-avx2", "arm-i8mm"]),
    (lambda d: d.update(cpu_features="arm-dotprod"), ["field 'cpu_features' must be a mapping: set: arm-dotprod"]),
    (lambda d: d.update(cpu_features={"set": "x86-avx2", "kind": "datasheet"}),
     ["field 'cpu_features.source' must say where"]),  # a kind with no source: cite both or neither
    (lambda d: d.update(cpu_peak_flops={"fp16": 1.0e+12}), ["field 'cpu_peak_flops.fp32' is missing"]),
    (lambda d: d.update(cpu_peak_flops={"fp32": 1.0e+12, "fp9": 1.0}), ["field 'cpu_peak_flops.fp9'", "valid: fp32"]),
    (lambda d: d.update(kind="cpu", cpu_peak_flops={"fp32": 1.0e+12}),
     ["field 'cpu_peak_flops' is for an SoC or GPU profile"]),
    (lambda d: d["provenance"].update(memory_bytes={"kind": "guess", "source": "x"}),
     ["field 'provenance.memory_bytes.kind'", "valid: datasheet, derived"]),
])
def test_bad_user_file_is_one_line(tmp_path, capsys, mutate, needles):
    path = _write(tmp_path, "my-gpu", _mutated(mutate))
    code, _, err = run(["plan", "--model", "e2b", "--gpu", str(path)], capsys)
    one_line_error(code, err, *needles)


@pytest.mark.parametrize("content,needles", [
    ("name: my-gpu\nkind: [unclosed\n", ["my-gpu.yaml: not valid YAML", "line 3"]),
    (b"\x80\x81\xfe", ["my-gpu.yaml: not valid YAML (not UTF-8 text)"]),
    ("", ["my-gpu.yaml: the file is empty"]),
    ("just some words\n", ["my-gpu.yaml: expected a mapping of fields, got str"]),
])
def test_a_file_that_is_not_a_profile_is_one_line(tmp_path, capsys, content, needles):
    path = tmp_path / "my-gpu.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, err = run(["plan", "--model", "e2b", "--gpu", str(path)], capsys)
    one_line_error(code, err, *needles)


def test_missing_file_and_folder_are_one_line(tmp_path, capsys):
    code, _, err = run(["plan", "--model", "e2b", "--gpu", str(tmp_path / "nope.yaml")], capsys)
    one_line_error(code, err, "nope.yaml does not exist", "docs/hardware-profile.md")
    _copy("l4", tmp_path)
    _copy("t4", tmp_path)
    for arg in (str(tmp_path), f"{tmp_path}/"):
        code, _, err = run(["plan", "--model", "e2b", "--gpu", arg], capsys)
        one_line_error(code, err, "is a folder, not a device", "l4.yaml, t4.yaml", "G4SIM_HARDWARE_DIR")
    code, _, err = run(["sweep", "--model", "e2b", "--gpu", f"l4,{tmp_path / 'nope.yml'}"], capsys)
    one_line_error(code, err, "nope.yml does not exist")
    code, _, err = run(["report", "--model", "e2b", "--gpu", str(tmp_path)], capsys)
    one_line_error(code, err, "is a folder, not a device")


# ---- the documented example ----------------------------------------------------------------------------------------

def test_example_device_loads_and_plans(capsys):
    prof = load_profile(DOCS / "example-device.yaml", user_file=True)
    assert prof.kind == "cpu" and prof.cpu_features == "x86-avx2"
    code, out, _ = run(["plan", "--model", "e2b", "--ctx", "32k", "--gpu", "docs/example-device.yaml", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["verdict"] == "fits" and data["request"]["device"] == "example-device"
    assert data["device_file"]["assumed_without_provenance"] == ["efficiency.prefill_compute",
                                                                 "efficiency.decode_bandwidth"]


def test_every_field_is_documented():
    doc = (DOCS / "hardware-profile.md").read_text()
    example = (DOCS / "example-device.yaml").read_text()
    for key in [*hardware._REQUIRED, *hardware._OPTIONAL]:
        assert f"`{key}`" in doc, key
        assert f"{key}:" in example, key  # given or shown commented out
    for key in (*hardware.RESERVE_FIGURES, *hardware.PROVENANCE_KINDS, *CPU_FEATURE_SETS, *hardware.DTYPES,
                "by_dtype", "by_format", "bands", "expert_gemm_half_rows", "bandwidth_bytes_per_s_per_direction"):
        assert f"`{key}`" in doc, key


# ---- cpu_features: which weights llama.cpp repacks on the device's CPU ----------------------------------------------

# ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type at llama.cpp 0c1e570 (the vendored llama-cpp-python
# 0.3.36): type -> the rows (ne[1]) multiple it repacks, per feature set.  Written out here from the source, not
# imported from the engine.
ARM_RULE = {"Q4_0": 4, "Q4_K": 8, "Q5_K": 8, "Q6_K": 8, "IQ4_NL": 4, "MXFP4": 4, "Q8_0": 4}  # NEON + dotprod
X86_AVX2_RULE = {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}
GET_ROWS_ONLY = {"per_layer_token_embd.weight"}  # input table (token_embd is also the tied output's MUL_MAT weight)


def _repacked_from_llamacpp_table(variant: str, quant: str, rule: dict[str, int]) -> tuple[int, int]:
    """(bytes, tensors) of the CPU_REPACK buffer, from llama.cpp's own quantized tensor table
    (tests/data/llamacpp_quantize, llama_model_quantize dry run): every 2-D weight a MUL_MAT reads whose type the
    rule repacks and whose rows are a multiple of its interleave, each padded to the 32-byte buffer alignment."""
    total = n = 0
    with open(ROOT / "tests" / "data" / "llamacpp_quantize" / f"{variant}.csv") as f:
        for r in csv.DictReader(f):
            ne = [int(v) for v in r["ne"].split("x")]
            if r["format"] != quant or len(ne) != 2 or r["tensor"] in GET_ROWS_ONLY:
                continue
            if r["type"] in rule and ne[1] % rule[r["type"]] == 0:
                total += -(-int(r["bytes"]) // 32) * 32
                n += 1
    return total, n


def _repacked(data: dict) -> int:
    return sum(t["bytes"] for t in data["memory"]["terms"] if t["component"] == "repacked_weights")


def test_rpi5_plans_the_arm_repack_set(capsys):
    arm, arm_n = _repacked_from_llamacpp_table("e2b", "q4_0", ARM_RULE)
    x86, x86_n = _repacked_from_llamacpp_table("e2b", "q4_0", X86_AVX2_RULE)
    # 275 Q4_0 matrices either way; ARM also repacks the Q6_K token_embd the tied output multiplies with
    assert (arm_n, x86_n) == (276, 275) and arm - x86 == 330301440
    assert (arm, x86) == (1378271232, 1047969792)
    for device in ("rpi5-8gb", "rpi5-16gb"):
        assert get_profile(device).cpu_features == "arm-dotprod"
        code, out, _ = run(["plan", "--model", "e2b", "--quant", "q4_0", "--ctx", "8k", "--gpu", device,
                            "--engine", "llamacpp", "--json"], capsys)
        assert code == 0
        data = json.loads(out)
        assert _repacked(data) == arm
        assert any("(arm-dotprod)" in t["source"] for t in data["memory"]["terms"])


def test_the_engine_option_still_overrides_the_device():
    from g4sim.engines import Workload
    from g4sim.engines.llamacpp import LlamaCppEngine
    from g4sim.evaluation import Request, fit
    from g4sim.spec import get_variant

    w = Workload(get_variant("e2b"), 8192, 1, "q4_0", "bf16")
    rpi = get_profile("rpi5-8gb")

    def repacked(engine):
        return sum(t.bytes for t in fit(Request(w, rpi, engine)).memory.terms if t.component.value == "repacked_weights")

    assert repacked(LlamaCppEngine()) == _repacked_from_llamacpp_table("e2b", "q4_0", ARM_RULE)[0]
    assert repacked(LlamaCppEngine(cpu_features="x86-avx2")) == _repacked_from_llamacpp_table(
        "e2b", "q4_0", X86_AVX2_RULE)[0]
    assert repacked(LlamaCppEngine(cpu_features="none")) == 0
    assert repacked(LlamaCppEngine(repack=False)) == 0
    # the unset engine takes the device's set; a set one is kept; a GPU profile says nothing
    assert LlamaCppEngine().for_device(rpi).cpu_features == "arm-dotprod"
    assert LlamaCppEngine(cpu_features="x86-amx").for_device(rpi).cpu_features == "x86-amx"
    assert LlamaCppEngine().for_device(get_profile("rtx4090")).cpu_features is None


def test_a_cpu_profile_without_cpu_features_plans_x86_avx2(tmp_path, capsys):
    data = _raw("rpi5-8gb")
    data["name"] = "my-board"
    data.pop("cpu_features")
    path = _write(tmp_path, "my-board", data)
    code, out, _ = run(["plan", "--model", "e2b", "--quant", "q4_0", "--gpu", str(path), "--engine", "llamacpp",
                        "--json"], capsys)
    assert code == 0
    assert _repacked(json.loads(out)) == _repacked_from_llamacpp_table("e2b", "q4_0", X86_AVX2_RULE)[0]
    data["cpu_features"] = {"set": "arm-i8mm"}  # a user file may name the set alone: assumed
    path = _write(tmp_path, "my-board", data)
    prof = get_profile(str(path))
    assert prof.cpu_features == "arm-i8mm" and prof.cpu_features_source.kind == "assumed"
    code, out, _ = run(["plan", "--model", "e2b", "--quant", "q4_0", "--gpu", str(path), "--engine", "llamacpp",
                        "--json"], capsys)
    origin = json.loads(out)["device_file"]
    assert code == 0 and origin["assumed_without_provenance"] == ["cpu_features"]
    # i8mm changes the layouts (Q4_0 4x8, K-quants 8x8), not the types or row multiples: the same bytes
    assert _repacked(json.loads(out)) == _repacked_from_llamacpp_table("e2b", "q4_0", ARM_RULE)[0]


def test_feature_sets_are_the_engines_and_each_llamacpp_cpu_has_one():
    from g4sim.engines.llamacpp import CPU_FEATURES

    assert set(CPU_FEATURE_SETS) == set(CPU_FEATURES)
    assert CPU_FEATURES["arm-dotprod"] == ARM_RULE == CPU_FEATURES["arm-i8mm"]
    assert CPU_FEATURES["x86-avx2"] == X86_AVX2_RULE
    expect = {"rpi5-8gb": "arm-dotprod", "rpi5-16gb": "arm-dotprod", "jetson-orin-nano-8gb": "arm-dotprod",
              "apple-m3-max-128gb": "arm-i8mm", "apple-m4-pro-48gb": "arm-i8mm", "phone-8gb": "arm-i8mm",
              "desktop-ddr5": "x86-avx2", "ci-cpu-2core": "x86-avx2",  # ci: the measured GGML_AVX512=OFF build
              "dgx-spark": "arm-i8mm", "jetson-agx-orin-64gb": "arm-dotprod", "jetson-thor-t5000": "arm-i8mm",
              "apple-m3-ultra-256gb": "arm-i8mm", "apple-m5-max-128gb": "arm-i8mm", "apple-m5-max-36gb": "arm-i8mm",
              "apple-m4-16gb": "arm-i8mm", "intel-i7-10750h": "x86-avx2", "rpi4-8gb": "none",
              "dimensity-9000-plus": "arm-i8mm", "epyc-zen5-2vcpu": "x86-avx2"}
    shipped = {n: p for n, p in load_profiles().items() if p.path.startswith(str(PROFILE_DIR))}
    assert {n: p.cpu_features for n, p in shipped.items() if p.cpu_features} == expect
    for name, prof in shipped.items():
        assert (prof.cpu_features is None) == (prof.kind == "gpu"), name  # every CPU / SoC says, no discrete card
        if prof.cpu_features:
            src = prof.cpu_features_source
            assert src.kind in ("datasheet", "measured", "assumed") and len(src.source) >= 60, name


def test_shipped_cpu_features_need_kind_and_source(tmp_path):
    data = _raw("rpi5-8gb")
    data["cpu_features"].pop("source")
    with pytest.raises(ProfileError, match="field 'cpu_features.source' must say where"):
        load_profile(_write(tmp_path, "rpi5-8gb", data))
    data["cpu_features"] = {"set": "arm-dotprod", "kind": "calibrated", "source": "x" * 30}
    with pytest.raises(ProfileError, match="field 'cpu_features.kind'"):
        load_profile(_write(tmp_path, "rpi5-8gb", data))
