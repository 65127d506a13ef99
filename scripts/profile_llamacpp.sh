#!/usr/bin/env bash
# llama.cpp's own CPU kernels measured at full width and reduced depth (issue 10 part 3, issue 11's CPU rows):
# GGUF files written from the converter's tensor table with random F16 weights and quantized by
# llama_model_quantize (cached in $G4SIM_GGUF_CACHE or ~/.cache/g4sim/gguf; ~30 GB while F16 sources exist),
# loaded by llama-cpp-python 0.3.36 (scripts/llamacpp_quantize_check.py --install: native and AMX off) with
# llama-server's defaults, 2 threads.  Rows go to reports/measurements/<profile>__<this CPU>.csv with the CPU
# detected and the 1-minute load.  The configurations follow split v3 (g4sim/measure/split.py): calibration
# e2b 10L, 26b-a4b 2L, 31b 2L; held-out e2b 15L, e4b 12L, 26b-a4b 6L, 31b 6L.
# About 15 minutes on 2 cores once the files exist.  Run: bash scripts/profile_llamacpp.sh
set -euo pipefail
for fmt in q4_k_m q8_0; do
  g4sim profile --impl llamacpp --quant "$fmt" --model e2b --layers 10 --ctx 512,2048 --decode-steps 16
  g4sim profile --impl llamacpp --quant "$fmt" --model 26b-a4b --layers 2 --ctx 512,2048 --decode-steps 16
  g4sim profile --impl llamacpp --quant "$fmt" --model 31b --layers 2 --ctx 512,2048 --decode-steps 16
  g4sim profile --impl llamacpp --quant "$fmt" --model e2b --layers 15 --ctx 512,2048 --decode-steps 16
  g4sim profile --impl llamacpp --quant "$fmt" --model e4b --layers 12 --ctx 512,2048 --decode-steps 16
  g4sim profile --impl llamacpp --quant "$fmt" --model 26b-a4b --layers 6 --ctx 512,2048 --decode-steps 16
  g4sim profile --impl llamacpp --quant "$fmt" --model 31b --layers 6 --ctx 512 --decode-steps 16
done
