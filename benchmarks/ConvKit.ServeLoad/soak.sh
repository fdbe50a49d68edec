#!/usr/bin/env bash
# Soak: 10 minutes at steady load (ResNet-20, binary, c=32). Prints the server's RSS, threads and open file handles
# every 30 s, and the load generator's totals (errors must be 0). Usage: soak.sh [MINUTES] [WORKDIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
minutes="${1:-10}"; work="${2:-$(mktemp -d)}"; port="${PORT:-18902}"
dotnet build "$here/src/ConvKit.Cli" -c Release -v q -nologo >/dev/null
dotnet build "$here/benchmarks/ConvKit.ServeLoad" -c Release -v q -nologo >/dev/null
cli="$here/src/ConvKit.Cli/bin/Release/net10.0/ConvKit.Cli.dll"
load="$here/benchmarks/ConvKit.ServeLoad/bin/Release/net10.0/ConvKit.ServeLoad.dll"
[ -f "$work/resnet20/model.safetensors" ] || dotnet "$load" save-model resnet20 "$work/resnet20"
dotnet "$cli" serve "resnet20=$work/resnet20" --port "$port" --log-format text 2>"$work/soak-serve.log" >/dev/null & pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do sleep 0.2; done
( while kill -0 "$pid" 2>/dev/null; do
    echo "$(date -u +%T) rss_kb=$(awk '/VmRSS/{print $2}' /proc/$pid/status) threads=$(awk '/Threads/{print $2}' /proc/$pid/status) fds=$(ls /proc/$pid/fd | wc -l)"
    sleep 30; done ) &
sampler=$!
dotnet "$load" run --url "http://127.0.0.1:$port" --model resnet20 --concurrency 32 --requests 1000000 --seconds $((minutes * 60)) --format binary --server-pid "$pid"
kill "$sampler" 2>/dev/null || true
