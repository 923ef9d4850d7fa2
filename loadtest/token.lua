-- wrk script: the OAuth 2.0 token endpoint, client_credentials grant with
-- client_secret_basic.
--
--   LOADTEST_BASIC=<base64 of client_id:client_secret> LOADTEST_LABEL=<name> \
--     wrk -t2 -c64 -d20s -s loadtest/token.lua http://127.0.0.1:8080/oauth2/token
--
-- Every answer but 200 counts as an error; done() prints one RESULT line
-- (see common.lua).

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
local common = dofile(here .. "common.lua")

common.post_form("grant_type=client_credentials")
