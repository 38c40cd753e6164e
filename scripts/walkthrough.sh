#!/usr/bin/env bash
# Runs the README's walk-through as written: every ```sh block preceded by
# a marker line, in order, in one bash shell with `set -euo pipefail`, so a
# failing command fails the run. Markers (HTML comments, invisible on
# GitHub), on the line before the fence or separated from it by blank
# lines only:
#
#   <!-- walkthrough -->             run the block in the shell, in order
#   <!-- walkthrough: background --> start the block in the background (a
#                                    server the reader runs in a second
#                                    terminal); it is taken as ready once it
#                                    has printed a line, and at the end it
#                                    gets SIGINT (Ctrl-C) and must exit 0
#
# The m2m command is built from the checkout and put first on PATH, as
# `go install` would. When the machine allows it the walk-through runs in a
# network namespace of its own, so its fixed ports (127.0.0.1:3567) cannot
# clash with anything else running here; otherwise on the host's loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${M2M_WALKTHROUGH_INNER:-}" ]; then
  command -v curl >/dev/null || { echo "walkthrough: needs curl" >&2; exit 1; }
  bin=$(mktemp -d)
  trap 'rm -rf "$bin"' EXIT
  go build -o "$bin/m2m" ./cmd/m2m
  export PATH="$bin:$PATH" M2M_WALKTHROUGH_INNER=1
  # A network namespace with only its own loopback: as root, or as a user
  # where unprivileged user namespaces are allowed.
  for ns in "unshare --net" "unshare --net --map-root-user"; do
    if command -v ip >/dev/null && $ns ip link set lo up 2>/dev/null; then
      echo "walkthrough: in a network namespace of its own ($ns)"
      $ns bash -c 'ip link set lo up && exec "$0"' "$0"
      exit $?
    fi
  done
  echo "walkthrough: on the host's loopback (no network namespace available)"
  "$0"
  exit $?
fi

# Extract the marked blocks: one file per block, named NN-fg.sh or NN-bg.sh.
blocks=$(mktemp -d)
awk -v dir="$blocks" '
  /^[ \t]*<!-- walkthrough(: background)? -->[ \t]*$/ {
    if (pending) { print "README.md:" NR ": marker not followed by a ```sh block" > "/dev/stderr"; exit 1 }
    pending = ($0 ~ /background/) ? "bg" : "fg"; next
  }
  pending && /^[ \t]*```sh[ \t]*$/ {
    match($0, /^[ \t]*/); indent = RLENGTH
    n++; file = sprintf("%s/%02d-%s.sh", dir, n, pending); pending = ""; inblock = 1
    printf "# README.md:%d\n", NR + 1 > file
    next
  }
  pending && /^[ \t]*$/ { next }
  pending { print "README.md:" NR ": marker not followed by a ```sh block" > "/dev/stderr"; exit 1 }
  inblock && /^[ \t]*```[ \t]*$/ { inblock = 0; close(file); next }
  inblock { print substr($0, indent + 1) > file }
  END { if (pending || inblock) { print "README.md: unfinished walk-through block" > "/dev/stderr"; exit 1 } }
' README.md
n_blocks=$(find "$blocks" -name '*.sh' | wc -l)
if [ "$n_blocks" -eq 0 ]; then
  echo "walkthrough: README.md has no marked blocks" >&2
  exit 1
fi

wt_pids=()
wt_logs=()
wt_cleanup() {
  local status=$? i
  for i in "${!wt_pids[@]}"; do
    kill -INT -- "-${wt_pids[$i]}" 2>/dev/null || true
    for _ in $(seq 300); do
      kill -0 "${wt_pids[$i]}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${wt_pids[$i]}" 2>/dev/null; then
      echo "walkthrough: background block still running 30 s after Ctrl-C; killed" >&2
      kill -KILL -- "-${wt_pids[$i]}" 2>/dev/null || true
    fi
    if ! wait "${wt_pids[$i]}"; then
      echo "walkthrough: background block did not exit 0 on Ctrl-C; its output:" >&2
      cat "${wt_logs[$i]}" >&2
      status=1
    fi
  done
  rm -rf "$blocks"
  exit "$status"
}
trap wt_cleanup EXIT

for wt_block in "$blocks"/*.sh; do
  echo "== $(head -1 "$wt_block" | cut -c3-)"
  sed 1d "$wt_block" | sed 's/^/    /'
  case "$wt_block" in
    *-bg.sh)
      wt_log="$wt_block.log"
      # Its own process group, so that Ctrl-C reaches the whole block.
      setsid bash "$wt_block" >"$wt_log" 2>&1 &
      wt_pids+=($!)
      wt_logs+=("$wt_log")
      for _ in $(seq 600); do
        [ -s "$wt_log" ] && break
        if ! kill -0 "${wt_pids[-1]}" 2>/dev/null; then
          echo "walkthrough: background block exited before it was ready:" >&2
          cat "$wt_log" >&2
          exit 1
        fi
        sleep 0.1
      done
      [ -s "$wt_log" ] || { echo "walkthrough: background block printed nothing within 60 s" >&2; exit 1; }
      ;;
    *)
      # shellcheck disable=SC1090
      source "$wt_block"
      ;;
  esac
done
echo "walkthrough: $n_blocks blocks of README.md ran as written"
