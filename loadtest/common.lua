-- Shared by token.lua, introspect.lua and exchange.lua (loaded with dofile by path):
-- counts bad answers (not 200) per thread and prints one machine-readable line.
--
--   RESULT label=<label> requests=<n> duration_s=<s> rps=<req/s>
--          p50_ms=<ms> p99_ms=<ms> max_ms=<ms> bad=<n> socket_errors=<n>
--          errors=<bad + socket errors> ok=<n> limited=<n>
--
-- (one line). `ok` counts the good 200 answers, `limited` the 429 answers
-- (counted in `bad` too unless LOADTEST_ALLOW_429=1 or the script sets
-- `M.allow_429 = true`). The
-- label comes from LOADTEST_LABEL. With LOADTEST_NODES (`host:port,...`),
-- wrk's threads connect to those addresses in turn instead of the URL's
-- (the URL's host still names the Host header): one wrk, one latency
-- histogram, load spread over several servers. A script may set
-- `M.expect` to a plain substring every 200 body must contain; a 200 without
-- it counts as an error too. `M.post_form(body)` sets up the request token.lua and
-- introspect.lua send: a form POST with client_secret_basic from
-- LOADTEST_BASIC; `M.post_form_anonymous(body)` the same without
-- credentials (exchange.lua).

local M = {}

M.allow_429 = os.getenv("LOADTEST_ALLOW_429") == "1"

local threads = {}

function M.setup(thread)
  table.insert(threads, thread)
  local nodes = os.getenv("LOADTEST_NODES")
  if nodes and nodes ~= "" then
    local list = {}
    for node in nodes:gmatch("[^,]+") do
      table.insert(list, node)
    end
    local node = list[(#threads - 1) % #list + 1]
    local host, port = node:match("^(.*):(%d+)$")
    if not host then
      error("LOADTEST_NODES: expected host:port, not " .. node)
    end
    thread.addr = wrk.lookup(host, port)[1]
  end
end

function M.init(_args)
  bad = 0
  good = 0
  limited = 0
end

function M.response(status, _headers, body)
  if status == 429 then
    limited = limited + 1
    if not M.allow_429 then
      bad = bad + 1
    end
  elseif status ~= 200 or (M.expect and not (body and body:find(M.expect, 1, true))) then
    bad = bad + 1
  else
    good = good + 1
  end
end

function M.done(summary, latency, _requests)
  local bad, good, limited = 0, 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("bad") or 0)
    good = good + (t:get("good") or 0)
    limited = limited + (t:get("limited") or 0)
  end
  local e = summary.errors
  local socket = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT label=%s requests=%d duration_s=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f bad=%d socket_errors=%d errors=%d ok=%d limited=%d\n",
    os.getenv("LOADTEST_LABEL") or "unnamed",
    summary.requests,
    secs,
    summary.requests / secs,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    latency.max / 1000,
    bad,
    socket,
    bad + socket,
    good,
    limited))
end

-- A form POST of `body` without client authentication, counted as above.
function M.post_form_anonymous(body)
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  setup = M.setup
  init = M.init
  response = M.response
  done = M.done
end

-- A form POST of `body` with client_secret_basic credentials (LOADTEST_BASIC,
-- base64 of client_id:client_secret), counted as above.
function M.post_form(body)
  local basic = os.getenv("LOADTEST_BASIC")
  if not basic or basic == "" then
    error("LOADTEST_BASIC (base64 of client_id:client_secret) is not set")
  end
  M.post_form_anonymous(body)
  wrk.headers["Authorization"] = "Basic " .. basic
end

return M
