#!/usr/bin/env bash
# Download, here, the wheels that the GPU machine's Python 3.12 image lacks (SB3, gymnasium, MuJoCo and their small
# dependencies; it has torch, numpy, pytest, ...) into .whl/ (git ignores it through .git/info/exclude), at the versions
# of .venv. Then, on the GPU machine: bash benchmarks/device_check.sh (device tool, carry [".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info && echo "/.whl/" >> .git/info/exclude; }
rm -rf .whl  # one version of each package: two would stop the install there
PIP=".venv/bin/python -m pip"
specs=()
for name in stable-baselines3 gymnasium farama-notifications mujoco mujoco-core mujoco-studio glfw pyopengl websockets; do
    specs+=("$name==$($PIP show "$name" | sed -n 's/^Version: //p')")
done
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${specs[@]}"
ls -1 .whl && du -sh .whl
