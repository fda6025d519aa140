-- wrk script: each thread walks its own share of a list of paths (BENCH_PATHS, one a line), so that every path is
-- requested at most once in a run: a miss benchmark that repeated a path would measure hits. A thread that runs out
-- starts its share again and counts it in "wrapped", which the harness reports as an error.
-- With BENCH_CHECK set, responses are also counted by their X-Derivative header (the sidecar's "created").
-- Without BENCH_PATHS, wrk requests the URL it was given, and only done() runs (no per-request Lua cost).

local paths_file = os.getenv("BENCH_PATHS")
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1")
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  created = 0
  wrapped = 0
  if paths_file then
    paths = {}
    local line_number = 0
    for line in io.lines(paths_file) do
      if line_number % thread_count == id then
        -- Formatted once here: wrk.format on every request would cost the client CPU the servers share.
        table.insert(paths, wrk.format("GET", line))
      end
      line_number = line_number + 1
    end
    position = 0
  end
end

if paths_file then
  function request()
    position = position + 1
    if position > #paths then
      position = 1
      wrapped = wrapped + 1
    end
    return paths[position]
  end
end

if os.getenv("BENCH_CHECK") then
  function response(status, headers, body)
    if headers["X-Derivative"] == "created" or headers["x-derivative"] == "created" then
      created = created + 1
    end
  end
end

function done(summary, latency, requests)
  local total_created, total_wrapped = 0, 0
  for _, thread in ipairs(threads) do
    total_created = total_created + (thread:get("created") or 0)
    total_wrapped = total_wrapped + (thread:get("wrapped") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"timeouts": %d, "created": %d, "wrapped": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.status,
    errors.connect + errors.read + errors.write, errors.timeout, total_created, total_wrapped,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
