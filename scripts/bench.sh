#!/usr/bin/env bash
# Runs every benchmark, m2m and its peers side by side in the same
# processes, and prints one table of ratios (m2m / peer) per family, then
# the refresh-stall load generator's table, and draws that run as
# bench/refresh-stalls.svg (token latency over time, m2m against x/oauth2;
# drawn by the nested module bench/stallplot). BENCHMARKS.md records a run.
set -euo pipefail
cd "$(dirname "$0")/.."

raw=$(mktemp)
series=$(mktemp)
trap 'rm -f "$raw" "$series"' EXIT
echo "# $(date -u +%Y-%m-%d) $(go version | cut -d' ' -f3-4), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
go test -run '^$' -bench '^Benchmark(Token|TokenParallel|RoundTrip|Fetch)$' -benchmem -count "${COUNT:-5}" . | tee -a "$raw"
go test -run '^$' -bench '^BenchmarkColdBurst' -benchmem -benchtime 5x -count 3 . | tee -a "$raw"
go test -run '^$' -bench '^BenchmarkDPoPProof(Paired)?$' -benchmem -count "${COUNT:-5}" . | tee -a "$raw"
go test -run '^$' -bench '^BenchmarkVerify$' -benchmem -count "${COUNT:-5}" ./verify/ | tee -a "$raw"
echo
echo "## Ratios (medians)"
go run ./internal/benchtable < "$raw"
echo
echo "## Refresh cadence (fake clock) and memory per key"
go test -count=1 -run '^(TestRefreshCadence|TestMemoryPerKey)$' -v . | grep -o '| .*|$'
echo
echo "## Refresh stalls"
go run ./internal/loadgen -duration "${LOADGEN_DURATION:-10s}" -series "$series"
(cd bench/stallplot && go run . -in "$series" -out ../refresh-stalls.svg)
echo
echo "Picture of this run: bench/refresh-stalls.svg"
