-- Shared by token.lua and introspect.lua (loaded with dofile by path):
-- counts bad answers (not 200) per thread and prints one machine-readable line.
--
--   RESULT label=<label> requests=<n> duration_s=<s> rps=<req/s>
--          p50_ms=<ms> p99_ms=<ms> max_ms=<ms> bad=<n> socket_errors=<n>
--          errors=<bad + socket errors>
--
-- (one line). The label comes from LOADTEST_LABEL. A script may set
-- `M.expect` to a plain substring every 200 body must contain; a 200 without
-- it counts as an error too. `M.post_form(body)` sets up the request both
-- scripts send: a form POST with client_secret_basic from LOADTEST_BASIC.

local M = {}

local threads = {}

function M.setup(thread)
  table.insert(threads, thread)
end

function M.init(_args)
  bad = 0
end

function M.response(status, _headers, body)
  if status ~= 200 or (M.expect and not (body and body:find(M.expect, 1, true))) then
    bad = bad + 1
  end
end

function M.done(summary, latency, _requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("bad") or 0)
  end
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT label=%s requests=%d duration_s=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f bad=%d socket_errors=%d errors=%d\n",
    os.getenv("LOADTEST_LABEL") or "unnamed",
    summary.requests,
    secs,
    summary.requests / secs,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    latency.max / 1000,
    bad,
    socket,
    bad + socket))
end

-- A form POST of `body` with client_secret_basic credentials (LOADTEST_BASIC,
-- base64 of client_id:client_secret), counted as above.
function M.post_form(body)
  local basic = os.getenv("LOADTEST_BASIC")
  if not basic or basic == "" then
    error("LOADTEST_BASIC (base64 of client_id:client_secret) is not set")
  end
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = "Basic " .. basic
  setup = M.setup
  init = M.init
  response = M.response
  done = M.done
end

return M
