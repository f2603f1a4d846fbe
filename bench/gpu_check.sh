#!/usr/bin/env bash
# The GPU check (bench/README.md, "GPU check"): CartPole agents trained in one call on a GPU.
#
#   bash bench/gpu_check.sh          # from the repository root, on a machine whose JAX sees a GPU
#
# 1. `bench/scaling.py` at 1, 64, 512 and 2048 agents, 100 updates each (51,200 env steps per
#    agent), median of 3 calls: aggregate env steps/s against the number of agents.
# 2. 2048 agents x 976 updates (the whole 500k-step classic run) in one call, once: the figure
#    to set beside PureJaxRL's published ~1e7 env steps/s (2048 agents x 5e5 steps in ~98 s on
#    an A100) and the target of 2e7.
# 3. Step 1 again at BF16_AGENTS (default 2048) agents with bfloat16 matmuls
#    (`Config.matmul_dtype`), for the float32 / bfloat16 ratio on the GPU; BF16_AGENTS= skips it.
#
# Packages the machine lacks can sit as wheels in .whl/ (installed into /tmp/site first).
# Results go under $OUT (default bench/results/gpu): nvidia-smi.txt, scaling.{json,md,log} and
# whole-run/scaling.{json,md} with whole-run.log, bfloat16/scaling.{json,md} with bfloat16.log.
# AGENTS, UPDATES, WHOLE_AGENTS, WHOLE_UPDATES and BF16_AGENTS override the sizes; REQUIRE_GPU=0
# lets a smoke run go on a CPU.
set -uo pipefail

out=${OUT:-bench/results/gpu}
agents=${AGENTS:-1 64 512 2048}
updates=${UPDATES:-100}
whole_agents=${WHOLE_AGENTS:-2048}
whole_updates=${WHOLE_UPDATES:-976}
bf16_agents=${BF16_AGENTS-2048}
mkdir -p "$out/whole-run"

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

python3 - <<'EOF' || exit
import os

import jax

device = jax.devices()[0]
print(f"jax {jax.__version__}, backend {jax.default_backend()}, {device} ({device.device_kind})")
if os.environ.get("REQUIRE_GPU", "1") != "0" and jax.default_backend() != "gpu":
    raise SystemExit("gpu_check: JAX sees no GPU (REQUIRE_GPU=0 runs it anyway)")
EOF
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"
fi

# shellcheck disable=SC2086  # the agent counts are one argument each
python3 bench/scaling.py --agents $agents --updates "$updates" --repeats 3 --out "$out" 2>&1 \
    | tee "$out/scaling.log"
python3 bench/scaling.py --agents "$whole_agents" --updates "$whole_updates" --repeats 1 \
    --out "$out/whole-run" 2>&1 | tee "$out/whole-run.log"
if [ -n "$bf16_agents" ]; then
    # shellcheck disable=SC2086
    python3 bench/scaling.py --agents $bf16_agents --updates "$updates" --repeats 3 \
        --matmul-dtype bfloat16 --out "$out/bfloat16" 2>&1 | tee "$out/bfloat16.log"
fi
