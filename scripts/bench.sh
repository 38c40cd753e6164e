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
go test -run '^$' -bench '^Benchmark(Token|TokenParallel|RoundTrip|RoundTripParallel|RoundTripPaired|Fetch|FetchPaired)$' -benchmem -count "${COUNT:-5}" . | tee -a "$raw"
go test -run '^$' -bench '^BenchmarkColdBurst' -benchmem -benchtime 5x -count 3 . | tee -a "$raw"
go test -run '^$' -bench '^BenchmarkDPoPProof(Paired)?$' -benchmem -count "${COUNT:-5}" . | tee -a "$raw"
go test -run '^$' -bench '^BenchmarkVerify$' -benchmem -count "${COUNT:-5}" ./verify/ | tee -a "$raw"
# A DPoP proof check (ES256) beside a bare ecdsa.VerifyASN1 of the same
# signature: each alone, then paired call by call.
go test -run '^$' -bench '^BenchmarkDPoP(Paired)?$' -benchmem -count "${COUNT:-5}" ./verify/ | tee -a "$raw"
# verify against the other Go JWT verifiers (a nested module, so they never
# enter the SDK's go.mod): each alone beside the floor, then each paired
# call by call with the floor (the robust ratio on a busy machine).
(cd bench/verifypeers && go test -run '^$' -bench '^BenchmarkVerify(NewToken|Paired)$' -benchmem -count "${COUNT:-5}" .) | tee -a "$raw"
# The OpenTelemetry observer's overhead on a cache hit: TokenContext with
# the otelm2m Observer vs without one (floor-bare), in the same process.
(cd otelm2m && go test -run '^$' -bench '^BenchmarkOTelTokenContext' -benchmem -count "${COUNT:-5}" .) | tee -a "$raw"
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
echo
echo "## Shared store (redisstore, a local redis-server): fetch path and hot path (medians)"
redis_bin=$(./scripts/redis.sh)
(cd redisstore && REDIS_SERVER_BIN="$redis_bin" go test -run '^$' -bench '^Benchmark(FetchPath|HotPath)$' -benchmem -count "${COUNT:-5}" .) |
  go run ./internal/benchtable
echo
echo "## Shared store: a fleet of 8 processes, 2 s tokens, 20 s"
(cd redisstore && REDIS_SERVER_BIN="$redis_bin" go test -count=1 -run '^TestFleet$' -v .) | grep -o 'fleet: .*'
