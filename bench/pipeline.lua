-- wrk script for HTTP/1.1 pipelining: each write carries DEPTH requests for the URL given to wrk.
--   wrk -t1 -c64 -d5s -s bench/pipeline.lua http://127.0.0.1:18090/plaintext -- 16
-- DEPTH is the first script argument (after "--"), default 16. wrk counts responses, so
-- Requests/sec is directly comparable with a non-pipelined run.
local req

init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()  -- wrk.method, wrk.path and wrk.headers (Host) from the URL
  end
  req = table.concat(r)
end

request = function()
  return req
end
