#!/usr/bin/env bash
# The CPU measurement campaign of g4sim's own model behind reports/measurements/ci-cpu-2core__<this CPU>.csv
# (about 20 minutes on 2 cores; then `g4sim calibrate --write` refits the profile's efficiencies, split v4).
# Full-width, reduced-depth copies: e2b 10 layers (2 periods, 5 KV-shared), e4b 12 layers (2 periods,
# 6 KV-shared), 26b-a4b and 31b 2 layers (one sliding + one full layer: fp32 must fit in 24 GiB).
set -euo pipefail
run() { g4sim profile --decode-steps 8 "$@"; }
for dtype in bf16 fp32; do
  run --model e2b --layers 10 --ctx 256,512,1024,2048 --dtype "$dtype"
  run --model e4b --layers 12 --ctx 256,512,1024,2048 --dtype "$dtype"
  run --model 26b-a4b --layers 2 --ctx 512,1024,2048 --dtype "$dtype"
  run --model 31b --layers 2 --ctx 512,1024,2048 --dtype "$dtype"
done
for quant in int8 int4-g128; do
  run --model e2b --layers 10 --ctx 512,1024 --quant "$quant"
  run --model e4b --layers 12 --ctx 512,1024 --quant "$quant"
  run --model 26b-a4b --layers 2 --ctx 1024 --quant "$quant"
  run --model 31b --layers 2 --ctx 1024 --quant "$quant"
done
