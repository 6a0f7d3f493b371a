#!/usr/bin/env bash
# Train the shipped `lite` model through stages 1-3 and the phases after them, resumably.
#
#   nohup scripts/train_lite.sh > runs/lite/train.out 2>&1 &
#
# Re-running the same command continues where it stopped: the latest stage with a
# checkpoint in RUN (default runs/lite) is resumed, earlier stages are not run again.
# Stop it with `kill <crdr pid>` (SIGTERM): the step in progress finishes, a checkpoint is
# written, and `crdr train` exits with status 75 so this script does not start the next
# stage. On a new machine without checkpoints, the stage recorded in the shipped weights
# is continued from weights/crdr-lite.pt (WEIGHTS=...); its optimiser state and, in
# stage 3, the discriminator start afresh.
# CONFIG=tiny (or another preset) and CRDR=path/to/crdr select other presets and binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/lite}
CRDR=${CRDR:-.venv/bin/crdr}
CONFIG=${CONFIG:-lite}
WEIGHTS=${WEIGHTS:-weights/crdr-lite.pt}
mkdir -p "$RUN"
# Continue from the latest stage that has a checkpoint: earlier stages are done (a stage
# is only started from the previous one's finished checkpoint, or from the shipped weights).
start_stage=0
for stage in 3 2 1; do
  if [ -f "$RUN/stage$stage.ckpt" ]; then start_stage=$stage; break; fi
done
if [ "$start_stage" -eq 0 ]; then
  start_stage=1
  if [ -f "$WEIGHTS" ]; then
    start_stage=$(.venv/bin/python -c "import sys,torch;print(torch.load(sys.argv[1],weights_only=True)['meta'].get('stage',1))" "$WEIGHTS")
    echo "no checkpoint in $RUN: continuing stage $start_stage from $WEIGHTS"
    "$CRDR" train --config "$CONFIG" --stage "$start_stage" --run-dir "$RUN" --init "$WEIGHTS" "$@"
    start_stage=$((start_stage + 1))
  fi
fi
for stage in 1 2 3; do
  [ "$stage" -lt "$start_stage" ] && continue
  "$CRDR" train --config "$CONFIG" --stage "$stage" --run-dir "$RUN" "$@"
done
# Then the phases that continue stage 3, each in a copy of the previous one's finished
# checkpoint, if the preset has them ($CONFIG-decoder, -full, -rates, -top, -more, -final,
# -cpu2, -cpu3): g_s alone, then the whole model, then the whole model with the end levels' rate
# weights moved (three times), then on larger crops, then with more photos (twice). The shipped
# weights come from the last one.
prev="$RUN"
for phase in decoder full rates top more final cpu2 cpu3; do
  [ -f "crdr_codec/train/presets/$CONFIG-$phase.toml" ] || continue
  mkdir -p "$RUN/$phase"
  if [ ! -f "$RUN/$phase/stage3.ckpt" ]; then  # copy, then rename: never a partial checkpoint
    cp "$prev/stage3.ckpt" "$RUN/$phase/stage3.ckpt.tmp"
    mv "$RUN/$phase/stage3.ckpt.tmp" "$RUN/$phase/stage3.ckpt"
  fi
  "$CRDR" train --config "$CONFIG-$phase" --stage 3 --run-dir "$RUN/$phase" "$@"
  prev="$RUN/$phase"
done
