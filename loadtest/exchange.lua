-- wrk script: the OAuth 2.0 token endpoint, token exchange (RFC 8693) of
-- an OIDC ID token for an agent's access token, without client
-- authentication (the subject token is the credential).
--
--   LOADTEST_SUBJECT_TOKEN=<jwt> LOADTEST_CLIENT_ID=<agent id> LOADTEST_LABEL=<name> \
--     wrk -t2 -c64 -d20s -s loadtest/exchange.lua http://127.0.0.1:8080/oauth2/token
--
-- The same subject token is sent on every request (the trust policy of the
-- run is not single-use). Every answer but 200 with an access token counts
-- as an error; done() prints one RESULT line (see common.lua).

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local common = dofile(here .. "common.lua")

local subject = os.getenv("LOADTEST_SUBJECT_TOKEN")
local client_id = os.getenv("LOADTEST_CLIENT_ID")
if not subject or subject == "" or not client_id or client_id == "" then
  error("LOADTEST_SUBJECT_TOKEN and LOADTEST_CLIENT_ID must be set")
end
-- A compact JWS and an agent id need no form-urlencoding; refuse anything
-- that would.
for _, v in ipairs({ subject, client_id }) do
  if v:find("[^%w%-%._~]") then
    error("LOADTEST_SUBJECT_TOKEN and LOADTEST_CLIENT_ID must be plain characters")
  end
end

common.expect = '"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"'

common.post_form_anonymous(
  "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
    .. "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token"
    .. "&subject_token=" .. subject
    .. "&client_id=" .. client_id)
