#!/usr/bin/env bash
# The timing benchmarks of docs/results.md ("Performance"), one after the other. Run on a quiet machine (nothing else
# running), from the repository root: bash benchmarks/quiet_benchmarks.sh [OUT_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/results/benchmarks_$(date +%F)}")  # a relative OUT_DIR: from where the script was called
cd "$ROOT/benchmarks"
PY=../.venv/bin/python
DATA=../runs/hopper_sac_52k.npz
mkdir -p "$OUT" ../runs
[ -f "$DATA" ] || $PY collect_run_data.py --env Hopper-v4 --timesteps 52000 --out "$DATA"
uptime
$PY sac_updates.py --threads 2 --updates 1000 > "$OUT/sac_updates_2threads.log" 2>&1
$PY sac_updates.py --threads 1 --updates 1000 > "$OUT/sac_updates_1thread.log" 2>&1
$PY sac_profile.py --threads 1 --updates 100 > "$OUT/sac_profile.log" 2>&1  # (--side-by-side runs nothing else)
$PY sac_profile.py --side-by-side 2 --seconds 20 > "$OUT/sac_profile_side_by_side.log" 2>&1
# --ent-coef auto: the setting of the published table (the script's default is PMAC's fixed 0.2)
$PY pmac_step_cost.py --data "$DATA" --at 5000 25000 50000 100000 --threads 2 --steps 500 --project 100000 125000 \
    --ent-coef auto > "$OUT/pmac_step_cost_2threads.log" 2>&1
$PY pmac_step_cost.py --data "$DATA" --at 5000 50000 100000 --threads 1 --steps 250 --prime-rounds 2 \
    --project 100000 125000 --ent-coef auto > "$OUT/pmac_step_cost_1thread.log" 2>&1
$PY memory.py > "$OUT/memory.log" 2>&1
uptime
