#!/usr/bin/env bash
# Builds the Ory Hydra binary the interop tests run against, once: the
# result is cached in .cache/ under its version, so later runs skip the
# ~4 minute build. Prints the binary's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '$1 == "github.com/ory/hydra/v2" {print $2}' interop/hydra/go.mod)
bin="$PWD/.cache/hydra-${version}"
if [ ! -x "$bin" ]; then
  if ! command -v gcc >/dev/null 2>&1; then
    echo "hydra: installing gcc for cgo (SQLite)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >&2
  fi
  mkdir -p .cache
  start=$(date +%s)
  echo "hydra: building ${version} with SQLite (first run only, a few minutes)" >&2
  (cd interop/hydra && CGO_ENABLED=1 go build -tags sqlite,sqlite_omit_load_extension \
      -o "$bin.tmp" github.com/ory/hydra/v2)
  mv "$bin.tmp" "$bin"
  echo "hydra: built in $(( $(date +%s) - start )) s" >&2
else
  echo "hydra: using cached $bin" >&2
fi
echo "$bin"
