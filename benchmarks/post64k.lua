-- wrk script for the post64k workload of benchmarks/run.py: every request is a POST carrying
-- 64 KiB of "x" (payloads.POST_BODY; the apps echo it back). wrk takes a single -s script, so
-- this one sets the request and then loads report.lua from its own directory for done().
-- The body is built once: wrk pre-formats the request and sends the same bytes each time.

wrk.method = "POST"
wrk.body = string.rep("x", 64 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
