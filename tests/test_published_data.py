"""The published Gemma 4 speed dataset (reports/published/runs.csv): required fields, and a frozen split.

The split rule is written out here (it is the rule described in reports/published/README.md) and the test
recomputes it from the CSV: any row moved between calibration and held-out, or any row added, removed or
re-keyed, fails. The SHA-256 of the sorted (id, split) pairs is pinned as well.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CSV_PATH = Path(__file__).resolve().parents[1] / "reports" / "published" / "runs.csv"

COLUMNS = [
    "id", "engine", "engine_version", "backend", "device", "device_profile", "model", "format", "kv_dtype",
    "depth_tokens", "prompt_tokens", "gen_tokens", "micro_batch", "concurrency", "threads", "gpus", "flash_attn",
    "prefill_tokens_per_s", "decode_tokens_per_s", "speculative", "source_url", "source_date", "source_kind",
    "quote", "split", "notes", "decode_metric",
]
ENGINES = {"llamacpp", "vllm", "ollama", "litert-lm", "mlx", "transformers", "lmstudio", "other"}
MODELS = {"e2b", "e4b", "26b-a4b", "31b"}
SPLITS = {"calibration", "held-out"}
# sha256 of "\n".join(f"{id}\t{split}" for id, split in sorted pairs); recompute only when the dataset
# is deliberately re-frozen (and say so in the README).
PINNED_SPLIT_SHA256 = "6ee0ec4f16098a72e8a8be50faccc74465f32ee78a01ef18da3cd4f55b10140c"

# ---------------------------------------------------------------- the split rule (frozen; see README)

SALT = "g4sim-published-split-v1"
SOURCE_FRAC = 0.20
TARGET_FRAC = 0.33
MIN_FRAC, MAX_FRAC = 0.30, 0.40


def u(kind, key):
    h = hashlib.sha256(f"{SALT}|{kind}|{key}".encode()).hexdigest()
    return int(h[:12], 16) / float(16 ** 12)


def source_group(url):
    p = urlsplit(url.strip())
    host = p.netloc.lower()
    if host.startswith("www."):
        host = host[4:]
    parts = [x for x in p.path.split("/") if x]
    if host == "github.com" and len(parts) >= 2:
        return f"github.com/{parts[0].lower()}/{parts[1].lower()}"
    if host == "gist.github.com" and len(parts) >= 2:
        return f"gist.github.com/{parts[0].lower()}/{parts[1].lower()}"
    return host


def device_key(device):
    return " ".join(device.strip().lower().split())


def backend_class(backend):
    return "cpu" if backend in ("cpu", "cpu-arm") else backend


def compute_split(rows):
    """rows: list of dicts with source_url, device, engine, backend.
    Returns (splits, held_out_sources, held_out_devices)."""
    n = len(rows)
    groups = [source_group(r["source_url"]) for r in rows]
    devs = [device_key(r["device"]) for r in rows]
    classes = [(r["engine"], backend_class(r["backend"])) for r in rows]
    H_src, H_dev = set(), set()

    def held(i):
        return groups[i] in H_src or devs[i] in H_dev

    def n_held():
        return sum(held(i) for i in range(n))

    def add_sources(target):
        # whole source groups in hash order; skip a group that would push past MAX_FRAC
        for g in sorted(set(groups), key=lambda g: (u("src", g), g)):
            if n_held() >= target * n:
                break
            if g in H_src:
                continue
            extra = sum(1 for i in range(n) if groups[i] == g and not held(i))
            if n_held() + extra > MAX_FRAC * n:
                continue
            H_src.add(g)

    def cheapest(ds):
        # the whole device that moves the fewest extra rows to held-out (ties: hash order)
        cost = lambda d: sum(1 for i in range(n) if devs[i] == d and not held(i))
        return sorted(ds, key=lambda d: (cost(d), u("dev", d), d))

    class_list = sorted(set(classes))
    # step 1: whole sources by hash until SOURCE_FRAC of the rows are held out
    add_sources(SOURCE_FRAC)
    # step 2: every (engine, backend class) with >= 2 devices has at least one device wholly held out
    for c in class_list:
        cdevs = {devs[i] for i in range(n) if classes[i] == c}
        if len(cdevs) < 2:
            continue
        wholly = {d for d in cdevs if all(held(i) for i in range(n) if devs[i] == d)}
        if not wholly:
            H_dev.add(cheapest(cdevs)[0])
    # step 3: every class with >= 10 rows has >= 5 held-out rows: add the cheapest whole unit (a source
    # group or a device holding rows of that class; cost = rows newly held out; ties: kind, hash)
    for c in class_list:
        idx = [i for i in range(n) if classes[i] == c]
        if len(idx) < 10:
            continue
        while sum(held(i) for i in idx) < 5:
            units = [("dev", d) for d in {devs[i] for i in idx if not held(i)}]
            units += [("src", g) for g in {groups[i] for i in idx if not held(i)}]

            def ucost(unit):
                kind, key = unit
                members = devs if kind == "dev" else groups
                return sum(1 for i in range(n) if members[i] == key and not held(i))

            kind, key = min(units, key=lambda un: (ucost(un), un[0], u(un[0], un[1]), un[1]))
            (H_dev if kind == "dev" else H_src).add(key)
    # step 4: top up with whole sources until TARGET_FRAC
    add_sources(TARGET_FRAC)
    return ["held-out" if held(i) else "calibration" for i in range(n)], H_src, H_dev


# ---------------------------------------------------------------- tests


def _rows():
    with CSV_PATH.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def rows():
    return _rows()


def _num(s):
    return float(s) if s.strip() else None


def test_required_fields(rows):
    assert len(rows) >= 60
    for r in rows:
        rid = r["id"]
        assert rid.strip(), r
        assert r["engine"] in ENGINES, rid
        assert r["backend"].strip(), rid
        assert r["device"].strip(), rid
        assert r["model"] in MODELS, rid
        assert r["format"].strip(), rid
        assert r["source_url"].startswith(("http://", "https://")), rid
        dt.date.fromisoformat(r["source_date"])
        assert r["source_kind"].strip(), rid
        assert r["quote"].strip() and len(r["quote"]) <= 200, rid
        assert r["speculative"].strip(), rid
        assert r["split"] in SPLITS, rid
        assert r["decode_metric"] in ("decode", "end-to-end"), rid
        pre, dec = _num(r["prefill_tokens_per_s"]), _num(r["decode_tokens_per_s"])
        assert (pre or 0) > 0 or (dec or 0) > 0, rid
        for v in (pre, dec):
            assert v is None or v > 0, rid
        for col in ("depth_tokens", "prompt_tokens", "gen_tokens", "micro_batch", "concurrency", "threads", "gpus"):
            v = _num(r[col])
            assert v is None or (v >= 0 and v == int(v)), (rid, col)
        assert int(r["concurrency"]) >= 1, rid


def test_ids_unique(rows):
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))


def test_split_hash_pinned(rows):
    pairs = sorted((r["id"], r["split"]) for r in rows)
    digest = hashlib.sha256("\n".join(f"{i}\t{s}" for i, s in pairs).encode()).hexdigest()
    assert digest == PINNED_SPLIT_SHA256, "rows were added, removed, renamed or moved between splits"


def test_split_follows_the_frozen_rule(rows):
    expected, _, _ = compute_split(rows)
    moved = [r["id"] for r, e in zip(rows, expected) if r["split"] != e]
    assert not moved, f"rows not where the split rule puts them: {moved}"


def test_held_out_groups_are_whole(rows):
    groups = [source_group(r["source_url"]) for r in rows]
    devs = [device_key(r["device"]) for r in rows]
    held = [r["split"] == "held-out" for r in rows]
    whole_src = {g for g in set(groups) if all(h for g2, h in zip(groups, held) if g2 == g)}
    whole_dev = {d for d in set(devs) if all(h for d2, h in zip(devs, held) if d2 == d)}
    # every held-out row is held out because its whole source group or its whole device is held out
    for r, g, d, h in zip(rows, groups, devs, held):
        if h:
            assert g in whole_src or d in whole_dev, r["id"]
    # rows of one source on one device (the neighbouring rows of one run) never straddle the split
    cells = {}
    for g, d, h in zip(groups, devs, held):
        cells.setdefault((g, d), set()).add(h)
    assert all(len(v) == 1 for v in cells.values())
    # every (engine, backend class) with several devices has at least one device wholly held out
    by_class = {}
    for r, d in zip(rows, devs):
        by_class.setdefault((r["engine"], backend_class(r["backend"])), set()).add(d)
    for c, ds in by_class.items():
        if len(ds) >= 2:
            assert ds & whole_dev, c


def test_split_proportions(rows):
    n = len(rows)
    n_held = sum(r["split"] == "held-out" for r in rows)
    assert MIN_FRAC * n <= n_held <= MAX_FRAC * n
    by_class = {}
    for r in rows:
        c = by_class.setdefault((r["engine"], backend_class(r["backend"])), [0, 0])
        c[0] += 1
        c[1] += r["split"] == "held-out"
    for c, (total, held) in by_class.items():
        if total >= 10:
            assert held >= 5, c
