-- wrk script used for every closed-loop run.
-- Optional argument (after `--`): request body size in bytes; when > 0 the
-- request is a POST with that many bytes. At the end it prints one line
-- "WRK_JSON {...}" with counts, errors and latency percentiles (microseconds).

function init(args)
  local n = tonumber(args[1] or "0") or 0
  if n > 0 then
    wrk.method = "POST"
    wrk.body = string.rep("x", n)
    wrk.headers["Content-Type"] = "application/octet-stream"
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local fields = {
    requests = summary.requests, duration_us = summary.duration,
    bytes = summary.bytes, connect = e.connect, read = e.read,
    write = e.write, status = e.status, timeout = e.timeout,
    p50 = latency:percentile(50), p90 = latency:percentile(90),
    p99 = latency:percentile(99), p999 = latency:percentile(99.9),
    max = latency.max, mean = latency.mean,
  }
  local parts = {}
  for k, v in pairs(fields) do
    parts[#parts + 1] = string.format('"%s":%.3f', k, v)
  end
  io.write("WRK_JSON {" .. table.concat(parts, ",") .. "}\n")
end
