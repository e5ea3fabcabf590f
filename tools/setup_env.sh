#!/usr/bin/env bash
# Set up attn2scale on this machine: install the pinned dependencies and build
# the extension in place. CUDA kernels are compiled when a CUDA toolkit is
# found (FORCE_CUDA=1 insists, FORCE_CPU=1 skips them); no GPU is needed to
# compile. Usage: bash tools/setup_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
export MAX_JOBS=${MAX_JOBS:-2}
"$PY" -m pip install -q -r requirements-dev.txt
"$PY" -m pip install -q --no-build-isolation -e .
"$PY" - <<'PY'
from attn2scale import ops
print(f"attn2scale: extension={'yes' if ops.extension_available() else 'NO'}, "
      f"cuda kernels={'yes' if ops.cuda_kernels_available() else 'no'}")
PY
