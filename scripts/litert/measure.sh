#!/bin/bash
# Reproduce the LiteRT-LM measurements for g4sim's litertlm engine rules (random-weight Gemma-4-E2B-shaped model).
# Needs a venv ($VENV, default /tmp/ltvenv) with: pip install torch==2.13.0 litert-torch==0.10.0 litert-lm-api==0.18.1
# litert-lm==0.18.1 (pulls ai-edge-litert 2.3.0, ai-edge-quantizer, transformers). About 12 GB RAM and 10 GB disk per
# export; ~1 h on 2 cores. Writes everything under $OUT (default /tmp/litert_measure); the committed copies of its
# tables are reports/measurements/litert-lm/ (results.csv, exports.csv, kv_inputs.csv, lscpu.txt, versions.txt).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
export E2B_CONFIG=${E2B_CONFIG:-$HERE/../../tests/data/configs/e2b/config.json}
export OUT=${OUT:-/tmp/litert_measure}
mkdir -p "$OUT"; cp "$HERE"/*.py "$HERE"/bench.sh "$OUT"/; cp -r "$HERE"/shim "$OUT"/
cd "$OUT"
. "${VENV:-/tmp/ltvenv}"/bin/activate
export PYTHONPATH=$OUT/shim   # tensorflow shim (litert-torch imports tensorflow.lite.python.schema_py_generated)
lscpu > lscpu.txt; pip list 2>/dev/null | grep -iE "litert|torch|transformers|quantizer" > versions.txt

# 1+2. checkpoints (random bf16 weights, 10 layers = 2 x (4 sliding + 1 full), vocab 32768) + WordLevel tokenizer
python build_ckpt.py ckpt_L10_S5 10 5 32768     # num_kv_shared_layers=5
python build_ckpt.py ckpt_L10_S0 10 0 32768     # baseline: no KV sharing
# NOTE: each export needs ~12 GB RAM and ~3 GB disk (float tflite, deleted after); checkpoints are 2.2 GB each

# 3. export (defaults: prefill_lengths [128], dynamic_wi8_afp32, cache_length 4096 unless given)
exp() { T=$1; C=$2; shift 2; uptime > export_$T.uptime
  /usr/bin/time -v -o export_$T.time litert-torch export_hf --model=$C --output_dir=out_$T --externalize_embedder=True \
    --export_vision_encoder=False --export_audio_encoder=False --keep_temporary_files=True "$@" > export_$T.log 2>&1
  uptime >> export_$T.uptime; mkdir -p models/$T; ln -f out_$T/model.litertlm models/$T/$T.litertlm
  rm -f out_$T/model.tflite out_$T/embedder.tflite out_$T/per_layer_embedder.tflite; }  # float copies, ~2.6 GB
exp L10_S5 ckpt_L10_S5
exp L10_S0 ckpt_L10_S0
exp L10_S5_c16384 ckpt_L10_S5 --cache_length=16384
exp L10_S5_c1024 ckpt_L10_S5 --cache_length=1024
exp L10_S5_int4 ckpt_L10_S5 --quantization_recipe=dynamic_wi4_afp32

# 4. signatures / KV inputs / op counts; file sections
for T in L10_S5 L10_S0 L10_S5_c16384 L10_S5_c1024 L10_S5_int4; do
  python inspect_tflite.py out_$T/model_quantized.tflite sigs_$T.json > sigs_$T.txt
  python big_tensors.py out_$T/model_quantized.tflite > bigtensors_$T.txt
  python -m litert_lm_builder.litertlm_peek_main --litertlm_file=models/$T/$T.litertlm > peek_$T.txt
  litert-lm describe models/$T/$T.litertlm > describe_$T.txt
done

# 5. benchmarks (bench.sh: /usr/bin/time -v + /proc polling of RssAnon/RssFile/RssShmem; uptime before/after)
B="-p 256 -d 64 --backend cpu --cpu-thread-count 2"
for T in L10_S5 L10_S0 L10_S5_c1024 L10_S5_c16384 L10_S5_int4; do
  M=models/$T/$T.litertlm
  rm -f models/$T/*.xnnpack_cache
  ./bench.sh ${T}_cachebuild_sw $M $B --skip-warmup            # first run: writes the XNNPACK weight cache
  ./bench.sh ${T}_disk_sw $M $B --skip-warmup                  # memory, disk cache, no warmup engine
  ./bench.sh ${T}_memory_sw $M $B --skip-warmup --cache memory
  ./bench.sh ${T}_no_sw $M $B --skip-warmup --cache no
  ./bench.sh ${T}_disk_runs3 $M $B --runs 3                    # timing: warmup + 3 runs averaged
done
for n in 1024 2048 8192 16384; do
  ./bench.sh L10_S5_disk_m${n}_sw models/L10_S5/L10_S5.litertlm $B --skip-warmup --max-num-tokens $n
done
python collect.py   # -> results.csv / results.json

# 6. speed rows of the int4 file (reports/measurements/litert-lm/speed.csv), on a quiet machine; split written
#    before they ran: prompts 256 / 1024 calibrate litert-lm/cpu-x86, 512 / 2048 are held out
M=models/L10_S5_int4/L10_S5_int4.litertlm
for pg in "256 64" "1024 64" "512 128" "2048 128"; do set -- $pg
  ./bench.sh speed_int4_p$1_d$2 $M -p $1 -d $2 --backend cpu --cpu-thread-count 2 --runs 3
done
python - <<'PY'
import csv, re
rows = []
for (p, g, split) in ((256, 64, "calibration"), (1024, 64, "calibration"), (512, 128, "held-out"), (2048, 128, "held-out")):
    tag = f"speed_int4_p{p}_d{g}"
    out, meta = open(f"raw/{tag}.out").read(), open(f"raw/{tag}.meta").read()
    load = re.findall(r"load average: ([\d.]+)", meta)
    rows.append(dict(tag=tag, model="L10_S5_int4", config="configs/L10_S5/config.json", format="litertlm",
                     cache_length=4096, prompt_tokens=p, gen_tokens=g, threads=2, device_profile="epyc-zen5-2vcpu",
                     prefill_tokens_per_s=float(re.search(r"Prefill speed:\s+([\d.]+)", out).group(1)),
                     decode_tokens_per_s=float(re.search(r"Decode speed:\s+([\d.]+)", out).group(1)),
                     load_1min_before=load[0], load_1min_after=load[1], split=split,
                     cpu=open("lscpu.txt").read().split("Model name:")[1].split("\n")[0].strip(),
                     date_utc=__import__("datetime").date.today().isoformat(),
                     command=re.search(r"cmd: (.*)", meta).group(1).replace("models/", "")))
with open("speed.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n"); w.writeheader(); w.writerows(rows)
PY
# device_profile: name the profile of the machine this ran on (its cpu_model must match); the committed rows ran on
# epyc-zen5-2vcpu. Copy speed.csv and the other tables into reports/measurements/litert-lm/ by hand after checking.
