#!/usr/bin/env bash
# One command on a lent GPU machine (no package registry there): install the wheels that
# bench/gpu/gather_wheels.py put in .whl/, then run every GPU stage (bench/gpu/suite.py) and
# write OUT/report.md, OUT/report.json, OUT/pytest-gpu.xml and OUT/log.txt.
#
#   bash bench/gpu/run.sh                      # on the GPU machine, from a copy of this tree
#   bash bench/gpu/run.sh --dry-run            # anywhere: CPU, toy sizes, the stand-in pynvml
#   bash bench/gpu/run.sh --stages search      # more options: python -m bench.gpu.suite --help
#
# OUT defaults to out/gpu; PYTHON to python3 (on the GPU machine, the one that holds torch).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-out/gpu}
export OUT
mkdir -p "$OUT"

dry_run=false
for argument in "$@"; do
    if [[ $argument == --dry-run ]]; then dry_run=true; fi
done

if ! $dry_run; then
    # The dry run uses the packages of the Python it runs under; the wheels are for the GPU
    # machine's Python 3.12 and need not fit this one.
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "no wheels in $PWD/.whl: run 'python bench/gpu/gather_wheels.py' where pip can download" >&2
        exit 2
    fi
    site=${WHEEL_SITE:-/tmp/optuna-energy-site}
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
# The package and the benchmarks are imported from this tree, not installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export BENCH_COMMAND="bash bench/gpu/run.sh${*:+ $*}"  # for the report
"$PYTHON" -m bench.gpu.suite --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
