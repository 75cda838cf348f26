#!/usr/bin/env bash
# HTTP/2 hello world: threadloom against the peers that speak HTTP/2, in one run.
#
#   benchmarks/h2_peers.sh [ROUNDS] [REQUESTS]      (defaults: 3 rounds of 50000 requests)
#
# h2load -c 64 -m 10 (64 connections, 10 streams in flight on each), cleartext by prior
# knowledge; the server on CPU 0, h2load on CPU 1; the servers alternate within each round and
# the table shows each one's median req/s and its ratio to threadloom's (the h2 core, forced
# with THREADLOOM_H2_CORE=h2; the -ngh2 rows run ngh2, the default where it is installed,
# named all the same). Peers come from
# benchmarks/.peers-venv (benchmarks/install_peers.sh): granian --http 2, hypercorn (h2),
# gunicorn --http-protocols h2 --http2-cleartext prior-knowledge (gthread, 4 threads),
# uvicorn --http zttp --http2. A peer that will not start is reported, not fatal.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/.."
rounds="${1:-3}"
requests="${2:-50000}"
peers="$here/.peers-venv/bin"
tl="$root/.venv/bin/threadloom"
apps="$(mktemp -d)"
trap 'rm -rf "$apps"' EXIT
cat >"$apps/hello_wsgi.py" <<'EOF'
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]
EOF
cat >"$apps/hello_asgi.py" <<'EOF'
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].replace("lifespan.", "")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
EOF

port=18620
declare -A cmd=(
  [threadloom-pool-wsgi]="env THREADLOOM_H2_CORE=h2 $tl serve hello_wsgi:app --model pool --threads 4 --no-access-log --bind 127.0.0.1:$port"
  [threadloom-asyncio-asgi]="env THREADLOOM_H2_CORE=h2 $tl serve hello_asgi:app --model asyncio --no-access-log --bind 127.0.0.1:$port"
  [threadloom-pool-wsgi-ngh2]="env THREADLOOM_H2_CORE=ngh2 $tl serve hello_wsgi:app --model pool --threads 4 --no-access-log --bind 127.0.0.1:$port"
  [threadloom-asyncio-asgi-ngh2]="env THREADLOOM_H2_CORE=ngh2 $tl serve hello_asgi:app --model asyncio --no-access-log --bind 127.0.0.1:$port"
  [granian-wsgi]="$peers/granian --interface wsgi --http 2 --no-ws --blocking-threads 4 --host 127.0.0.1 --port $port hello_wsgi:app"
  [granian-asgi]="$peers/granian --interface asgi --http 2 --no-ws --host 127.0.0.1 --port $port hello_asgi:app"
  [hypercorn-asgi]="$peers/hypercorn --bind 127.0.0.1:$port hello_asgi:app"
  [gunicorn-wsgi]="$peers/gunicorn -k gthread -w 1 --threads 4 --http-protocols h2,h1 --http2-cleartext prior-knowledge -b 127.0.0.1:$port hello_wsgi:app"
  [uvicorn-asgi]="$peers/uvicorn --http zttp --http2 --no-access-log --log-level warning --host 127.0.0.1 --port $port hello_asgi:app"
)
order=(threadloom-pool-wsgi threadloom-pool-wsgi-ngh2 granian-wsgi gunicorn-wsgi
       threadloom-asyncio-asgi threadloom-asyncio-asgi-ngh2 granian-asgi hypercorn-asgi uvicorn-asgi)
declare -A results

wait_port() {
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

for round in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do
    (cd "$apps" && exec taskset -c 0 ${cmd[$name]}) >"$apps/$name.log" 2>&1 &
    pid=$!
    if ! wait_port; then
      echo "$name: did not start (see below)"; tail -3 "$apps/$name.log"; kill $pid 2>/dev/null; wait $pid 2>/dev/null
      continue
    fi
    taskset -c 1 h2load -n 2000 -c 16 -m 10 "http://127.0.0.1:$port/" >/dev/null 2>&1  # warm-up
    out="$(taskset -c 1 h2load -n "$requests" -c 64 -m 10 "http://127.0.0.1:$port/" 2>&1)"
    rps="$(echo "$out" | awk '/finished in/ {print $4}')"
    failed="$(echo "$out" | awk '/^requests:/ {print $10}')"
    echo "round $round $name: ${rps:-?} req/s (failed: ${failed:-?})"
    results[$name]="${results[$name]:-} ${rps:-0}"
    kill -INT $pid 2>/dev/null; sleep 0.5; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
echo
echo "| server | median req/s | threadloom / server |"
echo "|---|---:|---:|"
wsgi_tl="$(echo "${results[threadloom-pool-wsgi]:-}" | median)"
asgi_tl="$(echo "${results[threadloom-asyncio-asgi]:-}" | median)"
for name in "${order[@]}"; do
  m="$(echo "${results[$name]:-}" | median)"
  base="$wsgi_tl"; [[ "$name" == *asgi* ]] && base="$asgi_tl"
  ratio="$(awk -v a="$base" -v b="$m" 'BEGIN {print (b > 0 ? sprintf("%.2fx", a / b) : "-")}')"
  echo "| $name | $m | $ratio |"
done
echo
echo "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'); h2load -c 64 -m 10 -n $requests; $rounds rounds"
