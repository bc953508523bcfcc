#!/usr/bin/env bash
# Wheels for a GPU node that cannot reach PyPI and whose image holds a transformers below coin's floor
# (the H100/H200 image this project is lent has transformers 5.17.0; coin needs >=5.21, see
# coin/requirements.py). Run where PyPI is reachable, from the checkout's root:
#
#     bench/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12, the node's Python; wheels into .whl/
#
# transformers 5.21.0 is the floor: it needs nothing newer than such an image has (huggingface-hub
# >=1.31, tokenizers 0.23); 5.25 would also need huggingface-hub 2.4 and its own new dependencies.
# peft is carried at the version of constraints.txt. Torch stays the node's (its CUDA build).
# bench/gpu_check.sh installs whatever .whl/ holds. Keep .whl/ out of git (.git/info/exclude).
set -euo pipefail
pyv=${1:-3.12}
peft=$(sed -n 's/^peft==//p' constraints.txt)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyv" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "transformers==5.21.0" "peft==${peft}"
ls -l .whl
