#!/usr/bin/env bash
# The whole real run as one command on a bare GPU machine (issue 9 section 5).
#
#   benchmarks/gpu_run.sh OUTDIR [ARCHIVE]
#
# Claim: called (again and again) on a bare machine with its own PyTorch (>= 2.11, Python 3.12) and
# no package registry, it produces every results table of the `fast` profile for cifar10-jpeg (all
# questions, no notebooks), each call stopping cleanly before a wall-time limit and the next call
# resuming where the last one stopped, and packs the tables and records into at most 8 files of
# under 16 MiB in OUTDIR.
#
# Stages, each timed (a stage whose fingerprint -- code version, profile, dataset, parameters --
# is recorded as done is skipped; a killed stage resumes from the store on the next call):
#   install  the checkout on PYTHONPATH; `pip install --no-deps --no-build-isolation --no-index -e .`
#            when dynn_lib is not importable from this checkout yet (PYTHONPATH alone when pip cannot)
#   data     ARCHIVE linked as $STATE/data/cifar10-jpeg.tar.gz: the library reads the archive in
#            place, as a stream, and caches the decoded tensors in $STATE/cache (no extraction)
#   check    benchmarks/gpu_check.py, at most DYNN_GPU_RUN_CHECK_S seconds; a FAIL stops the run
#   schedule the schedule probe (`dynn schedule-probe`, dynn_lib.floors.probe_epochs): the static
#            networks (ResNet-56, VGG-16, MobileNet) trained at each step of DYNN_GPU_RUN_EPOCHS
#            (cnn_epochs, with the step's overrides if any) in turn until all clear their accuracy
#            floors; every later stage runs with that step's fields (the last step tried when none
#            passes) and reuses those models; the records
#            go to results/schedule-checks/, which the methods page shows
#   jobs     only with more than one worker (DYNN_GPU_RUN_WORKERS): the questions' job graph,
#            K jobs at once sharing the GPU (`dynn plan --run --workers K`), which publishes every
#            question as `dynn run` would: the question stages below are then marked done
#            (status "published") instead of starting one interpreter each to find their tables
#   zoo rq4 rq1 rq2 rq3 appendix
#            (RQ4 second: it needs only the zoo's models, and holds the paper's numeric Tables 1-3, so a
#            run cut short by its slot still brings them back; render a partial run with
#            `dynn reproduce --no-experiments --allow-missing`)
#            `python -m dynn_lib.cli run Q --profile P --dataset D --results $STATE/results
#            --store $STATE/store`, each under `timeout -s INT` so that it stops before the limit
#            (every library write is atomic: temp file + rename; training resumes from its last
#            checkpoint, every checkpoint_every epochs / checkpoint_minutes of the profile)
#   pack     OUTDIR/results.tar.gz (results tables + records), store.tar.gz (store records and
#            tables, no model or checkpoint: *.pt left out), selfcheck.json, syncs.txt,
#            timings.json (every stage of every call), log.txt (all calls)
#   snapshots while a stage runs (every DYNN_GPU_RUN_SNAPSHOT_S seconds) and after each stage:
#            OUTDIR/results.tar.gz, log.txt and selfcheck.json as they stand, each written whole and
#            then renamed, so a call killed from outside (a slot's hard limit, the OOM killer) still
#            leaves the results published so far in OUTDIR (the pack at the end replaces them)
#
# Environment (defaults in brackets):
#   DYNN_GPU_RUN_ARCHIVE   the carried archive when ARCHIVE is not given [.device-data/cifar10-jpeg.tar.gz]
#   DYNN_GPU_RUN_STATE     persistent folder for store, results, cache and logs [/tmp/dynn-gpu-run];
#                          keep it outside every carried path (a carry replaces its folder)
#   DYNN_GPU_RUN_LIMIT_S   wall-time limit of one call in seconds [510 = 8.5 min]
#   DYNN_GPU_RUN_RESERVE_S seconds of the limit kept for packing [30]
#   DYNN_GPU_RUN_CHECK_S   self-check budget in seconds [180]; 0 skips the check
#   DYNN_GPU_RUN_SNAPSHOT_S seconds between two snapshots of the results while a stage runs [60]; 0: none
#   DYNN_GPU_RUN_CHECK_ARGS extra gpu_check.py arguments (e.g. --tiny) []
#   DYNN_GPU_RUN_ON_FAIL   what a FAIL of the check does: stop (no experiment runs) or continue (the
#                          run goes on; the failed checks travel with the results (gpu-checks/), and
#                          every page of a book built from them opens with a banner naming them) [stop].
#                          In a slot too short to fix and call again, continue loses nothing: a FAIL
#                          that is the check's own (the first H100 slot's) then costs no results
#   DYNN_GPU_RUN_PROFILE   profile [fast]        DYNN_GPU_RUN_DATASET  dataset [cifar10-jpeg]
#   DYNN_GPU_RUN_QUESTIONS questions, in order ["zoo rq4 rq1 rq2 rq3 appendix"]
#   DYNN_GPU_RUN_PARAMS    profile-field overrides for every question, "NAME=VALUE ..." []; e.g.
#                          "cuda_graph=False" trains every step eagerly, should graphed training fail
#                          on this GPU (in no artefact key: finished work is reused); "fired_bucket=N"
#                          pads the fired-loss attacks' shrinking batches to multiples of N rows (1: no
#                          padding; also in no key). Without it the run takes the check's
#                          recommendation: fired_bucket=1 when its fired_shapes section found the
#                          unpadded attack faster on this GPU, else the profile's (auto: 64 on CUDA)
#   DYNN_GPU_RUN_DEVICE    auto, cuda, cpu [auto]    PYTHON  interpreter [python3]
#   DYNN_GIT_COMMIT        the commit of these files, recorded when they are no git checkout (a
#                          copy sent to a GPU machine carries no .git) []
#   DYNN_GPU_RUN_EPOCHS    the schedule probe's steps in order, or none (no probe): cnn_epochs values,
#                          each optionally with profile overrides of that step only, e.g.
#                          "45:weight_decay=None 45 60"; the chosen step's fields join DYNN_GPU_RUN_PARAMS
#                          [for fast on cifar10-jpeg: the profile's cnn_epochs, then 15 more
#                          (dynn_lib.floors.default_probe_steps); else none;
#                          none as well when DYNN_GPU_RUN_PARAMS sets cnn_epochs]
#   DYNN_GPU_RUN_WORKERS   jobs at once sharing the device, or auto: the check's measured
#                          recommendation (concurrency section; 1 when it did not run) [auto]
#
# Exit status: 0 every stage done; 75 stopped before the limit with work left (call again);
# 1 the check failed or a stage crashed; 2 bad usage. The last line printed is a one-line summary;
# the line before it (unless a stage failed) is the command that renders the results as a book
# (`dynn reproduce ... --no-experiments` with this run's parameters, the probe's chosen step too).
# A folder .device-data/site beside the archive, if present, is put on PYTHONPATH (pure-Python
# packages carried for the check, e.g. torchattacks).
set -uo pipefail

usage() { echo "usage: benchmarks/gpu_run.sh OUTDIR [ARCHIVE]  (see the header of this file)" >&2; exit 2; }
die() { echo "gpu_run: error: $*" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUTDIR=$1
ARCHIVE=${2:-${DYNN_GPU_RUN_ARCHIVE:-$REPO/.device-data/cifar10-jpeg.tar.gz}}
STATE=${DYNN_GPU_RUN_STATE:-/tmp/dynn-gpu-run}
LIMIT=${DYNN_GPU_RUN_LIMIT_S:-510}
RESERVE=${DYNN_GPU_RUN_RESERVE_S:-30}
CHECK_S=${DYNN_GPU_RUN_CHECK_S:-180}
SNAP_EVERY=${DYNN_GPU_RUN_SNAPSHOT_S:-60}
CHECK_ARGS=${DYNN_GPU_RUN_CHECK_ARGS:-}
ON_FAIL=${DYNN_GPU_RUN_ON_FAIL:-stop}
PROFILE=${DYNN_GPU_RUN_PROFILE:-fast}
DATASET=${DYNN_GPU_RUN_DATASET:-cifar10-jpeg}
QUESTIONS=${DYNN_GPU_RUN_QUESTIONS:-zoo rq4 rq1 rq2 rq3 appendix}
PARAMS=${DYNN_GPU_RUN_PARAMS:-}
DEVICE=${DYNN_GPU_RUN_DEVICE:-auto}
WORKERS=${DYNN_GPU_RUN_WORKERS:-auto}
LADDER=${DYNN_GPU_RUN_EPOCHS-default}
PY=${PYTHON:-python3}
MIN_STAGE_S=20   # a stage is not started with less time than this left
MAX_FILE=16777216

for pair in "DYNN_GPU_RUN_LIMIT_S=$LIMIT" "DYNN_GPU_RUN_RESERVE_S=$RESERVE" "DYNN_GPU_RUN_CHECK_S=$CHECK_S" \
            "DYNN_GPU_RUN_SNAPSHOT_S=$SNAP_EVERY"; do
  [[ ${pair#*=} =~ ^[0-9]+$ ]] || die "${pair%%=*} must be a whole number of seconds, got '${pair#*=}'"
done
[ "$ON_FAIL" = stop ] || [ "$ON_FAIL" = continue ] || die "DYNN_GPU_RUN_ON_FAIL must be stop or continue, got '$ON_FAIL'"
[ "$WORKERS" = auto ] || [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "DYNN_GPU_RUN_WORKERS must be auto or a whole number >= 1, got '$WORKERS'"
[ "$LIMIT" -gt $((RESERVE + MIN_STAGE_S)) ] || die "DYNN_GPU_RUN_LIMIT_S=$LIMIT leaves no time: it must exceed DYNN_GPU_RUN_RESERVE_S + $MIN_STAGE_S = $((RESERVE + MIN_STAGE_S))"
for q in $QUESTIONS; do
  case $q in zoo|rq1|rq2|rq3|rq4|appendix) ;; *) die "unknown question '$q' in DYNN_GPU_RUN_QUESTIONS; accepted: zoo rq1 rq2 rq3 rq4 appendix";; esac
done
OVERRIDES=()
for p in $PARAMS; do
  [[ $p == *=* ]] || die "DYNN_GPU_RUN_PARAMS entries look like NAME=VALUE, got '$p'"
  OVERRIDES+=(-o "$p")
done
if [ "$LADDER" != default ] && [ "$LADDER" != none ]; then
  for e in $LADDER; do
    [[ $e =~ ^[1-9][0-9]*(:[A-Za-z_]+=[^,:]+(,[A-Za-z_]+=[^,:]+)*)?$ ]] || die "DYNN_GPU_RUN_EPOCHS must be none or steps to try, in order: whole numbers >= 1 (cnn_epochs), each optionally with profile overrides of that step (45:weight_decay=0.0005,lr=0.2); got '$LADDER'"
    if [[ $e == *:* ]]; then
      IFS=, read -ra kvs <<< "${e#*:}"
      for kv in "${kvs[@]}"; do
        [[ " $PARAMS " == *" ${kv%%=*}="* ]] && die "DYNN_GPU_RUN_EPOCHS step '$e' and DYNN_GPU_RUN_PARAMS both set ${kv%%=*}: give it in one place"
        [ "${kv%%=*}" = cnn_epochs ] && die "DYNN_GPU_RUN_EPOCHS step '$e': cnn_epochs is the step's number itself, not an override"
      done
    fi
  done
  [ -n "${LADDER// /}" ] || die "DYNN_GPU_RUN_EPOCHS is empty: give cnn_epochs values to try, or none"
  [[ " $PARAMS " == *" cnn_epochs="* ]] && die "DYNN_GPU_RUN_EPOCHS and cnn_epochs in DYNN_GPU_RUN_PARAMS both choose the epochs: give one of them"
fi

mkdir -p "$OUTDIR" "$STATE/done" "$STATE/data" "$STATE/cache" || die "cannot create $OUTDIR or $STATE"
OUTDIR=$(cd "$OUTDIR" && pwd)
STATE=$(cd "$STATE" && pwd)
CALL=$(( $(cat "$STATE/calls" 2>/dev/null || echo 0) + 1 ))
echo "$CALL" > "$STATE/calls"
exec > >(tee -a "$STATE/log.txt") 2>&1
TEE_PID=$!
echo "=== gpu_run call $CALL at $(date -u +%FT%TZ) on $(hostname): profile $PROFILE, dataset $DATASET, limit ${LIMIT}s, state $STATE"

export DYNN_DATA_DIR=$STATE/data DYNN_CACHE_DIR=$STATE/cache DYNN_STORE=$STATE/store PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
SITE=$(dirname "$ARCHIVE")/site
[ -d "$SITE" ] && export PYTHONPATH="$PYTHONPATH:$(cd "$SITE" && pwd)"

SUMMARY=()
STATUS=done
record() {  # stage seconds status
  printf '%s\t%s\t%s\t%s\n' "$CALL" "$1" "$2" "$3" >> "$STATE/stages.tsv"
  SUMMARY+=("$1 ${2}s${3:+ $3}")
}
left() { echo $(( LIMIT - RESERVE - SECONDS )); }
# from_check SECTION KEY DEFAULT: what the self-check recorded as data.SECTION.KEY in selfcheck.json,
# or DEFAULT when it has no such value (the check or that section did not run)
from_check() {
  "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], {}).get(sys.argv[3], sys.argv[4]))' \
    "$STATE/check/selfcheck.json" "$1" "$2" "$3" 2>/dev/null || echo "$3"
}

# put_results / put_log: OUTDIR/results.tar.gz (the results tables and records, no *.pt), and
# OUTDIR/selfcheck.json and log.txt, as they stand; each file is written under a temporary name and
# renamed, so OUTDIR never holds half an archive (used by the snapshots and by pack)
put_results() {
  local part="$OUTDIR/.snapshot.$BASHPID.part" rc
  [ -d "$STATE/results" ] || { rm -f "$OUTDIR/results.tar.gz"; return 0; }
  tar -czf "$part" -C "$STATE" --exclude='*.pt' --exclude='.*.tmp' --warning=no-file-changed results 2>/dev/null
  rc=$?  # 1: a folder gained files while it was read (every library write is a rename: no torn file)
  if [ $rc -le 1 ]; then mv -f "$part" "$OUTDIR/results.tar.gz"; else rm -f "$part"; fi
}
put_log() {
  local part="$OUTDIR/.snapshot.$BASHPID.part"
  [ -f "$STATE/check/selfcheck.json" ] && cp "$STATE/check/selfcheck.json" "$part" && mv -f "$part" "$OUTDIR/selfcheck.json"
  tail -c $((MAX_FILE - 65536)) "$STATE/log.txt" > "$part" && mv -f "$part" "$OUTDIR/log.txt"
}
snapshot() { put_results; put_log; }

# snapshot_loop STOPFILE: a snapshot every SNAP_EVERY seconds until STOPFILE exists
snapshot_loop() {
  local n=0
  while [ ! -e "$1" ]; do
    sleep 1
    n=$((n + 1))
    if [ "$n" -ge "$SNAP_EVERY" ]; then snapshot; n=0; fi
  done
}

# run_stage NAME FINGERPRINT CMD...: skip when done with this fingerprint; else run under timeout
run_stage() {
  local name=$1 fp=$2; shift 2
  if [ -f "$STATE/done/$name" ] && [ "$(cat "$STATE/done/$name")" = "$fp" ]; then
    echo "--- $name: done in an earlier call, reused"; record "$name" 0 reused; return 0
  fi
  local budget; budget=$(left)
  if [ "$budget" -lt "$MIN_STAGE_S" ]; then
    echo "--- $name: not started, ${budget}s left before the limit"; STATUS=incomplete; return 75
  fi
  echo "--- $name (at most ${budget}s): $*"
  local t0=$SECONDS rc loop="" stop="$STATE/.snapshot-stop"
  rm -f "$stop"
  if [ "$SNAP_EVERY" -gt 0 ]; then snapshot_loop "$stop" & loop=$!; fi
  timeout -s INT -k 20 "$budget" "$@"; rc=$?
  local dt=$((SECONDS - t0))
  if [ -n "$loop" ]; then touch "$stop"; wait "$loop" 2>/dev/null; fi  # ends after its current snapshot
  snapshot
  if [ $rc -eq 0 ]; then
    echo "$fp" > "$STATE/done/$name"; record "$name" "$dt" ""; return 0
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "--- $name: stopped at the limit after ${dt}s; the next call resumes it"; record "$name" "$dt" stopped
    STATUS=incomplete; return 75
  fi
  echo "--- $name: FAILED (exit $rc) after ${dt}s"; record "$name" "$dt" "failed($rc)"; STATUS=failed; return 1
}

pack() {
  local t0=$SECONDS
  cd "$STATE" || return
  rm -f "$OUTDIR"/store.tar.gz
  put_results
  if [ -d store ]; then
    tar -czf "$OUTDIR/store.tar.gz" --exclude='*.pt' --exclude='.*.tmp' store
    if [ "$(stat -c %s "$OUTDIR/store.tar.gz")" -ge $MAX_FILE ]; then
      echo "store.tar.gz over 16 MiB: packing the store's record.json files only"
      find store -name record.json -print0 | tar -czf "$OUTDIR/store.tar.gz" --null -T -
    fi
  fi
  [ -f check/syncs.txt ] && cp check/syncs.txt "$OUTDIR/syncs.txt"
  record pack $((SECONDS - t0)) ""
  "$PY" - "$STATE/stages.tsv" "$OUTDIR/timings.json" "$CALL" "$STATUS" "$SECONDS" <<'EOF'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
stages = [{"call": int(c), "stage": s, "seconds": int(t), "status": st or "done"} for c, s, t, st in rows]
total = {}
for r in stages:
    total[r["stage"]] = total.get(r["stage"], 0) + r["seconds"]
json.dump({"stages": stages, "seconds_per_stage_all_calls": total, "calls": int(sys.argv[3]),
           "last_call": {"status": sys.argv[4], "seconds": int(sys.argv[5])}}, open(sys.argv[2], "w"), indent=2)
EOF
  put_log
  local n big
  n=$(find "$OUTDIR" -maxdepth 1 -type f | wc -l)
  big=$(find "$OUTDIR" -maxdepth 1 -type f -size +$((MAX_FILE - 1))c | wc -l)
  [ "$n" -le 8 ] || echo "WARNING: $n files in $OUTDIR (at most 8 come back)"
  [ "$big" -eq 0 ] || echo "WARNING: $big file(s) in $OUTDIR over 16 MiB"
}

finish() {  # exit code
  pack
  if [ "$STATUS" != failed ] && [ -d "$STATE/results/$PROFILE" ]; then  # how to render what came back
    local book="dynn reproduce --profile $PROFILE --datasets $DATASET --no-experiments" p
    for p in $PARAMS; do book="$book -p ${p%%=*} $(printf %q "${p#*=}")"; done
    [ "$STATUS" = done ] || book="$book --allow-missing"
    echo "book: unpack results.tar.gz in the repository root (it holds results/), then run: $book"
  fi
  local line="gpu_run call $CALL: ${SECONDS}s, $STATUS; stages: $(IFS=,; echo "${SUMMARY[*]}" | sed 's/,/, /g')"
  [ "$STATUS" = incomplete ] && line="$line -- call again to resume"
  echo "$line"
  exec >&- 2>&-
  wait "$TEE_PID" 2>/dev/null  # let the log's tee drain before the command returns
  exit "$1"
}

# -- install -------------------------------------------------------------------------------------
t0=$SECONDS
# one interpreter start: versions, the imports every stage needs, whether pip knows the project,
# and the fingerprint of the code that computes results (part of every stage's done-marker)
INFO=$("$PY" - <<'PY'
import sys
from importlib import metadata

import torch

import dynn_lib.cli, dynn_lib.experiments.runner  # noqa: F401,E401  (the imports every stage needs)
from dynn_lib.versions import code_version

try:
    metadata.distribution("dynn-lib")
    installed = "yes"
except metadata.PackageNotFoundError:
    installed = "no"
from dynn_lib.store import git_commit

commit = git_commit()
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
      f"git commit recorded: {commit}", file=sys.stderr)
if commit == "unknown":
    print("gpu_run: warning: these files are no git checkout and DYNN_GIT_COMMIT is unset, so every record "
          "will say git_commit 'unknown'; set DYNN_GIT_COMMIT to the commit of the files sent here",
          file=sys.stderr)
print(installed, code_version("results"))
PY
) || { echo "gpu_run: python3 with torch cannot import dynn_lib from $REPO"; STATUS=failed
       record install $((SECONDS - t0)) failed; finish 1; }
if [ "${INFO%% *}" = yes ]; then
  echo "dynn_lib: installed; this checkout first on PYTHONPATH"
elif "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e "$REPO"; then
  echo "dynn_lib: installed now with pip --no-deps -e (against this machine's torch)"
else
  echo "dynn_lib: pip could not install it; running with PYTHONPATH=$REPO"
fi
record install $((SECONDS - t0)) ""
FP="${INFO#* }|$PROFILE|$DATASET|$PARAMS"

# -- data ----------------------------------------------------------------------------------------
if [ "$DATASET" = cifar10-jpeg ]; then
  [ -f "$ARCHIVE" ] || { echo "gpu_run: no archive at $ARCHIVE (give it as ARCHIVE or DYNN_GPU_RUN_ARCHIVE)"; STATUS=failed; finish 1; }
  ln -sf "$(cd "$(dirname "$ARCHIVE")" && pwd)/$(basename "$ARCHIVE")" "$STATE/data/cifar10-jpeg.tar.gz"
  run_stage data "$FP|$(stat -c %s "$ARCHIVE")" "$PY" -m dynn_lib.cli data check cifar10-jpeg || finish $?
fi

# -- self-check ----------------------------------------------------------------------------------
if [ "$CHECK_S" -gt 0 ]; then
  # shellcheck disable=SC2086
  run_stage check "$FP|$CHECK_S|$CHECK_ARGS" "$PY" "$REPO/benchmarks/gpu_check.py" --budget-s "$CHECK_S" \
    --device "$DEVICE" --out "$STATE/check" $CHECK_ARGS
  rc=$?
  # the check's record travels with the run's results (results/PROFILE/DATASET/gpu-checks/DATE-GPU/):
  # the methods page shows it (dynn_lib.gpu_checks), and a book built from a run whose check failed says so
  "$PY" - "$STATE/check" "$STATE/results/$PROFILE/$DATASET/gpu-checks" <<'PY' || echo "gpu_run: warning: the self-check's record was not copied into the results"
import json, shutil, sys
from pathlib import Path
from dynn_lib.gpu_checks import record_name
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
if (src / "selfcheck.json").is_file():
    name = record_name(json.loads((src / "selfcheck.json").read_text()))
    (dest / name).mkdir(parents=True, exist_ok=True)
    for f in ("selfcheck.json", "syncs.txt"):  # written whole, then renamed; left alone when unchanged
        target = dest / name / f
        if (src / f).is_file() and not (target.is_file() and target.read_bytes() == (src / f).read_bytes()):
            shutil.copy(src / f, target.with_suffix(".part"))
            target.with_suffix(".part").replace(target)
PY
  if [ $rc -eq 1 ] && [ "$ON_FAIL" = continue ]; then
    echo "gpu_run: the self-check FAILED (see selfcheck.json); the run goes on as DYNN_GPU_RUN_ON_FAIL=continue asks:" \
         "the failed checks travel with the results (gpu-checks/), and a book built from them says so on every page"
    STATUS=done  # the run's own status from here on; the check keeps "failed(1)" in timings.json
    echo "$FP|$CHECK_S|$CHECK_ARGS" > "$STATE/done/check"  # its record stands: a later call does not redo it
  elif [ $rc -eq 1 ]; then
    echo "gpu_run: the self-check FAILED (see selfcheck.json): no experiment is run" \
         "(DYNN_GPU_RUN_CHECK_S=0 or DYNN_GPU_RUN_ON_FAIL=continue goes on without it)"; finish 1
  else
    [ $rc -eq 0 ] || finish $rc
  fi
fi

# -- schedule probe ------------------------------------------------------------------------------
if [ "$LADDER" = default ]; then
  LADDER=none
  if [[ " $PARAMS " != *" cnn_epochs="* ]]; then  # dynn_lib.floors.default_probe_steps: fast on cifar10-jpeg
    STEPS=$("$PY" -c 'import sys; from dynn_lib import floors; print(*floors.default_probe_steps(*sys.argv[1:]))' \
      "$PROFILE" "$DATASET") || { echo "gpu_run: the default probe steps could not be read"; STATUS=failed; finish 1; }
    [ -z "$STEPS" ] || LADDER=$STEPS
  fi
fi
if [ "$LADDER" != none ]; then
  # shellcheck disable=SC2086
  run_stage schedule "$FP|$LADDER" "$PY" -m dynn_lib.cli schedule-probe --dataset "$DATASET" --profile "$PROFILE" \
    --device "$DEVICE" --store "$STATE/store" --epochs $LADDER --out "$STATE/results/schedule-checks" \
    --choice "$STATE/schedule-choice.json" "${OVERRIDES[@]}"
  rc=$?
  [ $rc -eq 0 ] || finish $rc
  CHOSEN=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["chosen_params"])' "$STATE/schedule-choice.json") \
    || { echo "gpu_run: no readable $STATE/schedule-choice.json"; STATUS=failed; finish 1; }
  echo "schedule: $CHOSEN for every later stage (the probe's choice of: $LADDER)"
  PARAMS="${PARAMS:+$PARAMS }$CHOSEN"
  for p in $CHOSEN; do OVERRIDES+=(-o "$p"); done
  FP="${INFO#* }|$PROFILE|$DATASET|$PARAMS"
fi

# -- fired-loss padding --------------------------------------------------------------------------
# fired_bucket from DYNN_GPU_RUN_PARAMS, else the check's recommendation (fired_shapes section: 1 when
# the unpadded fired-loss attack was faster on this GPU, first call and again), else the profile's
if [[ " $PARAMS " != *" fired_bucket="* ]]; then
  FIRED=$(from_check fired_shapes recommended_fired_bucket auto)
  if [[ $FIRED =~ ^[1-9][0-9]*$ ]]; then
    echo "fired_bucket: $FIRED for every later stage (the self-check's fired_shapes section found the unpadded fired-loss attack faster here)"
    PARAMS="${PARAMS:+$PARAMS }fired_bucket=$FIRED"
    OVERRIDES+=(-o "fired_bucket=$FIRED")
    FP="${INFO#* }|$PROFILE|$DATASET|$PARAMS"
  else
    echo "fired_bucket: the profile's (the self-check recommends no change, or its fired_shapes section did not run)"
  fi
fi

# -- experiments ---------------------------------------------------------------------------------
# Workers: DYNN_GPU_RUN_WORKERS, or (auto) what the check measured (concurrency section); with more
# than one, a `jobs` stage first runs the job graph of the questions with that many processes
# sharing the GPU (`dynn plan --run --workers K`, which publishes as the stages below would), and
# the question stages are then marked done without starting an interpreter each.
if [ "$WORKERS" = auto ]; then
  WORKERS=$(from_check concurrency recommended_workers 1)
  echo "workers: $WORKERS (from the self-check's concurrency section; 1 when it did not run)"
fi
if [ "$WORKERS" -gt 1 ]; then
  PLAN_PARAMS=()
  for p in $PARAMS; do PLAN_PARAMS+=(-p "${p%%=*}" "${p#*=}"); done
  # shellcheck disable=SC2086
  run_stage jobs "$FP|$QUESTIONS" "$PY" -m dynn_lib.cli plan --run --workers "$WORKERS" --profile "$PROFILE" \
    --datasets "$DATASET" --questions $QUESTIONS --device "$DEVICE" --results "$STATE/results" \
    --store "$STATE/store" "${PLAN_PARAMS[@]}"
  rc=$?
  [ $rc -eq 0 ] || finish $rc
fi
for q in $QUESTIONS; do
  # published by the jobs stage (tests/test_plan.py: `dynn run` then finds everything and writes nothing)
  if [ "$WORKERS" -gt 1 ] && [ -f "$STATE/results/$PROFILE/$DATASET/$q/record.json" ] \
     && [ "$(cat "$STATE/done/$q" 2>/dev/null)" != "$FP" ]; then
    echo "--- $q: published by the jobs stage"; echo "$FP" > "$STATE/done/$q"; record "$q" 0 published
    continue
  fi
  run_stage "$q" "$FP" "$PY" -m dynn_lib.cli run "$q" --dataset "$DATASET" --profile "$PROFILE" \
    --device "$DEVICE" --results "$STATE/results" --store "$STATE/store" "${OVERRIDES[@]}"
  rc=$?
  [ $rc -eq 0 ] || finish $rc
done
finish 0
