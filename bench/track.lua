-- wrk script for POST /track: args <events per request> <source id> <queue: true|false>.
-- Each connection cycles through 500 sessions of its own, like returning visitors.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  per_request = tonumber(args[1]) or 10
  source = args[2] or "bench-source"
  queue = args[3] or "false"
  counter = 0
  local events = {}
  for i = 1, per_request do
    events[i] = '{"type":"page-view","properties":{"id":"' .. i .. '","category":"demo"}}'
  end
  events_json = table.concat(events, ",")
end

function request()
  counter = counter + 1
  local session = string.format("bench-%d-%d", tid, counter % 500)
  local body = '{"source":{"id":"' .. source .. '"},"session":{"id":"' .. session .. '"},"events":[' ..
      events_json .. '],"options":{"queue":' .. queue .. '}}'
  return wrk.format("POST", "/track", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("WRK requests=%d non2xx=%d socket_errors=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
