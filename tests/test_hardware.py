"""Hardware profiles load, cite their sources, and malformed ones are rejected by file and field."""

from __future__ import annotations

import pytest
import yaml

from g4sim.hardware import PROFILE_DIR, ProfileError, get_profile, load_profile, load_profiles, parse_gpu_spec

REQUIRED = ["rtx3090", "rtx4060ti-16gb", "rtx4080", "rtx4090", "rtx5090", "l4", "l40s", "t4", "a10g", "a100-40gb",
            "a100-80gb", "h100-sxm", "h100-pcie", "h200", "b200", "mi300x", "apple-m3-max-128gb",
            "apple-m4-pro-48gb", "rpi5-8gb", "rpi5-16gb", "jetson-orin-nano-8gb", "desktop-ddr5"]


def test_every_required_profile_loads_with_sources():
    profiles = load_profiles()
    assert len(profiles) >= 20
    for name in REQUIRED:
        p = profiles[name]
        assert p.sources and p.memory_bytes > 0 and p.memory_bandwidth_bytes_per_s > 0 and "fp32" in p.peak_flops


def test_capacities_are_exact_bytes():
    assert get_profile("rtx4090").memory_bytes == 24 * 2**30
    assert get_profile("h100-sxm").memory_bytes == 81559 * 2**20  # nvidia-smi
    assert get_profile("rtx5090").memory_bytes == 32 * 2**30


def test_unified_memory_keeps_an_os_share():
    mac = get_profile("apple-m3-max-128gb")
    assert mac.unified_memory and mac.usable_memory_bytes == int(128 * 2**30 * 0.75)
    pi = get_profile("rpi5-8gb")
    assert pi.usable_memory_bytes == 8 * 2**30 - pi.reserved_memory_bytes


def test_aliases_and_gpu_counts():
    assert get_profile("4090").name == "rtx4090"
    prof, n = parse_gpu_spec("h100-sxm:8")
    assert (prof.name, n) == ("h100-sxm", 8)
    with pytest.raises(ProfileError, match="positive integer"):
        parse_gpu_spec("h100-sxm:0")


def test_unknown_name_suggests_the_close_match():
    with pytest.raises(ProfileError, match="did you mean 'rtx4090'") as err:
        get_profile("rtx4009")
    assert "valid:" in str(err.value) and "\n" not in str(err.value)


def _write(tmp_path, name, mutate):
    data = yaml.safe_load((PROFILE_DIR / "rtx4090.yaml").read_text())
    data["name"] = name
    mutate(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("field,mutate", [
    ("memory_bytes", lambda d: d.pop("memory_bytes")),
    ("memory_bandwidth_bytes_per_s", lambda d: d.update(memory_bandwidth_bytes_per_s=-1)),
    ("peak_flops.fp7", lambda d: d["peak_flops"].update(fp7=1.0)),
    ("sources", lambda d: d.update(sources=[])),
    ("kind", lambda d: d.update(kind="tpu")),
    ("efficiency.decode_bandwidth", lambda d: d["efficiency"].update(decode_bandwidth=1.5)),
    ("colour", lambda d: d.update(colour="green")),
    ("unified_memory", lambda d: d.update(unified_memory="yes")),
    ("published[0].source", lambda d: d["published"][0].update(source="")),
    ("published[0].decode_tokens_per_s", lambda d: d["published"][0].update(decode_tokens_per_s=-3.0)),
    ("published[0]", lambda d: d["published"][0].update(prefill_tokens_per_s=None, decode_tokens_per_s=None)),
    ("published[0]", lambda d: d["published"][0].update(tokens_per_watt=1.0)),
])
def test_malformed_profile_names_file_and_field(tmp_path, field, mutate):
    path = _write(tmp_path, "bad-gpu", mutate)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert "bad-gpu.yaml" in str(err.value) and field in str(err.value)


def test_user_profile_directory(tmp_path, monkeypatch):
    from g4sim import hardware

    _write(tmp_path, "my-gpu", lambda d: None)
    monkeypatch.setenv("G4SIM_HARDWARE_DIR", str(tmp_path))
    hardware._load_all.cache_clear()
    assert get_profile("my-gpu").memory_bytes == 24 * 2**30
    hardware._load_all.cache_clear()


def test_published_measurements_are_cited_with_engine_and_model():
    from g4sim.spec import VARIANTS

    found = {name: prof.published for name, prof in load_profiles().items() if prof.published}
    # The figures found and read (see each profile's published: list); the seeds' Raspberry Pi 5 figure among them.
    assert {"rpi5-8gb", "rpi5-16gb", "rtx4090", "rtx3090", "rtx5090", "jetson-orin-nano-8gb"} <= set(found)
    for items in found.values():
        for m in items:
            assert m.engine and m.model in VARIANTS and m.quant and m.source and m.date
            assert (m.prefill_tokens_per_s or 0) > 0 or (m.decode_tokens_per_s or 0) > 0
    litert = get_profile("rpi5-16gb").published[0]
    assert (litert.engine, litert.model, litert.prefill_tokens_per_s) == ("LiteRT-LM", "e2b", 133.0)
