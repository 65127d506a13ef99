"""Hardware profiles load, cite their sources, and malformed ones are rejected by file and field."""

from __future__ import annotations

import pytest
import yaml

from g4sim.hardware import (PROFILE_DIR, RESERVE_FIGURES, ProfileError, Reserve, get_profile, load_profile,
                            load_profiles, parse_gpu_spec)

MiB = 2**20

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
    assert mac.unified_memory and mac.usable_memory_bytes == int(128 * 2**30 * 0.75)  # the GPU wired limit binds
    pi = get_profile("rpi5-8gb")
    assert pi.reserve.os_bytes > 0 and pi.usable_memory_bytes == 8 * 2**30 - pi.reserve.total()
    assert pi.usable_bytes(display_attached=False) == 8 * 2**30 - pi.reserve.driver_bytes - pi.reserve.os_bytes


def _raw(name):
    return yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())


def test_every_profile_has_a_cited_reserve():
    paths = sorted(PROFILE_DIR.glob("*.yaml"))
    assert len(paths) >= 24
    for path in paths:
        data = yaml.safe_load(path.read_text())
        assert "reserved_memory_bytes" not in data, path.name
        block = data["reserved"]
        assert set(block) == {*RESERVE_FIGURES, "sources"}, path.name
        for key in RESERVE_FIGURES:
            value = block[key]
            assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, (path.name, key)
            if value:
                # each non-zero figure has its own source line, which says where the number comes from
                cited = [s for s in block["sources"] if s.startswith(f"{key}: ")]
                assert cited, f"{path.name}: {key} = {value} has no source line starting '{key}: '"
                assert all("http" in s or "estimate" in s or "measured" in s for s in cited), (path.name, key)
        prof = load_profile(path)
        assert prof.reserve == Reserve(block["driver_bytes"], block["display_bytes"], block["os_bytes"],
                                       tuple(block["sources"]))
        # a discrete card's reserve is the driver's (and a desktop's, on consumer cards) and never the host OS's
        if data["kind"] == "gpu":
            assert block["os_bytes"] == 0, path.name
            assert (block["display_bytes"] > 0) == data["name"].startswith("rtx"), path.name
        assert 0 < prof.usable_bytes(True) <= prof.usable_bytes(False) <= prof.memory_bytes


def test_usable_bytes_from_the_raw_yaml_rtx4090():
    raw = _raw("rtx4090")["reserved"]
    mem = _raw("rtx4090")["memory_bytes"]
    with_display = mem - raw["driver_bytes"] - raw["display_bytes"] - raw["os_bytes"]
    headless = mem - raw["driver_bytes"] - raw["os_bytes"]
    prof = get_profile("rtx4090")
    assert prof.usable_bytes(True) == with_display and prof.usable_memory_bytes == with_display
    assert prof.usable_bytes(False) == headless
    # the figures themselves, pinned: 24 GiB - 368 MiB (driver/firmware) - 1638 MiB (desktop session)
    assert (mem, raw["driver_bytes"], raw["display_bytes"], raw["os_bytes"]) == (24 * 2**30, 368 * MiB, 1638 * MiB, 0)
    assert (with_display, headless) == (23666360320, 25383927808)


def test_usable_bytes_from_the_raw_yaml_apple_m4_pro():
    data = _raw("apple-m4-pro-48gb")
    raw, mem, frac = data["reserved"], data["memory_bytes"], data["usable_memory_fraction"]
    with_display = int(min(mem * frac, mem - raw["driver_bytes"] - raw["display_bytes"] - raw["os_bytes"]))
    headless = int(min(mem * frac, mem - raw["driver_bytes"] - raw["os_bytes"]))
    prof = get_profile("apple-m4-pro-48gb")
    assert prof.usable_bytes(True) == with_display and prof.usable_bytes(False) == headless
    # both branches, pinned: the GPU wired limit (3/4 of 48 GiB) binds; the OS + desktop reserve leaves 42 GiB
    assert (mem, frac) == (48 * 2**30, 0.75) and with_display == headless == 36 * 2**30
    assert prof.reserve.total(True) == raw["driver_bytes"] + raw["display_bytes"] + raw["os_bytes"] == 6 * 2**30
    assert prof.reserve.total(False) == raw["driver_bytes"] + raw["os_bytes"] == 4 * 2**30


def test_reserve_total_counts_the_display_only_when_attached():
    r = Reserve(driver_bytes=1, display_bytes=10, os_bytes=100, sources=("x",))
    assert (r.total(), r.total(True), r.total(False)) == (111, 111, 101)


def test_aliases_and_gpu_counts():
    assert get_profile("4090").name == "rtx4090"
    prof, n = parse_gpu_spec("h100-sxm:8")
    assert (prof.name, n) == ("h100-sxm", 8)
    with pytest.raises(ProfileError, match="whole number in 1..64"):
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
    assert "bad-gpu.yaml" in str(err.value) and f"field '{field}'" in str(err.value) and "\n" not in str(err.value)


def _reserve(**figures):
    """A mutation setting reserve figures (the rtx4090's sources stay)."""
    return lambda d: d["reserved"].update(figures)


@pytest.mark.parametrize("field,mutate", [
    ("reserved_memory_bytes", lambda d: d.update(reserved_memory_bytes=0)),
    ("reserved_memory_bytes", lambda d: (d.pop("reserved"), d.update(reserved_memory_bytes=2**30))),  # old-style file
    ("reserved", lambda d: d.pop("reserved")),
    ("reserved", lambda d: d.update(reserved=512 * MiB)),
    ("reserved.os_bytes", _reserve(os_bytes=-1)),
    ("reserved.driver_bytes", _reserve(driver_bytes=368.5 * MiB)),
    ("reserved.display_bytes", _reserve(display_bytes=True)),
    ("reserved.display_bytes", lambda d: d["reserved"].pop("display_bytes")),
    ("reserved.gpu_bytes", _reserve(gpu_bytes=0)),
    ("reserved.sources", _reserve(sources=[])),
    ("reserved.sources", lambda d: d["reserved"].pop("sources")),
    ("reserved.sources", _reserve(driver_bytes=0, display_bytes=0, os_bytes=1, sources=None)),
    ("reserved.sources", _reserve(sources=["ok", ""])),
    ("reserved", _reserve(driver_bytes=24 * 2**30 - 1638 * MiB)),  # reserve == memory: nothing left
    ("reserved", _reserve(driver_bytes=25 * 2**30)),  # reserve larger than memory
])
def test_malformed_reserve_names_file_and_field(tmp_path, field, mutate):
    test_malformed_profile_names_file_and_field(tmp_path, field, mutate)


def test_retired_field_says_what_replaced_it(tmp_path):
    path = _write(tmp_path, "old-gpu", lambda d: (d.pop("reserved"), d.update(reserved_memory_bytes=0)))
    with pytest.raises(ProfileError, match=r"old-gpu.yaml: field 'reserved_memory_bytes' is not a profile field "
                                           r"\(replaced by the cited 'reserved' block"):
        load_profile(path)


def test_reserve_boundaries_are_exact(tmp_path):
    """One byte either side of each limit: 0 is a valid figure, -1 is not; a reserve may leave 1 byte, not 0."""
    zero = load_profile(_write(tmp_path, "zero-gpu", _reserve(os_bytes=0, display_bytes=0)))
    assert zero.usable_bytes(True) == zero.usable_bytes(False) == 24 * 2**30 - 368 * MiB
    no_figures = load_profile(_write(tmp_path, "bare-gpu", _reserve(driver_bytes=0, display_bytes=0, sources=[])))
    assert no_figures.reserve.total() == 0 and no_figures.usable_memory_bytes == 24 * 2**30  # nothing to cite
    tight = load_profile(_write(tmp_path, "tight-gpu", _reserve(driver_bytes=24 * 2**30 - 1638 * MiB - 1)))
    assert tight.usable_bytes(True) == 1 and tight.usable_bytes(False) == 1638 * MiB + 1
    with pytest.raises(ProfileError, match="field 'reserved' totals 25769803776 bytes"):
        load_profile(_write(tmp_path, "full-gpu", _reserve(driver_bytes=24 * 2**30 - 1638 * MiB)))


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
