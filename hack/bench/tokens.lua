-- wrk script of hack/bench/load.sh: every request carries "Authorization: Bearer <token>",
-- rotating through a tokens file (one token a line; each request is formatted once, in
-- init), each thread starting at a different offset.
-- Usage: wrk ... -s hack/bench/tokens.lua URL -- TOKENS_FILE
-- done() prints one machine-readable line: "RESULT requests=.. duration_us=.. rps=..
-- p50_us=.. p90_us=.. p99_us=.. max_us=.. non2xx=.. sock_errors=..".

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local tokens = {}
local i = 0

function init(args)
  local path = args[1]
  if path == nil then
    error("tokens.lua: pass the tokens file after --")
  end
  for line in io.lines(path) do
    if #line > 0 then
      tokens[#tokens + 1] = wrk.format("GET", nil, { Host = wrk.headers["Host"], Authorization = "Bearer " .. line })
    end
  end
  if #tokens == 0 then
    error("tokens.lua: no tokens in " .. path)
  end
  i = (id * 7919) % #tokens
end

function request()
  i = i % #tokens + 1
  return tokens[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  local sock = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d sock_errors=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, sock))
end
