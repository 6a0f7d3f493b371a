#!/usr/bin/env bash
# Train the shipped `lite` model through stages 1-3 and the decoder phase, resumably.
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
# Then the decoder phase, if the preset has one ($CONFIG-decoder): stage 3 continued on g_s
# alone, in a copy of the finished stage-3 run ($RUN/decoder). The shipped weights come
# from there.
if [ -f "crdr_codec/train/presets/$CONFIG-decoder.toml" ]; then
  mkdir -p "$RUN/decoder"
  if [ ! -f "$RUN/decoder/stage3.ckpt" ]; then  # copy, then rename: never a partial checkpoint
    cp "$RUN/stage3.ckpt" "$RUN/decoder/stage3.ckpt.tmp"
    mv "$RUN/decoder/stage3.ckpt.tmp" "$RUN/decoder/stage3.ckpt"
  fi
  "$CRDR" train --config "$CONFIG-decoder" --stage 3 --run-dir "$RUN/decoder" "$@"
fi
