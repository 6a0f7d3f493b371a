#!/usr/bin/env bash
# One model's part of a fuzzing campaign: fuzz/decode.py until it has used CPU_SECONDS of
# CPU time (not wall time: on a shared machine a fuzzer gets only part of a core),
# restarted after each finding (libFuzzer stops at the first), so that a crash does not
# end the campaign early. Findings go to CORPUS_ROOT/crashes-MODEL/, the log (with the CPU
# time used after each run) to CORPUS_ROOT/MODEL.log (appended).
#
#   fuzz/campaign.sh MODEL CPU_SECONDS [CORPUS_ROOT]
#   e.g. fuzz/campaign.sh tiny 960 /work/fuzz-corpus & fuzz/campaign.sh lite 960 /work/fuzz-corpus
#
# Run it with the Python that has atheris (PYTHON=..., default python3), from anywhere.
set -u
model=${1:?MODEL (tiny or lite)}
budget=${2:?CPU_SECONDS}
root=${3:-/work/fuzz-corpus}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
log="$root/$model.log"
mkdir -p "$root/$model" "$root/golden" "$root/crashes-$model"
"$python" "$here/fuzz/make_seeds.py" "$root/golden" --golden >/dev/null

cpu_used() {  # sets $cpu: CPU seconds (user + system) of the finished fuzzer runs
    # `times` must run in this shell: in a pipe or $(...) it would report a subshell's
    times >"$root/.times-$model"
    cpu=$(tail -n 1 "$root/.times-$model" | awk -v base="${base:-0}" '{ t = -base;
        for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } printf "%d", t }')
}
cpu_used
base=$cpu  # make_seeds.py does not count

while cpu_used && [ "$cpu" -lt "$budget" ]; do
    left=$((budget - cpu))
    PYTHONPATH="$here" "$python" "$here/fuzz/decode.py" --model "$model" \
        "$root/$model" "$here/fuzz/seeds" "$root/golden" \
        -max_total_time=$((left < 60 ? 60 : left)) -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$root/crashes-$model/" >>"$log" 2>&1
    status=$?
    cpu_used
    echo "campaign: exit $status; wall ${SECONDS} s, CPU ${cpu} s (user+sys of the runs)" >>"$log"
done
