#!/usr/bin/env bash
# What the Ray backend adds to a sweep's wall time: the README's two-seed Pendulum-v1 sweep on the local pool and on
# a local Ray instance, alternated A B A B A B, each followed by the same command again (every run then finished,
# so that second time is the backend's fixed cost alone). Prints one line per sweep; the README quotes medians.
#     bash benchmarks/sweep_overhead.sh [python]        (default python: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-.venv/bin/python}
RUN=(--total-timesteps 2000 --learning-starts 300 --batch-size 64 --hidden-size 32 --eval-frequency 1000
     --eval-episodes 2 --no-cuda)
seconds() { local start=$EPOCHREALTIME; "$@" > /dev/null 2>&1; echo "$EPOCHREALTIME - $start" | bc; }
for repeat in 1 2 3; do
    for backend in local ray; do
        options=(--jobs 2)
        [ "$backend" = ray ] && options=(--ray --cpus-per-run 1)
        dir=$(mktemp -d)
        mkdir "$dir/runs"
        sweep=("$PYTHON" benchmarks/sweep.py --envs Pendulum-v1 --seeds 1 2 "${options[@]}" --exp-name "overhead$repeat"
               --runs-dir "$dir/runs" -- "${RUN[@]}")
        echo "$backend: whole sweep $(seconds "${sweep[@]}") s, same command again $(seconds "${sweep[@]}") s"
        rm -rf "$dir"
    done
done
