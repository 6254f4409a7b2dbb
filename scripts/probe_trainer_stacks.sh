#!/usr/bin/env bash
# Probe the trainer stacks (TRL's SFTTrainer with its fused head, Liger's fused linear cross-entropy) on a
# GPU, runs in parallel, one JSON per run under OUT (default: $OUT). After `. scripts/device_setup.sh`.
#
#   bash scripts/probe_trainer_stacks.sh [OUT]
#
# ONLY=REGEX keeps the runs whose name matches; EXTRA="..." is appended to every run's flags (the last
# flag wins: EXTRA="--device cpu --seq-len 64 --steps 2" checks the pipeline on a CPU).
#
# Each line: a name and the vramfit probe flags (three families, one with a 256k vocabulary).
out=${1:-$OUT}
mkdir -p "$out"
runs=(
  "llama-3.2-1b_trl_s1024_b2|--model llama-3.2-1b --trainer trl --seq-len 1024 --batch-size 2"
  "llama-3.2-1b_trl_noupcast_s1024_b2|--model llama-3.2-1b --trainer trl --no-kbit-upcast --seq-len 1024 --batch-size 2"
  "llama-3.2-1b_liger_s1024_b2|--model llama-3.2-1b --loss liger --seq-len 1024 --batch-size 2"
  "qwen2.5-0.5b_trl_s1024_b2|--model qwen2.5-0.5b --trainer trl --seq-len 1024 --batch-size 2"
  "qwen2.5-0.5b_liger_s1024_b2|--model qwen2.5-0.5b --loss liger --seq-len 1024 --batch-size 2"
  "gemma-2-2b_trl_s1024_b2|--model gemma-2-2b --trainer trl --seq-len 1024 --batch-size 2"
  "gemma-2-2b_trl_noupcast_s1024_b2|--model gemma-2-2b --trainer trl --no-kbit-upcast --seq-len 1024 --batch-size 2"
  "gemma-2-2b_liger_s1024_b2|--model gemma-2-2b --loss liger --seq-len 1024 --batch-size 2"
  "mistral-7b_trl_s2048_b1|--model mistral-7b --trainer trl --seq-len 2048"
  "llama-3.2-1b_trl_paddingfree_sdpa_s1024_b4|--model llama-3.2-1b --trainer trl --padding-free --seq-len 1024 --batch-size 4"
  "qwen2.5-0.5b_trl_lora_all-linear_s2048_b2|--model qwen2.5-0.5b --trainer trl --method lora --targets all-linear --optimizer adamw_torch --seq-len 2048 --batch-size 2"
)
pids=()
for r in "${runs[@]}"; do
  name=${r%%|*}; flags=${r#*|}
  [[ -n "$ONLY" && ! "$name" =~ $ONLY ]] && continue
  # shellcheck disable=SC2086
  ( python3 -m vramfit probe $flags $EXTRA --json > "$out/$name.json" 2> "$out/$name.err"; echo "$name rc=$?" ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
