#!/usr/bin/env bash
# The one test command: formatting, vet, staticcheck and the race-enabled
# test suite of every module in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

staticcheck_version=v0.8.2

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@${staticcheck_version} ./...

echo "== go test -race"
go test -race -count=1 ./...
