#!/usr/bin/env bash
# Probe every config of benchmarks/coverage_configs/ (the reference QLoRA recipe at 512 tokens) with
# expandable segments and --find-min, all in parallel, one JSON per config under $OUT/coverage/.
#   . scripts/device_setup.sh && bash scripts/probe_coverage.sh            # one GPU, a few minutes
#   OUT=/tmp/o bash scripts/probe_coverage.sh --device cpu                 # what a CPU can check
#   TYPES="granitemoe qwen3_moe" bash scripts/probe_coverage.sh            # only these configs
# Then: python -m benchmarks.coverage_measured $OUT/coverage   (appends the measured column to reports/coverage.md)
set -u
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT/coverage"
EXTRA=("$@")
pids=()
for cfg in benchmarks/coverage_configs/*.json; do
  t=$(basename "$cfg" .json)
  case " ${TYPES:-$t} " in *" $t "*) ;; *) continue ;; esac
  targets=q_proj,v_proj
  [ "$t" = phi3 ] && targets=qkv_proj
  flags=(--expandable-segments --find-min)
  case " ${EXTRA[*]:-} " in *" --device cpu "*) flags=(--steps 1) ;; esac
  python3 -m vramfit probe --model "$cfg" --targets "$targets" --seq-len 512 "${flags[@]}" --json "${EXTRA[@]}" \
    > "$OUT/coverage/$t.json" 2> "$OUT/coverage/$t.err" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
for f in "$OUT"/coverage/*.json; do echo "$(basename "$f"): $(head -c 120 "$f")"; done
exit $rc
