#!/usr/bin/env bash
# Create or refresh the project's virtual environment (used by `make book` and `make test`).
# torch is installed first and pinned (2.13.0): an unpinned torch pulls the newest CUDA build.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[dev]"
# torchvision's registry wheel is a CUDA build: on a CPU-only torch its import fails
# ("operator torchvision::nms does not exist"). The hook fixes that and is a no-op where
# torchvision's compiled ops load (CUDA torch on a GPU node).
SP=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp tools/_tv_cpu_fix.py "$SP/_tv_cpu_fix.py"
echo "import _tv_cpu_fix" > "$SP/tv_cpu_fix.pth"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name mernb --display-name "mernb (.venv)" >/dev/null
"$VENV/bin/python" -c "import torch, torchvision, timm, peft, dlib; print('[install] ok: torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__)"
