#!/usr/bin/env bash
# The GPU check (docs/real-models.md, "GPU check") as one command on a GPU node:
#
#     bench/gpu_check.sh OUT_DIR            # OUT_DIR/gpu.json, bench_gpu.log, versions.txt
#
# Run it from the checkout's root; coin need not be installed (the checkout goes on PYTHONPATH). On a
# node that cannot reach PyPI and whose image holds a transformers below coin's floor, the wheels in
# .whl/ (or $GPU_CHECK_WHEELS), made where PyPI is reachable by bench/gpu_wheels.sh, are installed
# into a private folder first. Arguments after OUT_DIR go to bench_gpu.py. The check stops after
# GPU_CHECK_SECONDS (default 480); bench_gpu.py writes gpu.json after every measurement, so a cut-off
# check keeps what it measured ("complete": false).
set -uo pipefail
out=${1:?usage: bench/gpu_check.sh OUT_DIR}
mkdir -p "$out"
py=${PYTHON:-python3}
wheels=${GPU_CHECK_WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/coin-wheels \
        "$wheels"/*.whl || exit 2
    export PYTHONPATH=/tmp/coin-wheels${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    "$py" - <<'PY'
import platform
import torch, transformers, peft, accelerate
print("python", platform.python_version(), "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| transformers", transformers.__version__, "| peft", peft.__version__, "| accelerate", accelerate.__version__)
print("cuda available:", torch.cuda.is_available(), "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
} 2>&1 | tee "$out/versions.txt"
timeout "${GPU_CHECK_SECONDS:-480}" "$py" bench/bench_gpu.py --json "$out/gpu.json" "${@:2}" 2>&1 | tee "$out/bench_gpu.log"
status=${PIPESTATUS[0]}
[ "$status" = 124 ] && echo "gpu_check: stopped after ${GPU_CHECK_SECONDS:-480} s; gpu.json keeps what was measured"
[ "$status" = 2 ] && echo "gpu_check: on a node without PyPI, bench/gpu_wheels.sh (run where PyPI is reachable) makes $wheels/"
exit "$status"
