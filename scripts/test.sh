#!/usr/bin/env bash
# The one test command: formatting, vet, staticcheck and the race-enabled
# tests of every module in the repository (the SDK and each nested module),
# short fuzz runs, the README's walk-through run as written (scripts/
# walkthrough.sh), and the interop tests against real authorization servers
# (built or installed once and cached in .cache/, started on 127.0.0.1 by
# the tests and stopped by them).
# M2M_SKIP_INTEROP=1 skips the interop tests locally; CI ($CI=true) never does.
set -euo pipefail
cd "$(dirname "$0")/.."

staticcheck_version=v0.8.2

# Every module but interop/ (run last, with its servers) and the modules
# that only pin a server's build (interop/hydra).
modules=()
while IFS= read -r mod; do
  dir=$(dirname "$mod")
  case "$dir" in
    ./interop|./interop/*) continue ;;
  esac
  modules+=("$dir")
done < <(find . -name go.mod -not -path './.cache/*' -not -path '*/node_modules/*' | sort)

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi

for dir in "${modules[@]}" ./interop; do
  echo "== go vet, staticcheck: $dir"
  (cd "$dir" && go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@${staticcheck_version} ./...)
done

# redisstore's tests start their own redis-server on 127.0.0.1 (installed
# once from the distribution's packages); without one they skip locally
# and fail in CI.
if ! REDIS_SERVER_BIN=$(./scripts/redis.sh); then
  [ "${CI:-}" = true ] && { echo "redis-server could not be installed" >&2; exit 1; }
  echo "redis-server could not be installed: the redisstore tests will skip" >&2
  REDIS_SERVER_BIN=
fi
export REDIS_SERVER_BIN

for dir in "${modules[@]}"; do
  echo "== go test -race: $dir"
  (cd "$dir" && go test -race -count=1 ./...)
done

echo "== fuzz: 20 000 inputs per target"
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 20000x ./internal/wire
go test -run '^$' -fuzz '^FuzzJWTExpiry$' -fuzztime 20000x ./internal/wire
go test -run '^$' -fuzz '^FuzzScrub$' -fuzztime 20000x ./internal/wire
go test -run '^$' -fuzz '^FuzzRoute$' -fuzztime 20000x .
go test -run '^$' -fuzz '^FuzzVerify$' -fuzztime 20000x ./verify
go test -run '^$' -fuzz '^FuzzJSONReader$' -fuzztime 20000x ./verify
go test -run '^$' -fuzz '^FuzzDPoPProof$' -fuzztime 20000x ./verify

echo "== walk-through: the README's commands, as written, against the dev server"
./scripts/walkthrough.sh

echo "== interop: real authorization servers"
if [ "${M2M_SKIP_INTEROP:-}" = 1 ] && [ "${CI:-}" != true ]; then
  echo "skipped: M2M_SKIP_INTEROP=1 (never skipped in CI)"
else
  t0=$(date +%s)
  hydra_bin=$(./scripts/hydra.sh)
  t1=$(date +%s)
  oidc_provider_dir=$(./scripts/oidc-provider.sh)
  t2=$(date +%s)
  go build -o .cache/m2m ./cmd/m2m
  (cd interop && HYDRA_BIN="$hydra_bin" OIDC_PROVIDER_DIR="$oidc_provider_dir" M2M_BIN="$PWD/../.cache/m2m" \
    go test -race -count=1 ./...)
  t3=$(date +%s)
  echo "interop: Hydra build/cache $((t1 - t0)) s, node-oidc-provider install/cache $((t2 - t1)) s, interop tests $((t3 - t2)) s"
fi
