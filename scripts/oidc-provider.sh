#!/usr/bin/env bash
# Installs the node-oidc-provider the interop tests run against, once: the
# exact packages of interop/oidcprovider/package-lock.json go into a folder
# of .cache/ named after the pinned version and the lock file's hash, so
# later runs skip the install and a changed lock file installs afresh.
# Needs Node.js and npm. Prints the folder's path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

src=interop/oidcprovider
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "oidc-provider: $tool is required (Node.js 22 LTS, or 20)" >&2
    exit 1
  fi
done
version=$(node -p 'require(process.argv[1]).dependencies["oidc-provider"]' "$PWD/$src/package.json")
lock=$(sha256sum "$src/package-lock.json" | cut -c1-12)
dir="$PWD/.cache/oidc-provider-${version}-${lock}"
if [ ! -f "$dir/node_modules/oidc-provider/package.json" ]; then
  mkdir -p .cache
  start=$(date +%s)
  echo "oidc-provider: installing ${version} with npm ci (first run only)" >&2
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  cp "$src/package.json" "$src/package-lock.json" "$dir.tmp/"
  (cd "$dir.tmp" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  echo "oidc-provider: installed in $(( $(date +%s) - start )) s" >&2
else
  echo "oidc-provider: using cached $dir" >&2
fi
echo "$dir"
