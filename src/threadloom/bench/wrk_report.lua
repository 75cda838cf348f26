-- threadloom bench: wrk reporter.
-- wrk's own summary is for people (its units change with magnitude), so done() prints one
-- line of JSON after a marker for `threadloom bench` to read. Only done() is defined: a
-- request() or response() hook would run Lua for every request and slow wrk down.
-- errors.status is wrk's count of responses with a status of 400 or more.

local function ms(us)
    return us / 1000.0
end

function done(summary, latency, requests)
    local seconds = summary.duration / 1000000.0
    local e = summary.errors
    local fields = {
        string.format('"requests": %d', summary.requests),
        string.format('"duration_s": %.6f', seconds),
        string.format('"requests_per_s": %.2f', summary.requests / seconds),
        string.format('"p50_ms": %.3f', ms(latency:percentile(50.0))),
        string.format('"p90_ms": %.3f', ms(latency:percentile(90.0))),
        string.format('"p99_ms": %.3f', ms(latency:percentile(99.0))),
        string.format('"max_ms": %.3f', ms(latency.max)),
        string.format('"mean_ms": %.3f', ms(latency.mean)),
        string.format('"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}',
            e.connect, e.read, e.write, e.timeout),
        string.format('"non_2xx": %d', e.status),
    }
    io.write("BENCH_JSON {" .. table.concat(fields, ", ") .. "}\n")
end
