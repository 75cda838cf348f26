#!/bin/bash
# Static files: threadloom --static against nginx serving the same folder, 1 KB and 1 MiB
# files, keep-alive, server `taskset -c 0` (nginx: one worker process), `wrk -t1 -c64`
# (2 s warm-up, 6 s measured) on cpu 1, servers alternated, 3 rounds.
#   benchmarks/static_vs_nginx.sh [MODEL...]      (default: pool asyncio)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"; kill $(jobs -p) 2>/dev/null || true' EXIT
mkdir -p "$DIR/public"
chmod 755 "$DIR"  # (mktemp -d is 700: nginx workers, not root, could not read it)
head -c 1024 /dev/urandom > "$DIR/public/1k.bin"
head -c 1048576 /dev/urandom > "$DIR/public/1m.bin"
chmod -R a+rX "$DIR/public"
printf 'def app(environ, start_response):\n    start_response("404 Not Found", [])\n    return []\n' > "$DIR/app404.py"
cat > "$DIR/nginx.conf" <<CONF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:18901; location /static/ { alias $DIR/public/; } }
}
CONF
MODELS=${*:-pool asyncio}
measure() { # url
  taskset -c 1 wrk -t1 -c64 -d2s "$1" >/dev/null
  taskset -c 1 wrk -t1 -c64 -d6s "$1" | awk '/Requests\/sec/{r=$2} /Transfer\/sec/{t=$2} END{print r, t}'
}
for round in 1 2 3; do
  taskset -c 0 nginx -c "$DIR/nginx.conf" -g 'daemon off;' & pid=$!; sleep 1
  for f in 1k 1m; do echo "round $round nginx $f $(measure http://127.0.0.1:18901/static/$f.bin)"; done
  kill $pid; wait $pid 2>/dev/null || true
  for m in $MODELS; do
    (cd "$DIR" && exec taskset -c 0 "$ROOT/.venv/bin/python" -m threadloom serve app404:app \
      --model $m --no-access-log --bind 127.0.0.1:18900 --static "/static=$DIR/public" 2>/dev/null) & pid=$!
    sleep 1.5
    for f in 1k 1m; do echo "round $round threadloom-$m $f $(measure http://127.0.0.1:18900/static/$f.bin)"; done
    kill $pid; wait $pid 2>/dev/null || true
  done
done
