-- wrk script: each request POSTs a bulk read of BATCH distinct customers, taken at a random place in a file of
-- external ids (shuffled beforehand).
-- usage: wrk ... -s bench/bulk_ids.lua URL -- IDS_FILE API_KEY BATCH EXPLAIN
local ids = {}
local key, batch, explain = nil, 1000, "false"

function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  key, batch, explain = args[2], tonumber(args[3] or "1000"), args[4] or "false"
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local start, picked = math.random(#ids), {}
  for i = 0, batch - 1 do picked[i + 1] = '"' .. ids[(start + i) % #ids + 1] .. '"' end
  local body = '{"customer_ids":[' .. table.concat(picked, ",") .. '],"explain":' .. explain .. '}'
  return wrk.format("POST", wrk.path, {["X-API-Key"] = key, ["Content-Type"] = "application/json"}, body)
end
