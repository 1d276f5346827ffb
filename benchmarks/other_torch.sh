#!/usr/bin/env bash
# The tests against another PyTorch than the pinned one (issue 9: benchmarks/gpu_run.sh runs on a
# GPU machine's own PyTorch -- 2.11.0+cu130 on Python 3.12 today -- not on the pinned 2.14.1).
#
#   benchmarks/other_torch.sh PYTHON TORCH TORCHVISION [VENV]
#   e.g. benchmarks/other_torch.sh python3.12 2.11.0 0.26.0
#
# Makes the virtual environment VENV [/tmp/dynn-torch-TORCH] with PYTHON; installs torch==TORCH and
# torchvision==TORCHVISION (the registry's build: a CUDA one runs on a CPU too, about 5 GB), the
# library's other dependencies and test extras from pyproject.toml (unpinned, as a GPU image has
# them), the library itself with --no-deps (what gpu_run.sh does) and torchattacks with --no-deps;
# then runs the default `pytest` and the slow GPU-tool tests (gpu_check.py --tiny on the CPU, the
# gpu_run.sh rehearsal), with the real data when DYNN_DATA_DIR is set; tests needing the book or
# Ray extras skip. A machine-wide pip
# constraint (PIP_CONSTRAINT, pip.conf) is lifted for this environment only.
# Exit status: pytest's (0 all passed), 2 bad usage.
set -euo pipefail
[ $# -ge 3 ] && [ $# -le 4 ] || { echo "usage: benchmarks/other_torch.sh PYTHON TORCH TORCHVISION [VENV]" >&2; exit 2; }
PYTHON=$1 TORCH=$2 VISION=$3 VENV=${4:-/tmp/dynn-torch-$2}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v "$PYTHON" >/dev/null || { echo "other_torch: error: no interpreter '$PYTHON'" >&2; exit 2; }
for v in "$TORCH" "$VISION"; do
  [[ $v =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?([+a-z0-9.]*)?$ ]] || { echo "other_torch: error: '$v' is not a version like 2.11.0" >&2; exit 2; }
done

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
export PIP_CONSTRAINT= PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m pip install -q "torch==$TORCH" "torchvision==$VISION"
# the other dependencies and the test extra, read from pyproject.toml (torch/torchvision left out)
mapfile -t DEPS < <("$PY" - "$REPO/pyproject.toml" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for dep in project["dependencies"] + project["optional-dependencies"]["test"]:
    name = re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]
    if name not in ("torch", "torchvision"):
        print(name)
EOF
)
"$PY" -m pip install -q setuptools "${DEPS[@]}"
"$PY" -m pip install -q --no-deps --no-build-isolation -e "$REPO"
"$PY" -m pip install -q --no-deps torchattacks
"$PY" -c "import sys, torch, torchvision; print(f'python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}')"

cd "$REPO"
export DYNN_PROGRESS=0
# the default suite (tests needing the book or Ray extras, which this environment lacks, skip
# with their reason), then the slow tests of the GPU tools
"$PY" -m pytest -q -p no:cacheprovider
DYNN_SLOW=1 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu_tools.py tests/test_benchmarks.py
