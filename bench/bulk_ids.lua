-- wrk script: each request POSTs a bulk read of BATCH distinct customers, taken at a random place in a file of
-- external ids (shuffled beforehand).
-- usage: wrk ... -s bench/bulk_ids.lua URL -- IDS_FILE API_KEY BATCH EXPLAIN [ENCODING]
-- (ENCODING, e.g. gzip: sent as Accept-Encoding, as an HTTP client library would)
local ids = {}
local key, batch, explain, encoding = nil, 1000, "false", nil

function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  key, batch, explain, encoding = args[2], tonumber(args[3] or "1000"), args[4] or "false", args[5]
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local start, picked = math.random(#ids), {}
  for i = 0, batch - 1 do picked[i + 1] = '"' .. ids[(start + i) % #ids + 1] .. '"' end
  local body = '{"customer_ids":[' .. table.concat(picked, ",") .. '],"explain":' .. explain .. '}'
  local headers = {["X-API-Key"] = key, ["Content-Type"] = "application/json"}
  if encoding then headers["Accept-Encoding"] = encoding end
  return wrk.format("POST", wrk.path, headers, body)
end
