-- wrk script for POST /track: args <events per request> <source id> <queue: true|false>
-- [<path, default /track> <sessions per connection, default 500> <delay ms, default 0>].
-- Each connection cycles through its own sessions, like returning visitors. A delay paces
-- each connection: that many milliseconds between an answer and its next request.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  per_request = tonumber(args[1]) or 10
  source = args[2] or "bench-source"
  queue = args[3] or "false"
  path = args[4] or "/track"
  sessions = tonumber(args[5]) or 500
  local pause = tonumber(args[6]) or 0
  if pause > 0 then
    -- Defined only when asked for: wrk checks for delay() after init, and without it
    -- sends each request as soon as the last was answered.
    function delay()
      return pause
    end
  end
  counter = 0
  local events = {}
  for i = 1, per_request do
    events[i] = '{"type":"page-view","properties":{"id":"' .. i .. '","category":"demo"}}'
  end
  events_json = table.concat(events, ",")
end

function request()
  counter = counter + 1
  local session = string.format("bench-%d-%d", tid, counter % sessions)
  local body = '{"source":{"id":"' .. source .. '"},"session":{"id":"' .. session .. '"},"events":[' ..
      events_json .. '],"options":{"queue":' .. queue .. '}}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("WRK requests=%d non2xx=%d socket_errors=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
