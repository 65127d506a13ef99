#!/usr/bin/env bash
# transformers' own Gemma 4 measured beside g4sim's model (issue 10, part 3): full width, reduced depth,
# sdpa and eager, on this CPU.  Rows go to reports/measurements/<profile>__<this CPU>.csv with provenance
# (including the 1-minute load: speeds taken while other work ran are marked by it).
# About 10 minutes on 2 cores; keep the machine quiet (the rows record the CPU other processes took).  Run: bash scripts/profile_engines.sh
set -euo pipefail
for impl in transformers-sdpa transformers-eager; do
  g4sim profile --impl "$impl" --model e2b --layers 10 --ctx 512,2048 --dtype bf16 --decode-steps 8
  g4sim profile --impl "$impl" --model e4b --layers 12 --ctx 512,2048 --dtype bf16 --decode-steps 8
  g4sim profile --impl "$impl" --model 26b-a4b --layers 2 --ctx 512,2048 --dtype bf16 --decode-steps 8
  g4sim profile --impl "$impl" --model 31b --layers 2 --ctx 512,2048 --dtype bf16 --decode-steps 8
  # split v4: the MoE at fp32 calibrates transformers' routed-expert term, as g4sim's own fp32 rows do
  g4sim profile --impl "$impl" --model 26b-a4b --layers 2 --ctx 512,2048 --dtype fp32 --decode-steps 8
done
