"""Engine command in, engine command out: --from reads what users run; printed commands plan the same.

The round trip is a property over every engine: evaluate a request, take the command it prints,
read that command back (``--from``), evaluate again: the memory terms and the verdict are equal.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from g4sim.cli import main
from g4sim.engines import ENGINES, EngineError, Workload
from g4sim.evaluation import Request, evaluate
from g4sim.hardware import get_profile
from g4sim.plan.commandline import request_from_command
from g4sim.spec import VARIANTS


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_the_llama_server_command_from_the_issue(capsys):
    cmd = ("llama-server -m gemma-4-26B-A4B-it-Q4_K_M.gguf -c 131072 -np 2 -ngl 99 -fa on -ctk q8_0 -ctv q8_0 "
           "-ub 1024")
    code, out, _ = run(["plan", "--from", cmd, "--gpu", "rtx4090", "--json"], capsys)
    data = json.loads(out)
    r = data["request"]
    assert code == 0 and (r["model"], r["quant"], r["kv_dtype"], r["engine"]) == ("26b-a4b", "q4_k_m", "q8_0", "llamacpp")
    assert (r["ctx_tokens"], r["batch"]) == (65536, 2)  # -c is shared by the -np slots
    assert r["engine_settings"]["n_ubatch"] == 1024 and r["engine_settings"]["n_gpu_layers"] == 99
    assert r["engine_settings"]["flash_attn"] is True
    for flag in ("-c 131072", "-np 2", "-ngl 99", "-ub 1024", "-ctk q8_0", "-ctv q8_0", "-fa on"):
        assert flag in data["launch_command"]


def test_the_vllm_command_from_the_issue(capsys):
    cmd = ("vllm serve google/gemma-4-31B-it --max-model-len 32768 --gpu-memory-utilization 0.9 --kv-cache-dtype fp8 "
           "--tensor-parallel-size 2")
    code, out, _ = run(["plan", "--from", cmd, "--gpu", "h100-sxm", "--json"], capsys)
    data = json.loads(out)
    r = data["request"]
    assert code == 0 and (r["model"], r["quant"], r["kv_dtype"], r["gpus"]) == ("31b", "bf16", "fp8", 2)
    assert r["engine_settings"]["gpu_memory_utilization"] == 0.9 and r["ctx_tokens"] == 32768
    assert "--tensor-parallel-size 2" in data["launch_command"] and "--kv-cache-dtype fp8" in data["launch_command"]


@pytest.mark.parametrize("cmd,needle", [
    ("llama-server -m gemma-4-31B-it-Q4_K_M.gguf --rope-scaling yarn", "unsupported flag '--rope-scaling'"),
    ("vllm serve google/gemma-4-31B-it --speculative-config x", "unsupported flag '--speculative-config'"),
    ("lmdeploy serve api_server google/gemma-4-31B-it", "cannot tell which engine runs"),
    ("llama-server -m model.gguf", "cannot tell the GGUF type"),
    ("llama-server -m gemma-4-31B-it-Q4_K_M.gguf -c 131072 -ctk q8_0 -ctv q8_0 -fa off", "without flash attention"),
])
def test_unknown_or_unsupported_commands_are_one_line(cmd, needle, capsys):
    code, out, err = run(["plan", "--from", cmd, "--gpu", "h100-sxm"], capsys)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_from_and_plain_options_do_not_mix(capsys):
    code, _, err = run(["plan", "--from", "vllm serve google/gemma-4-31B-it", "--ctx", "8k"], capsys)
    assert code == 2 and "--from fixes" in err and "--ctx" in err


def _workloads():
    return st.builds(lambda m, ctx, batch: (m, ctx, batch), st.sampled_from(sorted(VARIANTS)),
                     st.integers(1, 131072), st.integers(1, 8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ENGINES)), _workloads(), st.sampled_from(["h100-sxm", "rtx4090", "rpi5-8gb",
                                                                         "apple-m4-pro-48gb", "mi300x"]),
       st.sampled_from([1, 2, 4]), st.data())
def test_printed_commands_plan_the_same_memory_and_verdict(engine_name, wl, device_name, gpus, data):
    model, ctx, batch = wl
    cls = ENGINES[engine_name]
    device = get_profile(device_name)
    quant = data.draw(st.sampled_from(sorted(cls.caps.weight_formats)), label="quant")
    kv = data.draw(st.sampled_from(sorted(cls.caps.kv_dtypes)), label="kv")
    settings_ = {}
    for option in cls.options:  # a random value for some of the engine's own settings
        if not data.draw(st.booleans(), label=f"set {option.field}"):
            continue
        default = getattr(cls(), option.field)
        if isinstance(default, bool):
            settings_[option.field] = not default
        elif option.field == "gpu_memory_utilization":
            settings_[option.field] = data.draw(st.sampled_from([0.5, 0.8, 0.95]))
        elif option.field == "attn_implementation":
            settings_[option.field] = data.draw(st.sampled_from(["sdpa", "eager"]))
        elif option.field == "backend":
            settings_[option.field] = data.draw(st.sampled_from(["cpu", "gpu"]))
        elif option.field == "cache_type_v":
            settings_[option.field] = data.draw(st.sampled_from(["q8_0", "bf16", "fp16"]))
        elif isinstance(default, int) or default is None:
            settings_[option.field] = data.draw(st.integers(1, 4096 if option.field != "n_cpu_moe" else 30))
    spec = VARIANTS[model]
    w = Workload(spec, min(ctx, spec.max_context), batch, quant, kv)
    engine = cls().with_settings(settings_)
    req = Request(w, device, engine, gpus)
    if engine.compatibility(w, device, gpus):
        return  # not a combination that runs: nothing is printed for it
    before = evaluate(req)
    if before.command is None:
        return  # does not fit: no command is printed
    after = evaluate(request_from_command(before.command, None if engine_name != "g4sim" else spec, device,
                                          gpus=gpus))
    assert after.request.workload == before.request.workload
    assert after.memory == before.memory and after.verdict is before.verdict
    assert after.command == before.command


def test_engine_that_runs_a_command_is_explicit():
    from g4sim.engines import engine_for_command

    assert engine_for_command("llama-server -m x.gguf").name == "llamacpp"
    assert engine_for_command("/usr/bin/vllm serve x").name == "vllm"
    with pytest.raises(EngineError):
        engine_for_command("tgi --model x")
