#!/usr/bin/env bash
# Cycles/s of the MPAC reference coordinator (the Python MPACServer of
# github.com/KaiyangQ/mpac-protocol) on this machine, with the cycle of
# `concord bench --scenario mpac`: 32 agents, announce -> commit -> withdraw.
#
#   MPAC_SRC=/path/to/mpac-protocol bench/mpac-reference/run.sh [AGENTS] [SECONDS] [RUNS]
#
# MPAC_SRC is a checkout of that repository (git clone it anywhere); none of
# its code is part of Concord. It runs on Debian's python3 with Debian's
# python3-websockets, installed here when missing (as root).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agents="${1:-32}" seconds="${2:-10}" runs="${3:-3}"
py=/usr/bin/python3

if [ -z "${MPAC_SRC:-}" ] || [ ! -f "$MPAC_SRC/mpac-package/src/mpac_protocol/server.py" ]; then
  echo "set MPAC_SRC to a checkout of github.com/KaiyangQ/mpac-protocol (it has mpac-package/src/mpac_protocol)" >&2
  exit 2
fi
if ! "$py" -c 'import websockets' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-websockets
  else
    echo "the reference coordinator needs Debian's python3-websockets: sudo apt-get install python3-websockets" >&2
    exit 1
  fi
fi

port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
session="bench-$$"
MPAC_SRC="$MPAC_SRC" "$py" "$here/coordinator.py" "$port" "$session" > "${TMPDIR:-/tmp}/mpac-coordinator-$$.log" 2>&1 &
coordinator=$!
trap 'kill "$coordinator" 2>/dev/null || true; wait "$coordinator" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q ready "${TMPDIR:-/tmp}/mpac-coordinator-$$.log" 2>/dev/null && break
  sleep 0.1
done
grep -q ready "${TMPDIR:-/tmp}/mpac-coordinator-$$.log" || { cat "${TMPDIR:-/tmp}/mpac-coordinator-$$.log" >&2; exit 1; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$runs"); do
  # Each run is a fresh coordinator process: its session keeps every
  # intent it has seen, so a long-lived one slows down run after run.
  if [ "$run" -gt 1 ]; then
    kill "$coordinator"; wait "$coordinator" 2>/dev/null || true
    MPAC_SRC="$MPAC_SRC" "$py" "$here/coordinator.py" "$port" "$session" > "${TMPDIR:-/tmp}/mpac-coordinator-$$.log" 2>&1 &
    coordinator=$!
    for _ in $(seq 100); do grep -q ready "${TMPDIR:-/tmp}/mpac-coordinator-$$.log" 2>/dev/null && break; sleep 0.1; done
  fi
  printf 'run %d: ' "$run"
  "$py" "$here/cycle.py" "ws://127.0.0.1:$port" "$session" "$agents" "$seconds" "$coordinator"
done
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
rm -f "${TMPDIR:-/tmp}/mpac-coordinator-$$.log"
