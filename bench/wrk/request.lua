-- wrk script for the load benchmark (bench/run.mjs sets everything through the environment).
--   BENCH_HEADERS  request headers, one "Name: value" per line (Host, X-Forwarded-*, Cookie, ...)
--   BENCH_EXPECT   the expected status codes, comma-separated ("200", "202", "302")
--   BENCH_PATHS    optional comma-separated paths: each request goes to the next of them, in
--                  turn (same headers), instead of always to the URL's path. The requests are
--                  formatted once in init(), so the per-request cost is one Lua call.
-- Every response whose status is not expected counts as an error. done() prints one line,
--   WRKJSON {...}
-- with requests, duration, latency percentiles (microseconds), status counts and socket errors,
-- so the driver never parses wrk's human-readable report.

local expect = {}
for code in string.gmatch(os.getenv("BENCH_EXPECT") or "200", "%d+") do
  expect[tonumber(code)] = true
end

wrk.method = "GET"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS") or "", "[^,]+") do
  table.insert(paths, p)
end

function init(args)
  ok = 0
  bad = 0
  bad_codes = ""
  -- wrk has set the Host header by now (wrk.init runs before this).
  reqs = {}
  for i, p in ipairs(paths) do
    reqs[i] = wrk.format(nil, p)
  end
  next_req = 0
end

if #paths > 0 then
  function request()
    next_req = next_req % #reqs + 1
    return reqs[next_req]
  end
end

function response(status, headers, body)
  if expect[status] then
    ok = ok + 1
  else
    bad = bad + 1
    -- Remember a few distinct unexpected codes for the report.
    if #bad_codes < 40 and not string.find(bad_codes, tostring(status), 1, true) then
      bad_codes = bad_codes .. tostring(status) .. " "
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, codes = 0, 0, ""
  for _, t in ipairs(threads) do
    total_ok = total_ok + (t:get("ok") or 0)
    total_bad = total_bad + (t:get("bad") or 0)
    codes = codes .. (t:get("bad_codes") or "")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"ok":%d,"unexpected":%d,' ..
    '"unexpected_codes":"%s","connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, total_ok, total_bad, codes,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
