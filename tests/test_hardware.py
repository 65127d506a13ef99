"""Hardware profiles load, cite their sources (every numeric figure its kind and source), and malformed ones are
rejected by file and field."""

from __future__ import annotations

import pytest
import yaml

import dataclasses
from collections import Counter

from g4sim.hardware import (PROFILE_DIR, PROVENANCE_KINDS, RESERVE_FIGURES, FieldSource, ProfileError, Reserve,
                            get_profile, load_profile, load_profiles, numeric_fields, parse_gpu_spec)

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


# ---- provenance: every numeric figure says what kind of figure it is, and where it comes from ----------------------

def _numeric_leaves(node, prefix=""):
    """Dotted paths of every int/float leaf of a raw profile, found by walking it (not by the loader's own list)."""
    for key, value in node.items():
        if key in ("published", "provenance", "sources"):
            continue
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _numeric_leaves(value, dotted + ".")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield dotted


def test_every_numeric_figure_has_a_provenance_entry():
    paths = sorted(PROFILE_DIR.glob("*.yaml"))
    assert len(paths) == 39
    for path in paths:
        data = yaml.safe_load(path.read_text())
        leaves = list(_numeric_leaves(data))
        assert "memory_bytes" in leaves and "reserved.os_bytes" in leaves and "efficiency.prefill_compute" in leaves
        assert list(data["provenance"]) == leaves, path.name  # one entry per figure, none extra, in file order
        assert numeric_fields(data) == leaves, path.name
        prof = load_profile(path)
        assert list(prof.provenance) == leaves
        for key, entry in data["provenance"].items():
            assert set(entry) == {"kind", "source"}, (path.name, key)
            assert entry["kind"] in PROVENANCE_KINDS, (path.name, key, entry["kind"])
            assert isinstance(entry["source"], str) and len(entry["source"].strip()) >= 20, (path.name, key)
            assert prof.provenance[key] == FieldSource(entry["kind"], entry["source"])
            assert prof.kind_of(key) == entry["kind"]


# The kinds of every profile's figures, pinned: a figure changing kind (or disappearing) changes its profile's row.
KIND_COUNTS = {  # datasheet, derived, measured, calibrated, assumed
    "a100-40gb": (7, 3, 1, 0, 3), "a100-80gb": (7, 3, 1, 0, 3), "a10g": (1, 2, 1, 0, 8),
    "apple-m3-max-128gb": (2, 0, 1, 0, 8), "apple-m4-pro-48gb": (2, 0, 1, 0, 8), "b200": (9, 3, 1, 0, 3),
    "ci-cpu-2core": (0, 2, 5, 15, 3), "desktop-ddr5": (0, 1, 0, 0, 10), "h100-pcie": (8, 2, 0, 0, 4),
    "h100-sxm": (7, 3, 2, 0, 3), "h200": (2, 8, 2, 0, 3), "jetson-orin-nano-8gb": (2, 4, 2, 0, 4),
    "l4": (3, 6, 1, 0, 3), "l40s": (7, 2, 1, 0, 3), "mi300x": (7, 3, 0, 0, 4), "phone-8gb": (0, 1, 0, 0, 13),
    "rpi5-16gb": (1, 4, 1, 0, 5), "rpi5-8gb": (1, 4, 1, 0, 5), "rtx3090": (6, 3, 1, 0, 3),
    "rtx4060ti-16gb": (2, 7, 1, 0, 3), "rtx4080": (7, 2, 0, 0, 4), "rtx4090": (7, 2, 1, 0, 3),
    "rtx5090": (8, 2, 1, 0, 3), "t4": (5, 2, 1, 0, 3),
    # the devices of reports/published/runs.csv that had no profile
    "apple-m3-ultra-256gb": (2, 0, 0, 0, 9), "apple-m4-16gb": (1, 0, 0, 0, 10), "apple-m5-max-128gb": (2, 0, 0, 0, 9),
    "apple-m5-max-36gb": (2, 0, 0, 0, 9), "dgx-spark": (3, 1, 1, 0, 8), "dimensity-9000-plus": (0, 4, 0, 0, 7),
    "gtx1660ti-laptop": (1, 6, 0, 0, 4), "intel-i7-10750h": (1, 1, 0, 0, 7), "jetson-agx-orin-64gb": (2, 4, 0, 0, 6),
    "jetson-thor-t5000": (4, 4, 0, 0, 6), "rpi4-8gb": (1, 2, 1, 0, 5), "rtx3060ti": (1, 7, 0, 0, 4),
    "rtx4070ti": (1, 8, 0, 0, 4), "rtx5070ti": (2, 8, 0, 0, 4),
    # this project's third session's machine (LiteRT-LM measured there)
    "epyc-zen5-2vcpu": (0, 0, 4, 0, 7),
}


def test_kind_counts_per_profile():
    profiles = load_profiles()
    counts = {name: tuple(Counter(s.kind for s in p.provenance.values()).get(k, 0) for k in PROVENANCE_KINDS)
              for name, p in profiles.items() if p.path.startswith(str(PROFILE_DIR))}
    assert counts == KIND_COUNTS


def test_efficiencies_never_calibrated_are_assumed_and_ci_cpu_is_calibrated():
    for name, prof in load_profiles().items():
        eff = {k: s.kind for k, s in prof.provenance.items() if k.startswith("efficiency.")}
        if name == "ci-cpu-2core":
            continue
        # no g4sim calibration ran on these devices: every efficiency is an assumption, and nothing is 'calibrated'
        assert eff == {"efficiency.prefill_compute": "assumed", "efficiency.decode_bandwidth": "assumed"}, name
        assert "calibrated" not in {s.kind for s in prof.provenance.values()}, name
        if prof.kind == "gpu":
            assert (prof.efficiency.prefill_compute, prof.efficiency.decode_bandwidth) == (0.55, 0.75), name
            assert "never calibrated" in prof.source_of("efficiency.prefill_compute").source, name
    ci = get_profile("ci-cpu-2core")
    assert {k: s.kind for k, s in ci.provenance.items() if k.startswith("efficiency.")} == {
        # `g4sim calibrate` fits by_dtype, by_format and the expert-GEMM penalty; the top-level pair is the CPU default it never
        # writes (used only for compute dtypes with no by_dtype entry)
        "efficiency.prefill_compute": "assumed", "efficiency.decode_bandwidth": "assumed",
        **{f"efficiency.by_dtype.{dtype}.{key}": "calibrated" for dtype in ("bf16", "fp32")
           for key in ("prefill_compute", "decode_bandwidth")},
        **{f"efficiency.by_format.{fmt}.{key}": "calibrated" for fmt in ("int8", "int4-g128")  # split v4
           for key in ("prefill_compute", "decode_bandwidth")},
        "efficiency.expert_gemm_half_rows": "calibrated",
        **{f"efficiency.bands.{phase}.{key}": "calibrated" for phase in ("prefill", "decode")  # held-out error
           for key in ("median", "p90", "n")},
    }
    assert all("g4sim calibrate" in s.source for s in ci.provenance.values() if s.kind == "calibrated")


def test_named_figures_have_their_kind():
    """A few figures whose kind is a fact worth pinning by name."""
    expect = {
        ("h100-sxm", "memory_bytes"): "measured",  # nvidia-smi's 81559 MiB, not the datasheet's 80 GB
        ("h200", "memory_bytes"): "measured",
        ("rtx4090", "memory_bytes"): "datasheet",
        ("rtx4090", "peak_flops.bf16"): "datasheet",
        ("rtx4090", "interconnect.bandwidth_bytes_per_s_per_direction"): "derived",  # PCIe arithmetic
        ("h100-sxm", "interconnect.bandwidth_bytes_per_s_per_direction"): "derived",  # half of 900 GB/s both ways
        ("l4", "peak_flops.bf16"): "derived",  # half the datasheet's with-sparsity rate
        ("rtx5090", "peak_flops.fp4"): "datasheet",
        ("jetson-orin-nano-8gb", "peak_flops.fp32"): "derived",  # cores x 2 x clock
        ("ci-cpu-2core", "memory_bandwidth_bytes_per_s"): "measured",
        ("a10g", "peak_flops.bf16"): "assumed",  # the A10's datasheet applied to the A10G
        ("apple-m4-pro-48gb", "peak_flops.fp32"): "assumed",  # Apple publishes no FLOP/s
        ("apple-m4-pro-48gb", "usable_memory_fraction"): "measured",
        ("rtx4090", "reserved.driver_bytes"): "measured",
        ("rtx4090", "reserved.display_bytes"): "assumed",
        ("desktop-ddr5", "reserved.os_bytes"): "assumed",
    }
    assert {key: get_profile(key[0]).kind_of(key[1]) for key in expect} == expect


def test_corrected_figures_carry_their_source():
    five = get_profile("rtx5090")
    assert five.peak_flops["fp4"] == 1676e12 and "1676" in five.source_of("peak_flops.fp4").source  # whitepaper, dense
    jetson = get_profile("jetson-orin-nano-8gb")
    assert jetson.peak_flops["fp32"] == 1024 * 2 * 1.02e9 and "1020 MHz" in jetson.source_of("peak_flops.fp32").source


def test_kind_of_unknown_field_names_the_valid_ones():
    prof = get_profile("rtx4090")
    with pytest.raises(KeyError, match="peak_flops.fp4.*memory_bytes"):
        prof.kind_of("peak_flops.fp4")  # the 4090 has no fp4 rate
    with pytest.raises(dataclasses.FrozenInstanceError):
        prof.provenance = {}  # type: ignore[misc]


def _prov(key, **changes):
    """A mutation changing (or, with value None, dropping) fields of one provenance entry."""
    def mutate(d):
        for k, v in changes.items():
            if v is None:
                d["provenance"][key].pop(k)
            else:
                d["provenance"][key][k] = v
    return mutate


@pytest.mark.parametrize("field,mutate", [
    ("provenance", lambda d: d.pop("provenance")),
    ("provenance", lambda d: d.update(provenance=["memory_bytes: datasheet"])),
    ("provenance.peak_flops.bf16", lambda d: d["provenance"].pop("peak_flops.bf16")),  # an entry missing
    ("provenance.memory_bytes", lambda d: (d["provenance"].pop("memory_bytes"),
                                           d["provenance"].pop("reserved.os_bytes"))),  # the first missing is named
    ("provenance.memory_bytes.kind", _prov("memory_bytes", kind="guess")),
    ("provenance.memory_bytes.kind", _prov("memory_bytes", kind="Datasheet")),
    ("provenance.memory_bytes.kind", _prov("memory_bytes", kind=None)),
    ("provenance.memory_bytes.kind", _prov("memory_bytes", kind="calibrated")),  # only efficiencies are calibrated
    ("provenance.memory_bytes.source", _prov("memory_bytes", source="")),
    ("provenance.memory_bytes.source", _prov("memory_bytes", source="   ")),
    ("provenance.memory_bytes.source", _prov("memory_bytes", source=None)),
    ("provenance.memory_bytes.sorce", _prov("memory_bytes", sorce="x")),
    ("provenance.memory_bytes", lambda d: d["provenance"].update(memory_bytes="datasheet")),
    ("provenance.peak_flops.fp4", lambda d: d["provenance"].update(
        {"peak_flops.fp4": {"kind": "datasheet", "source": "a rate this card does not have"}})),  # names no field
    ("provenance.name", lambda d: d["provenance"].update(name={"kind": "datasheet", "source": "not a number"})),
    ("provenance.interconnect.bandwidth_bytes_per_s_per_direction", lambda d: d.update(interconnect=None)),
    ("provenance.peak_flops.fp4", lambda d: d["peak_flops"].update(fp4=1.0e15)),  # a new figure with no entry
    ("provenance.usable_memory_fraction", lambda d: d.update(usable_memory_fraction=0.9)),
    ("provenance.efficiency.expert_gemm_half_rows", lambda d: d["efficiency"].update(expert_gemm_half_rows=10.0)),
])
def test_malformed_provenance_names_file_and_field(tmp_path, field, mutate):
    test_malformed_profile_names_file_and_field(tmp_path, field, mutate)


def test_missing_provenance_entry_message(tmp_path):
    path = _write(tmp_path, "half-gpu", lambda d: d["provenance"].pop("efficiency.decode_bandwidth"))
    with pytest.raises(ProfileError, match=r"half-gpu.yaml: field 'provenance.efficiency.decode_bandwidth' is missing: "
                                           r"every numeric figure needs \{kind, source\} \(1 of 13 lack one\)$"):
        load_profile(path)
