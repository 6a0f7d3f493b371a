#!/usr/bin/env bash
# One model's part of a fuzzing campaign: fuzz/decode.py for SECONDS seconds in all,
# restarted after each finding (libFuzzer stops at the first), so that a crash does not
# end the campaign early. Findings go to $CORPUS/../crashes-MODEL/, the log to
# $CORPUS/../MODEL.log (appended).
#
#   fuzz/campaign.sh MODEL SECONDS [CORPUS_ROOT]
#   e.g. fuzz/campaign.sh tiny 1020 /work/fuzz-corpus & fuzz/campaign.sh lite 1020 /work/fuzz-corpus
#
# Run it with the Python that has atheris (PYTHON=..., default python3), from the repository.
set -u
model=${1:?MODEL (tiny or lite)}
seconds=${2:?SECONDS}
root=${3:-/work/fuzz-corpus}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$root/$model" "$root/golden" "$root/crashes-$model"
"$python" "$here/fuzz/make_seeds.py" "$root/golden" --golden >/dev/null
end=$((SECONDS + seconds))
while [ "$SECONDS" -lt "$end" ]; do
    PYTHONPATH="$here" "$python" "$here/fuzz/decode.py" --model "$model" \
        "$root/$model" "$here/fuzz/seeds" "$root/golden" \
        -max_total_time=$((end - SECONDS)) -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$root/crashes-$model/" >>"$root/$model.log" 2>&1
    echo "campaign: exit $? after ${SECONDS}s" >>"$root/$model.log"
done
