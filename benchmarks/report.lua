-- wrk reporter for benchmarks/run.py.
-- done() prints one machine-readable line, prefixed with BENCH_JSON, so that the harness never has
-- to scrape wrk's human-oriented text (whose units change with magnitude: us, ms, s; k, M).
-- No response() callback on purpose: defining one makes wrk parse every response in Lua, which
-- would cap the load generator well below what the fastest peers serve.
-- Note: wrk's errors.status counts responses with status >= 400; run.py also probes each server
-- once for an exact "200 + Hello, world!" before loading it.

function done(summary, latency, requests)
    local e = summary.errors
    local secs = summary.duration / 1e6
    io.write(string.format(
        'BENCH_JSON {"requests": %d, "duration_s": %.6f, "requests_per_s": %.2f, '
            .. '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, '
            .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
            .. '"non_2xx": %d, "bytes": %d}\n',
        summary.requests, secs, summary.requests / secs,
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
        e.connect, e.read, e.write, e.timeout,
        e.status, summary.bytes))
end
