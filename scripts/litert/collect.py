"""Collect raw benchmark/export outputs into results.csv, exports.csv, kv_inputs.csv and results.json."""
import glob, json, os, re, csv
os.chdir(os.environ.get("OUT", "/tmp/litert_measure"))
def grab(pat, text, cast=float):
    m = re.search(pat, text); return cast(m.group(1)) if m else None
cpu = open("lscpu.txt").read()
cpu_model = grab(r"Model name:\s*(.+)", cpu, str); flags = grab(r"Flags:\s*(.+)", cpu, str)
rows = []
for meta in sorted(glob.glob("raw/*.meta")):
    tag = os.path.basename(meta)[:-5]; base = meta[:-5]
    m = open(meta).read(); out = open(base + ".out").read() if os.path.exists(base + ".out") else ""
    tm = open(base + ".time").read() if os.path.exists(base + ".time") else ""
    rss = json.load(open(base + ".rss.json")) if os.path.exists(base + ".rss.json") else {}
    cache = re.findall(r"(\d+) \S+ (\S+\.xnnpack_cache)", m)
    pk = rss.get("peak_kB", {})
    rows.append({
        "tag": tag, "cmd": grab(r"cmd: (.+)", m, str), "rc": grab(r"rc: (\d+)", m, int),
        "load_before": grab(r"uptime_before:.*load average: ([\d.]+)", m), "load_after": grab(r"uptime_after:.*load average: ([\d.]+)", m),
        "prefill_tok_s": grab(r"Prefill speed:\s+([\d.]+)", out), "decode_tok_s": grab(r"Decode speed:\s+([\d.]+)", out),
        "init_s": grab(r"Init time:\s+([\d.]+)", out), "ttft_s": grab(r"Time to first token:\s+([\d.]+)", out),
        "max_num_tokens_printed": grab(r"Max number of tokens\s*:\s*(\d+)", out, int),
        "clamp_warning": "larger than what the static model supports" in out,
        "time_maxrss_kB": grab(r"Maximum resident set size \(kbytes\): (\d+)", tm, int),
        "wall": grab(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", tm, str),
        "peak_VmRSS_kB": pk.get("VmRSS"), "peak_RssAnon_kB": pk.get("RssAnon"), "peak_RssFile_kB": pk.get("RssFile"),
        "peak_RssShmem_kB": pk.get("RssShmem"),
        "xnnpack_cache_bytes": int(cache[-1][0]) if cache else None,
        "cpu": cpu_model})
with open("results.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
ex = []
for t in sorted(glob.glob("export_*.time")):
    tag = t[len("export_"):-5]; tm = open(t).read(); log = open(f"export_{tag}.log").read()
    up = open(f"export_{tag}.uptime").read() if os.path.exists(f"export_{tag}.uptime") else ""
    d = f"out_{tag}"
    files = {os.path.basename(p): os.path.getsize(p) for p in sorted(glob.glob(d + "/*"))}
    ex.append({"tag": tag, "cmd": grab(r'Command being timed: "(.+)"', tm, str), "wall": grab(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", tm, str),
               "user_s": grab(r"User time \(seconds\): ([\d.]+)", tm), "sys_s": grab(r"System time \(seconds\): ([\d.]+)", tm),
               "maxrss_kB": grab(r"Maximum resident set size \(kbytes\): (\d+)", tm, int),
               "load_before": grab(r"load average: ([\d.]+)", up),
               "litertlm_bytes": files.get("model.litertlm"), "model_quantized_tflite_bytes": files.get("model_quantized.tflite"),
               "embedder_quantized_bytes": files.get("embedder_quantized.tflite"), "ple_quantized_bytes": files.get("per_layer_embedder_quantized.tflite"),
               "model_float_tflite_bytes": files.get("model.tflite"), "files": json.dumps(files)})
with open("exports.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(ex[0])); w.writeheader(); w.writerows(ex)
kv = []; sigs = {}
for s in sorted(glob.glob("sigs_*.json")):
    tag = s[5:-5]; j = json.load(open(s)); sigs[tag] = {}
    for sig, v in j["signatures"].items():
        kvb = 0
        for n, t in v["inputs"].items():
            if n.startswith("kv_cache"):
                b = 4
                for x in t["shape"]: b *= x
                kvb += b
                kv.append({"model": tag, "signature": sig, "input": n, "shape": "x".join(map(str, t["shape"])), "dtype": t["dtype"], "bytes": b})
        sigs[tag][sig] = {"n_ops": v["n_ops"], "n_fc": v["n_fc"], "fc_weight_elems": v["fc_weight_elems"], "matmul_macs": v["matmul_macs"],
                          "kv_inputs": sum(1 for n in v["inputs"] if n.startswith("kv_cache")), "kv_bytes": kvb,
                          "outputs": sorted(n for n in v["outputs"] if not n.startswith("kv_cache"))}
with open("kv_inputs.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(kv[0])); w.writeheader(); w.writerows(kv)
# RssAnon vs cache_length (disk cache, no warmup engine)
pts = {c: next(r["peak_RssAnon_kB"] for r in rows if r["tag"] == t) for c, t in
       ((1024, "L10_S5_c1024_disk_sw"), (4096, "L10_S5_disk_sw"), (16384, "L10_S5_c16384_disk_sw"))}
n = len(pts); xs = list(pts); ys = [pts[x] * 1024 for x in xs]
mx = sum(xs) / n; my = sum(ys) / n
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs); icpt = my - slope * mx
fit = {"points_RssAnon_bytes": dict(zip(xs, ys)), "slope_bytes_per_cell": slope, "intercept_bytes": icpt,
       "kv_bytes_per_cell_graph": sigs["L10_S5"]["decode"]["kv_bytes"] / 4096}
json.dump({"cpu": cpu_model, "cpu_flags": flags, "benchmarks": rows, "exports": ex, "signatures": sigs, "rss_vs_cache_length_fit": fit},
          open("results.json", "w"), indent=1)
print(json.dumps(fit, indent=1)); print(json.dumps(sigs, indent=1))
