#!/bin/bash
# A/B of two checkouts of threadloom on hello world, same venv, alternating rounds:
# server `taskset -c 0`, `wrk -t1 -c64` (2 s warm-up, 6 s measured) on cpu 1.
#   benchmarks/ab_commits.sh APPDIR OLD_TREE
# APPDIR holds hello_wsgi.py / hello_asgi.py (benchmarks/suites.py write_apps); OLD_TREE is a
# `git worktree` of the older commit with its C extensions built; the new tree is this one.
APPDIR=$1; OLD=$2; NEW=$(cd "$(dirname "$0")/.." && pwd)
cd $APPDIR
run() { # tree model app
  PYTHONPATH=$1/src taskset -c 0 $NEW/.venv/bin/python -m threadloom serve $3 --model $2 --threads 4 --no-access-log --bind 127.0.0.1:18900 2>/dev/null &
  pid=$!; sleep 1.5
  taskset -c 1 wrk -t1 -c64 -d2s http://127.0.0.1:18900/ >/dev/null
  r=$(taskset -c 1 wrk -t1 -c64 -d6s http://127.0.0.1:18900/ | awk '/Requests\/sec/{print $2}')
  kill $pid; wait $pid 2>/dev/null
  echo "$r"
}
for m in "pool hello_wsgi:app" "asyncio hello_asgi:app"; do
  set -- $m
  for i in $(seq 1 ${ROUNDS:-5}); do
    o=$(run $OLD $1 $2); n=$(run $NEW $1 $2)
    echo "$1 round $i: old $o new $n"
  done
done
