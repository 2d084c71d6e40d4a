#!/usr/bin/env bash
# Soak variant of the SIGKILL crash test on an object store (a directory store; the
# cache deleted after every kill): many more kill/restart cycles.
#   scripts/store-crash-soak.sh [CYCLES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export ODRADEK_STORE_CRASH_CYCLES=${1:-1000}
export ODRADEK_CRASH_SEED=${2:-$RANDOM}
echo "store crash soak: $ODRADEK_STORE_CRASH_CYCLES cycles, seed $ODRADEK_CRASH_SEED" >&2
exec python3 -m pytest -q -p no:cacheprovider -o timeout=0 \
    "tests/store/test_store_crash.py::test_sigkill_on_a_directory_store"
