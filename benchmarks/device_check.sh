#!/usr/bin/env bash
# The GPU checks, in one call of a device machine (its Python 3.12 image holds torch; the rest comes as wheels):
#   here:   bash benchmarks/device_wheels.sh
#   there:  bash benchmarks/device_check.sh        (device tool: carry [".whl"], timeout_s 450; about 5 minutes)
# Writes gpu.txt, tests.log (tests/test_cuda.py, and the CUDA cases of the dynamics model's and the termination rules'
# tests) and the logs of benchmarks/sac_updates.py, dynamics_timing.py and pmac_step_cost.py on the GPU into $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# nothing renders: MuJoCo needs no GL library (with "egl" a missing libGL would break `import mujoco`)
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 MUJOCO_GL=disable
{ nvidia-smi -L; python3 -c "import torch, stable_baselines3, gymnasium, mujoco; print('torch', torch.__version__,
torch.cuda.get_device_name(0), 'sb3', stable_baselines3.__version__, 'gymnasium', gymnasium.__version__, 'mujoco',
mujoco.__version__)"; } 2>&1 | tee "$OUT/gpu.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$OUT/tests.log"
timeout 60 python3 -m pytest -q -p no:cacheprovider -rs -k "cuda or devices" tests/test_dynamics.py \
    tests/test_termination.py 2>&1 | tee -a "$OUT/tests.log"
timeout 45 python3 benchmarks/sac_updates.py --device cuda --updates 500 2>&1 | tee "$OUT/sac_updates.log"
timeout 30 python3 benchmarks/dynamics_timing.py --device cuda 2>&1 | tee "$OUT/dynamics_timing.log"
timeout 150 python3 benchmarks/pmac_step_cost.py --device cuda --at 5000 100000 --steps 250 --prime-rounds 1 \
    --project 100000 2>&1 | tee "$OUT/pmac_step_cost_cuda.log"
