#!/bin/bash
# usage: bench.sh TAG MODEL [litert-lm benchmark args...]; writes raw/TAG.{out,time,meta}
set -u
TAG=$1; MODEL=$2; shift 2
OUT=${OUT:-/tmp/litert_measure}; mkdir -p $OUT/raw
R=$OUT/raw/$TAG
. "${VENV:-/tmp/ltvenv}"/bin/activate
{ echo "cmd: litert-lm benchmark $MODEL $*"; echo "uptime_before: $(uptime)"; } > $R.meta
RSSWATCH_OUT=$R.rss.json /usr/bin/time -v -o $R.time python $OUT/rsswatch.py litert-lm benchmark "$MODEL" "$@" > $R.out 2>&1
echo "rc: $?" >> $R.meta
echo "uptime_after: $(uptime)" >> $R.meta
echo "files_beside_model:" >> $R.meta; ls -la --time-style=+%T "$(dirname $MODEL)" | grep -v tflite >> $R.meta
grep -E "Prefill speed|Decode speed|Init time|Time to first" $R.out
grep -E "Maximum resident|Elapsed" $R.time; cat $R.rss.json; echo
