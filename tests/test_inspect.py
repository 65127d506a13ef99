"""``g4sim inspect FILE_OR_DIR`` and ``g4sim plan --gguf FILE`` / ``--checkpoint DIR``: the exact file, to the byte.

The files are written by test_weightfiles's helpers (``gguf.GGUFWriter``, ``safetensors.numpy``); the
expected figures come from the ``gguf`` package's reader and the ``safetensors`` package's headers,
grouped and placed by the rules written down in test_weightfiles (not by g4sim's code).
"""

from __future__ import annotations

import json
import shutil

import pytest

from g4sim.cli import main
from test_weightfiles import (  # noqa: E402  (tests/ is on sys.path, as for test_model_quant)
    TINY_DENSE, TINY_MOE, expected_component, imatrix_mix, llamacpp_placement, reader_tensors, safetensors_headers,
    write_awq_checkpoint, write_gguf,
)


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("inspect") / "gemma-4-tiny-moe-UD-Q4_K_XL.gguf", TINY_MOE, imatrix_mix,
                      file_type=15, tokens=1024)


@pytest.fixture(scope="module")
def awq(tmp_path_factory):
    return write_awq_checkpoint(tmp_path_factory.mktemp("inspect") / "tiny-dense-AWQ", TINY_DENSE)


def _by_component(named: dict[str, tuple[str, int]], component_of) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, (_, n) in named.items():
        c = component_of(name)
        out[c] = out.get(c, 0) + n
    return out


def _weights(data) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for t in data["memory"]["terms"]:
        if t["category"] == "weights":
            out[(t["component"], t["location"])] = out.get((t["component"], t["location"]), 0) + t["bytes"]
    return out


def _v_slots(theirs: dict, t) -> int:
    """vLLM gives attention_k_eq_v layers a V slot in qkv_proj, a copy of K (vllm gemma4.py): the file's K bytes."""
    import re

    full = {i for i in range(t.num_layers) if not t.is_sliding(i)} if t.attention_k_eq_v else set()
    return sum(n for name, (_, n) in theirs.items()
               if ".k_proj." in name and int(re.search(r"layers\.(\d+)\.", name).group(1)) in full)


# ---- inspect ------------------------------------------------------------------------------------------

def test_inspect_json_is_the_gguf_readers_table(mix, capsys):
    code, out, err = run(["inspect", str(mix), "--json"], capsys)
    assert code == 0 and not err
    data = json.loads(out)
    theirs = reader_tensors(mix)
    assert {t["name"]: (t["type"], t["bytes"]) for t in data["tensors"]} == theirs
    assert data["totals"]["bytes"] == sum(n for _, n in theirs.values())
    assert data["totals"]["by_component"] == _by_component(theirs, lambda n: expected_component(n, TINY_MOE)[0])
    assert data["totals"]["tensors"] == len(theirs)
    assert (data["kind"], data["label"], data["format"], data["model"]["layers"]) == ("gguf", "Q4_K_M", "q4_k_m", 6)
    where = {(p["component"], p["location"]): p["bytes"] for p in data["placement"]["llamacpp"]}
    assert where == llamacpp_placement(mix, TINY_MOE)  # input tables on the host, the rest (and the copy) on the GPU
    assert "vllm" not in data["placement"]  # vLLM (as g4sim models it) loads no GGUF file


def test_inspect_prints_every_tensor_and_the_totals(mix, capsys):
    code, out, _ = run(["inspect", str(mix)], capsys)
    theirs = reader_tensors(mix)
    assert code == 0
    for name, (kind, n) in theirs.items():
        assert any(name in line and kind in line and f"{n:,}" in line for line in out.splitlines()), name
    assert f"{sum(n for _, n in theirs.values()):,}" in out
    assert "Where it lives" in out and "host" in out


def test_inspect_json_of_an_awq_checkpoint_is_its_headers(awq, capsys):
    code, out, _ = run(["inspect", str(awq), "--json"], capsys)
    data = json.loads(out)
    theirs = safetensors_headers(awq)
    assert code == 0 and {t["name"]: (t["type"], t["bytes"]) for t in data["tensors"]} == theirs
    assert data["totals"]["bytes"] == sum(n for _, n in theirs.values())
    assert (data["label"], data["format"]) == ("AWQ int4 g128 (gemm)", "int4-g128")
    assert {p["location"] for p in data["placement"]["vllm"]} == {"accelerator"}  # vLLM keeps it all on the GPU
    assert sum(p["bytes"] for p in data["placement"]["vllm"]) == data["totals"]["bytes"]


# ---- plan --gguf / --checkpoint ------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--n-gpu-layers", "3"], ["--n-gpu-layers", "5", "--n-cpu-moe", "4"]])
def test_plan_gguf_weighs_the_files_bytes(mix, extra, capsys):
    code, out, err = run(["plan", "--gguf", str(mix), "--ctx", "8k", "--gpu", "rtx4090", "--json", *extra], capsys)
    assert code == 0, err
    data = json.loads(out)
    ngl = int(extra[extra.index("--n-gpu-layers") + 1]) if extra else 999
    moe = int(extra[extra.index("--n-cpu-moe") + 1]) if "--n-cpu-moe" in extra else 0
    assert _weights(data) == llamacpp_placement(mix, TINY_MOE, ngl, moe)
    r = data["request"]
    assert (r["engine"], r["quant"], r["model"]) == ("llamacpp", "q4_k_m", "gemma-4-tiny-moe-UD-Q4_K_XL")
    assert data["file"]["tensor_bytes"] == sum(n for _, n in reader_tensors(mix).values())
    assert data["launch_command"].startswith(f"llama-server -m {mix} ")


def test_plan_gguf_round_trips_through_from(mix, capsys):
    _, out, _ = run(["plan", "--gguf", str(mix), "--ctx", "4096", "--batch", "2", "--gpu", "rtx4090", "--json",
                     "--n-gpu-layers", "4"], capsys)
    first = json.loads(out)
    code, out, err = run(["plan", "--from", first["launch_command"], "--gpu", "rtx4090", "--json"], capsys)
    again = json.loads(out)
    assert code == 0, err
    assert again["memory"] == first["memory"] and again["verdict"] == first["verdict"]
    assert again["launch_command"] == first["launch_command"] and again["file"] == first["file"]


def test_plan_gguf_text_names_the_file(mix, capsys):
    code, out, _ = run(["plan", "--gguf", str(mix), "--gpu", "rtx4090"], capsys)
    assert code == 0 and f"file {mix}" in out and f"-m {mix}" in out


def test_plan_checkpoint_weighs_the_headers_in_vllm(awq, capsys):
    code, out, err = run(["plan", "--checkpoint", str(awq), "--ctx", "8k", "--gpu", "h100-sxm", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    theirs = safetensors_headers(awq)
    from g4sim.weightfiles.safetensors import component_of

    expected = {(c, "accelerator"): n for c, n in _by_component(theirs, lambda n: component_of(n)[0]).items()}
    expected[("attention", "accelerator")] += _v_slots(theirs, TINY_DENSE)
    assert _v_slots(theirs, TINY_DENSE) > 0
    assert _weights(data) == expected
    assert sum(expected.values()) == sum(n for _, n in theirs.values()) + _v_slots(theirs, TINY_DENSE)
    assert (data["request"]["engine"], data["request"]["quant"]) == ("vllm", "int4-g128")
    cmd = data["launch_command"]
    assert cmd.startswith(f"vllm serve {awq} ") and "--quantization" not in cmd  # vLLM reads quantization_config
    code, out, err = run(["plan", "--from", cmd, "--gpu", "h100-sxm", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["memory"] == data["memory"]


def test_a_checkpoint_group_size_vllm_loads(tmp_path, capsys):
    d = write_awq_checkpoint(tmp_path / "g64", TINY_DENSE, group=64, shards=1)
    code, out, err = run(["plan", "--checkpoint", str(d), "--gpu", "h100-sxm", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["request"]["quant"] == "int4-g64" and data["request"]["engine"] == "vllm"
    theirs = safetensors_headers(d)
    assert sum(_weights(data).values()) == sum(n for _, n in theirs.values()) + _v_slots(theirs, TINY_DENSE)


def test_a_checkpoint_on_a_cpu_runs_in_transformers(awq, capsys):
    code, out, err = run(["plan", "--checkpoint", str(awq), "--gpu", "rpi5-8gb", "--json"], capsys)
    # llama.cpp (auto's first choice on a board) loads GGUF files only; transformers loads no AWQ: one line
    assert code == 2 and err.count("\n") == 1 and "llamacpp does not load safetensors checkpoints" in err


# ---- bad input: one line, exit 2 -----------------------------------------------------------------------------

def _broken(mix, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(mix.read_bytes()[: mix.stat().st_size // 2])
    llama = write_gguf(tmp_path / "llama-3-8b.gguf", TINY_MOE, arch="llama")
    return cut, llama


def test_corrupt_and_foreign_ggufs_are_one_line(mix, tmp_path, capsys):
    cut, llama = _broken(mix, tmp_path)
    for args, needle in (
        (["inspect", str(cut)], f"{cut}: truncated"),
        (["plan", "--gguf", str(cut)], f"{cut}: truncated"),
        (["inspect", str(llama)], "general.architecture is 'llama', not 'gemma4'"),
        (["plan", "--gguf", str(llama), "--json"], "general.architecture is 'llama'"),
        (["inspect", str(tmp_path / "nope.gguf")], "nope.gguf: no such file"),
        (["plan", "--from", f"llama-server -m {cut} -c 4096"], f"{cut}: truncated"),
    ):
        code, out, err = run(args, capsys)
        assert code == 2 and not out and err.startswith("error: ") and err.count("\n") == 1, (args, err)
        assert needle in err and "Traceback" not in err, (args, err)


def test_broken_checkpoints_are_one_line(awq, tmp_path, capsys):
    bad = shutil.copytree(awq, tmp_path / "bad")
    shard = sorted(bad.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-3])
    for args in (["inspect", str(bad)], ["plan", "--checkpoint", str(bad)]):
        code, out, err = run(args, capsys)
        assert code == 2 and err.count("\n") == 1 and f"{shard.name}: truncated" in err, err


@pytest.mark.parametrize("args,needle", [
    (["--model", "e2b"], "--gguf fixes the model and its weight format; drop --model"),
    (["--quant", "q8_0"], "drop --quant"),
    (["--config", "x.json"], "drop --config"),
    (["--from", "llama-server -m x.gguf"], "drop --from"),
    (["--checkpoint", "somewhere"], "give --gguf FILE or --checkpoint DIR, not both"),
    (["--engine", "vllm", "--gpu", "h100-sxm"], "vllm does not load GGUF files"),
])
def test_plan_gguf_conflicts_are_one_line(mix, args, needle, capsys):
    code, out, err = run(["plan", "--gguf", str(mix), *args], capsys)
    assert code == 2 and not out and err.count("\n") == 1 and needle in err, err


def test_gguf_and_checkpoint_paths_of_the_wrong_kind(mix, awq, capsys):
    code, _, err = run(["plan", "--gguf", str(awq)], capsys)
    assert code == 2 and "is a directory" in err
    code, _, err = run(["plan", "--checkpoint", str(mix)], capsys)
    assert code == 2 and "is a file" in err
    code, _, err = run(["plan", "--checkpoint", str(awq), "--model", "31b"], capsys)
    assert code == 2 and "--checkpoint fixes the model" in err and "drop --model" in err
