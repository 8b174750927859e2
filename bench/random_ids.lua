-- wrk script: each request asks for a random customer from a file of external ids.
-- usage: wrk ... -s bench/random_ids.lua URL_PREFIX -- IDS_FILE API_KEY PATH_SUFFIX DELAY_MS
local ids = {}
local key, suffix, pause = nil, "", 0

function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  key, suffix, pause = args[2], args[3] or "", tonumber(args[4] or "0")
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local headers = {}
  if key and key ~= "-" then headers["X-API-Key"] = key end
  return wrk.format("GET", wrk.path .. ids[math.random(#ids)] .. suffix, headers)
end

function delay()
  return pause
end
