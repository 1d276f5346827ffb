#!/usr/bin/env bash
# Prepares the folder that travels to a bare GPU machine for benchmarks/gpu_run.sh (issue 9).
#
#   benchmarks/gpu_carry.sh DATA_DIR [DEST]
#
# DEST [.device-data beside this repository's files; git-ignored] receives
#   cifar10-jpeg.tar.gz   copied from DATA_DIR (the archive gpu_run.sh reads in place, 19 MB)
#   site/                 torchattacks (pure Python, installed with --no-deps; a GPU image has what
#                         it imports) for gpu_check.py's PGD comparison; left out with a warning
#                         when pip cannot fetch it (that one comparison is then skipped there)
# and prints its size, which must stay under the 64 MiB a carry may hold with the repository.
# Then, on the GPU machine, from the repository root:  bash benchmarks/gpu_run.sh OUTDIR
# Exit status: 0 prepared; 2 bad usage or no archive in DATA_DIR.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: benchmarks/gpu_carry.sh DATA_DIR [DEST]" >&2; exit 2; }
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$1
DEST=${2:-$REPO/.device-data}
TORCHATTACKS=${DYNN_TORCHATTACKS_VERSION:-3.5.1}   # the version the equivalence tests use
ARCHIVE=$DATA/cifar10-jpeg.tar.gz
[ -f "$ARCHIVE" ] || { echo "gpu_carry: error: no $ARCHIVE (DATA_DIR must hold cifar10-jpeg.tar.gz; see the data README)" >&2; exit 2; }

mkdir -p "$DEST"
cp -f "$ARCHIVE" "$DEST/cifar10-jpeg.tar.gz"
if python3 -m pip install -q --no-deps --no-compile --upgrade --target "$DEST/site" "torchattacks==$TORCHATTACKS"; then
  # torchattacks alone (its wheel also ships a stub `robustbench` package, and metadata)
  find "$DEST/site" -mindepth 1 -maxdepth 1 ! -name torchattacks -exec rm -rf {} +
else
  echo "gpu_carry: warning: torchattacks could not be installed; gpu_check.py will skip its PGD comparison" >&2
fi
echo "gpu_carry: $DEST ready ($(du -sh "$DEST" | cut -f1)); carry it, e.g. run(..., carry=[\"${DEST#"$REPO"/}\"])"
