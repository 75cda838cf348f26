#!/usr/bin/env bash
# HTTP/2 end to end under each core (issue 15): h2load against `threadloom serve` of hello
# world, WSGI under `pool` and ASGI under `asyncio`, THREADLOOM_H2_CORE=h2 and =ngh2
# alternated within each round, a fresh server and a warm-up each time.
#
#   ROUNDS=3 benchmarks/h2_cores_e2e.sh            # from the repository root, .venv built
#
# Server pinned to CPU 0, h2load to CPU 1. Prints one line per run and the medians.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
N=${N:-100000}
WARM=${WARM:-10000}
PORT=${PORT:-18431}
CORES=${CORES:-"h2 ngh2"}
BIN=$(pwd)/.venv/bin
APPDIR=$(mktemp -d)
trap 'rm -rf "$APPDIR"' EXIT
"$BIN/python" - "$APPDIR" <<'EOF'
import sys
sys.path.insert(0, "benchmarks")
from suites import HELLO_ASGI, HELLO_WSGI
open(f"{sys.argv[1]}/hello_wsgi.py", "w").write(HELLO_WSGI)
open(f"{sys.argv[1]}/hello_asgi.py", "w").write(HELLO_ASGI)
EOF

declare -A RESULTS
run_one() {  # model app core
    local model=$1 app=$2 core=$3 extra=()
    [[ $model == pool ]] && extra=(--threads 4)
    (cd "$APPDIR" && THREADLOOM_H2_CORE=$core exec taskset -c 0 "$BIN/threadloom" serve "$app" \
        --model "$model" "${extra[@]}" --no-access-log --bind "127.0.0.1:$PORT") \
        >"$APPDIR/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -s --http2-prior-knowledge -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.1
    done
    taskset -c 1 h2load -n "$WARM" -c 64 -m 10 "http://127.0.0.1:$PORT/" >/dev/null
    local out rps ok
    out=$(taskset -c 1 h2load -n "$N" -c 64 -m 10 "http://127.0.0.1:$PORT/")
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    ok=$(awk '/^requests:/ {print $8}' <<<"$out")
    kill -TERM "$pid"
    wait "$pid" || true
    echo "$model $app $core: $rps req/s ($ok of $N succeeded), load $(cut -d' ' -f1 /proc/loadavg)"
    RESULTS["$model $core"]+="$rps "
}

echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}')," \
    "$("$BIN/python" -V), h2 $("$BIN/python" -c 'import h2; print(h2.__version__)')," \
    "ngh2 $("$BIN/python" -c 'import ngh2; print(ngh2.__version__)'), $(h2load --version | head -1)"
for round in $(seq "$ROUNDS"); do
    for pair in "pool hello_wsgi:app" "asyncio hello_asgi:app"; do
        for core in $CORES; do
            run_one $pair "$core"
        done
    done
    CORES=$(tr ' ' '\n' <<<"$CORES" | tac | tr '\n' ' ')  # the other core first next round
done
echo "medians:"
for key in "${!RESULTS[@]}"; do
    median=$(tr ' ' '\n' <<<"${RESULTS[$key]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "  $key: $median req/s (rounds: ${RESULTS[$key]})"
done | sort
