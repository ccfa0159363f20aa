#!/usr/bin/env bash
# GPU check (< 5 minutes on one GPU): raw vs full-stack throughput for teacher and student.
#   scripts/gpu_check.sh                 # needs a CUDA GPU, a CUDA torch and a tritonserver
#   scripts/gpu_check.sh --dry-run       # CPU smoke test with tiny models
# Extra flags go to scripts/gpu_check.py (see --help). Results: runs/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

if [[ " $* " != *" --dry-run "* ]]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA GPU (a CPU build?); install a CUDA torch or use --dry-run")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY
fi
# Hard stop inside the 5-minute budget; the script itself shuts its stack down on SIGTERM/INT.
exec timeout --signal=INT --kill-after=20 280 "$PY" scripts/gpu_check.py "$@"
