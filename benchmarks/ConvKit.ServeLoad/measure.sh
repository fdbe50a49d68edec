#!/usr/bin/env bash
# Issue 16's serving figures: correctness (10,000 requests at c=32 vs Predict, ResNet-20 and LeNet-5), dynamic
# batching vs --max-batch 1 (ResNet-20, binary, c=32, alternating), the concurrency curve, and overload (c=512, small
# queue: 503s and the server's RSS), and the cost of batch invariance (default vs --no-batch-invariance, both models).
# Loopback only. Usage: [ONLY="correctness batching curve overload invariance"] benchmarks/ConvKit.ServeLoad/measure.sh [WORKDIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="${1:-$(mktemp -d)}"
port="${PORT:-18901}"
dotnet build "$here/src/ConvKit.Cli" -c Release -v q -nologo >/dev/null
dotnet build "$here/benchmarks/ConvKit.ServeLoad" -c Release -v q -nologo >/dev/null
cli="$here/src/ConvKit.Cli/bin/Release/net10.0/ConvKit.Cli.dll"
load="$here/benchmarks/ConvKit.ServeLoad/bin/Release/net10.0/ConvKit.ServeLoad.dll"
for m in resnet20 lenet5; do [ -f "$work/$m/model.safetensors" ] || dotnet "$load" save-model "$m" "$work/$m"; done
pid=""
start() { dotnet "$cli" serve "$@" --port "$port" --log-format text 2>"$work/serve.log" >/dev/null & pid=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && return 0; sleep 0.2; done; echo "server did not get ready" >&2; exit 1; }
stop() { kill -TERM "$pid"; wait "$pid" || true; }
run() { dotnet "$load" run --url "http://127.0.0.1:$port" --server-pid "$pid" "$@"; }
want() { [[ " ${ONLY:-correctness batching curve overload invariance} " == *" $1 "* ]]; }

if want correctness; then
echo "== correctness: 10,000 requests at c=32, every answer compared with single-threaded Predict"
for m in resnet20 lenet5; do
  for b in 1 32; do
    echo "-- $m --max-batch $b"
    start "$m=$work/$m" --max-batch "$b" --max-delay-ms 2
    run --model "$m" --concurrency 32 --requests 10000 --seconds 300 --format binary --verify "$work/$m" | tail -1
    stop
  done
done

fi

if want batching; then
echo "== dynamic batching vs --max-batch 1: ResNet-20, binary, c=32 (alternating, 2 rounds)"
for round in 1 2; do
  for b in 1 32; do
    echo "-- round $round --max-batch $b"
    start "resnet20=$work/resnet20" --max-batch "$b" --max-delay-ms 2
    run --model resnet20 --concurrency 32 --requests 20000 --seconds "${SECONDS_PER_LEVEL:-10}" --format binary | tail -1
    stop
  done
done

fi

if want curve; then
echo "== curve: ResNet-20 --max-batch 32, binary and JSON"
start "resnet20=$work/resnet20" --max-batch 32 --max-delay-ms 2
run --model resnet20 --concurrency 1,8,32,128 --requests 20000 --seconds "${SECONDS_PER_LEVEL:-10}" --format binary
run --model resnet20 --concurrency 1,8,32,128 --requests 20000 --seconds "${SECONDS_PER_LEVEL:-10}" --format json | tail -4
stop

fi

if want overload; then
echo "== overload: c=512, --queue 16"
start "resnet20=$work/resnet20" --max-batch 32 --max-delay-ms 2 --queue 16
run --model resnet20 --concurrency 512 --requests 20000 --seconds "${SECONDS_PER_LEVEL:-10}" --format binary | tail -1
stop
fi

if want invariance; then
echo "== batch invariance (default) vs --no-batch-invariance: --max-batch 32, binary, c=32 (alternating, 2 rounds)"
for m in resnet20 lenet5; do
  for round in 1 2; do
    for mode in invariant variant; do
      echo "-- $m round $round $mode"
      if [ "$mode" = variant ]; then start "$m=$work/$m" --max-batch 32 --max-delay-ms 2 --no-batch-invariance
      else start "$m=$work/$m" --max-batch 32 --max-delay-ms 2; fi
      run --model "$m" --concurrency 32 --requests 40000 --seconds "${SECONDS_PER_LEVEL:-10}" --format binary | tail -1
      stop
    done
  done
done
fi
