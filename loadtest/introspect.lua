-- wrk script: token introspection (RFC 7662) of one valid access token; the
-- resource server authenticates with client_secret_basic.
--
--   LOADTEST_BASIC=<base64 of client_id:client_secret> LOADTEST_TOKEN=<jwt> \
--   LOADTEST_LABEL=<name> \
--     wrk -t2 -c64 -d20s -s loadtest/introspect.lua http://127.0.0.1:8080/oauth2/introspect
--
-- Every answer but a 200 with `"active":true` counts as an error; done() prints one RESULT line
-- (see common.lua).

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local common = dofile(here .. "common.lua")

local token = os.getenv("LOADTEST_TOKEN")
if not token or not token:match("^[%w%-_%.]+$") then
  error("LOADTEST_TOKEN (a compact JWT) is not set or not a JWT")
end

-- An answer that does not say the token is active is an error too.
common.expect = '"active":true'

common.post_form("token=" .. token .. "&token_type_hint=access_token")
