#!/usr/bin/env bash
# Soak variant of the power-loss test: many more power cuts, then the cycle count and
# the losses found (the first loss stops the soak and is printed with its cycle).
#   scripts/power-loss-soak.sh [CYCLES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export ODRADEK_POWER_LOSS_CYCLES=${1:-1000}
export ODRADEK_POWER_LOSS_SEED=${2:-$RANDOM}
echo "power-loss soak: $ODRADEK_POWER_LOSS_CYCLES cycles, seed $ODRADEK_POWER_LOSS_SEED" >&2
status=0
python3 -m pytest -q -s -p no:cacheprovider -o timeout=0 \
    "tests/engine/test_power_loss.py::test_power_loss_never_loses_an_acknowledged_operation" || status=$?
if [ "$status" -eq 0 ]; then
    echo "power-loss soak: $ODRADEK_POWER_LOSS_CYCLES cycles, seed $ODRADEK_POWER_LOSS_SEED, losses: 0"
else
    echo "power-loss soak: seed $ODRADEK_POWER_LOSS_SEED, a loss or an error (above, with its cycle)," \
        "after fewer than $ODRADEK_POWER_LOSS_CYCLES cycles"
fi
exit "$status"
