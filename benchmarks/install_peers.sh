#!/usr/bin/env bash
# Create (or refresh) the venv holding the peer servers that benchmarks/run.py compares against.
# The peers live in their own venv so that the project's .venv stays clean: nothing threadloom
# imports or tests should ever resolve against waitress, gunicorn, granian, ... by accident.
# Idempotent: re-running only installs what is missing. Set UPGRADE=1 to pull newer releases.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.peers-venv"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3.11 || command -v python3)"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
fi

# The frameworks serve the real-app workloads (flask, django, starlette, fastapi); they are
# in the project's bench extra too, since threadloom serves them from .venv.
peers=(waitress gunicorn granian flask django starlette fastapi "uvicorn[standard]" httptools uvloop
    hypercorn zttp)
upgrade=()
[ "${UPGRADE:-0}" = 1 ] && upgrade=(--upgrade)
"$venv/bin/pip" install --quiet "${upgrade[@]}" "${peers[@]}"

command -v wrk >/dev/null || echo "note: wrk is not installed (apt-get install -y wrk)" >&2
command -v taskset >/dev/null || echo "note: taskset is not installed (util-linux)" >&2
"$venv/bin/pip" list --format=freeze | grep -iE '^(waitress|gunicorn|granian|flask|django|starlette|fastapi|uvicorn|httptools|uvloop|hypercorn|zttp)=='
