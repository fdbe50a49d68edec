#!/usr/bin/env bash
# Kill-and-resume benchmark (issue 14 §4): one uninterrupted `convkit train` run, then N runs each SIGKILLed at a
# random moment and finished with `convkit train --resume`; every resumed run must end with weights whose SHA-256
# (the data section of model/model.safetensors: the weights, in order) equals the uninterrupted run's.
#
#   benchmarks/kill-resume/kill-resume.sh [-n 10] [-e 3] [-t 2] [-s 42] [-m lenet5] [--train 0] [--data DIR]
#
# --data: a Fashion-MNIST IDX folder (default /usr/share/datasets/fashion-mnist); --train N > 0 first copies the first
# N training and N/6 test images into a subset folder (0 = the full 60,000). Prints one line per trial and a summary;
# exits 1 if any hash differs. Build first: dotnet build src/ConvKit.Cli -c Release.
set -euo pipefail
N=10 EPOCHS=3 THREADS=2 SEED=42 MODEL=lenet5 TRAIN=0 DATA=/usr/share/datasets/fashion-mnist
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2;; -e) EPOCHS=$2; shift 2;; -t) THREADS=$2; shift 2;; -s) SEED=$2; shift 2;;
    -m) MODEL=$2; shift 2;; --train) TRAIN=$2; shift 2;; --data) DATA=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLI="${CONVKIT_CLI:-$ROOT/src/ConvKit.Cli/bin/Release/net10.0/ConvKit.Cli.dll}"  # CONVKIT_CLI: another build of the CLI
[ -f "$CLI" ] || { echo "build first: dotnet build src/ConvKit.Cli -c Release" >&2; exit 2; }
WORK=$(mktemp -d /tmp/convkit-killresume-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ "$TRAIN" -gt 0 ]; then
  /usr/bin/python3 - "$DATA" "$WORK/data" "$TRAIN" <<'PY'
import gzip, struct, sys, os
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst)
for split, count in (("train", n), ("t10k", max(n // 6, 1))):
    img = gzip.open(f"{src}/{split}-images-idx3-ubyte.gz").read()
    lab = gzip.open(f"{src}/{split}-labels-idx1-ubyte.gz").read()
    gzip.open(f"{dst}/{split}-images-idx3-ubyte.gz", "wb").write(struct.pack(">IIII", 2051, count, 28, 28) + img[16:16 + count * 784])
    gzip.open(f"{dst}/{split}-labels-idx1-ubyte.gz", "wb").write(struct.pack(">II", 2049, count) + lab[8:8 + count])
PY
  DATA="$WORK/data"
fi
weights_sha() { /usr/bin/python3 -c '
import hashlib, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
print(hashlib.sha256(b[8 + n:]).hexdigest())' "$1/model/model.safetensors"; }
ARGS=("$MODEL" --data "$DATA" --epochs "$EPOCHS" --threads "$THREADS" --seed "$SEED" --verbose 0)

start=$(date +%s.%N)
dotnet "$CLI" train "${ARGS[@]}" --out "$WORK/reference" > "$WORK/reference.log" 2>&1
ref_seconds=$(echo "$(date +%s.%N) - $start" | bc)
ref=$(weights_sha "$WORK/reference")
echo "uninterrupted: ${ref_seconds}s, weights sha256 $ref"

fail=0
for i in $(seq 1 "$N"); do
  run="$WORK/run$i"
  kill_at=$(/usr/bin/python3 -c "import random; print(round(random.uniform(1.0, $ref_seconds), 2))")
  dotnet "$CLI" train "${ARGS[@]}" --out "$run" > "$run.log" 2>&1 & pid=$!
  sleep "$kill_at"
  if kill -KILL "$pid" 2>/dev/null; then killed=yes; else killed="no (finished first)"; fi
  wait "$pid" 2>/dev/null || true
  done_epochs=$( [ -f "$run/history.csv" ] && echo $(( $(wc -l < "$run/history.csv") - 1 )) || echo 0)
  t0=$(date +%s.%N)
  if [ -f "$run/train-settings.json" ]; then
    dotnet "$CLI" train --resume "$run" --verbose 0 > "$run.resume.log" 2>&1 || { echo "trial $i: resume failed"; cat "$run.resume.log"; fail=1; continue; }
  else
    # Killed before the run wrote its settings (while loading): nothing to resume, the run starts again.
    killed="$killed, before the run folder was set up: started again"
    dotnet "$CLI" train "${ARGS[@]}" --out "$run" --overwrite > "$run.resume.log" 2>&1 || { echo "trial $i: restart failed"; cat "$run.resume.log"; fail=1; continue; }
  fi
  resume_seconds=$(echo "$(date +%s.%N) - $t0" | bc)
  sha=$(weights_sha "$run")
  if [ "$sha" = "$ref" ]; then verdict=identical; else verdict="DIFFERENT ($sha)"; fail=1; fi
  echo "trial $i: SIGKILL at ${kill_at}s (killed: $killed, epochs in history: $done_epochs), resume ${resume_seconds}s: $verdict"
  rm -rf "$run"
done
[ $fail -eq 0 ] && echo "all $N resumed runs identical to the uninterrupted run" || echo "FAILED: some resumed runs differ"
exit $fail
