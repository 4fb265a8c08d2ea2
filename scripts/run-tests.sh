#!/usr/bin/env bash
# Install what the tests need on a Debian machine, then run them: the system packages that are
# missing (with sudo when not root), a virtual environment in .venv, the package with its test
# extras, and pytest (arguments are passed on to pytest, e.g. scripts/run-tests.sh tests/test_cli.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use for real: Python with venv, a PostgreSQL server (started by the
# tests as the postgres user), PgBouncer (launch --pooler pgbouncer), a headless Chromium (the optuna-dashboard browser test) and Slurm
# with munge (a one-node cluster the tests start to run studies/slurm/search.sbatch).
# To need another one, add a line: its check, then the Debian package that satisfies it.
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || missing+=(pgbouncer)
command -v chromium >/dev/null || missing+=(chromium)
[ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] || missing+=(slurm-wlm)
[ -x /usr/sbin/munged ] || missing+=(munge)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  echo "run-tests: installing Debian packages: ${missing[*]}"
  $sudo_ apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q "${missing[@]}"
fi

python3 -m venv .venv
. .venv/bin/activate
pip install -e '.[test]'
python -m pytest "$@"
