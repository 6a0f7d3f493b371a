#!/usr/bin/env bash
# Train the shipped `lite` model through stages 1-3, resumably.
#
#   nohup scripts/train_lite.sh > runs/lite/train.out 2>&1 &
#
# Re-running the same command continues where it stopped: each stage resumes from
# RUN/stageN.ckpt, finished stages are skipped. Stop it with `kill <crdr pid>` (SIGTERM):
# the step in progress finishes, a checkpoint is written, and `crdr train` exits with
# status 75 so this script does not start the next stage. On a new machine without checkpoints,
# the stage recorded in the shipped weights is continued from weights/crdr-lite.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/lite}
CRDR=${CRDR:-.venv/bin/crdr}
mkdir -p "$RUN"
start_stage=1
if ! ls "$RUN"/stage*.ckpt >/dev/null 2>&1 && [ -f weights/crdr-lite.pt ]; then
  start_stage=$(.venv/bin/python -c "import torch;print(torch.load('weights/crdr-lite.pt',weights_only=True)['meta'].get('stage',1))")
  echo "no checkpoint in $RUN: continuing stage $start_stage from weights/crdr-lite.pt"
  "$CRDR" train --config lite --stage "$start_stage" --run-dir "$RUN" --init weights/crdr-lite.pt "$@"
  start_stage=$((start_stage + 1))
fi
for stage in 1 2 3; do
  [ "$stage" -lt "$start_stage" ] && continue
  "$CRDR" train --config lite --stage "$stage" --run-dir "$RUN" "$@"
done
