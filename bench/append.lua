-- wrk script: one DossierReceived per request, each with a fresh id and its own stream.
local thread_count = 0
-- The agency and service the dossiers go to: CHISO_AGENCY and CHISO_SERVICE, or the demo's.
local agency = os.getenv("CHISO_AGENCY") or "000.00.31.H56"
local service = os.getenv("CHISO_SERVICE") or "1.011442.000.00.00.H56"

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

function init(args)
  math.randomseed(os.time() * 1000 + tid)
  counter = 0
  -- each run opens new dossiers: the catalog refuses receiving one twice
  run = string.format("%08x", math.random(0, 0x7fffffff))
end

local function hex(n, width)
  return string.format("%0" .. width .. "x", n)
end

request = function()
  counter = counter + 1
  local id = hex(math.random(0, 0xffff), 4) .. hex(math.random(0, 0xffff), 4) .. "-" ..
    hex(math.random(0, 0xffff), 4) .. "-4" .. hex(math.random(0, 0xfff), 3) .. "-" ..
    hex(0x8000 + math.random(0, 0x3fff), 4) .. "-" .. hex(tid, 4) .. hex(counter, 8)
  local body = '{"events":[{"id":"' .. id .. '","type":"DossierReceived","data":' ..
    '{"agency":"' .. agency .. '","service":"' .. service .. '","channel":"online",' ..
    '"received_at":"2019-03-04T08:00:00+07:00","due_at":"2019-03-11T17:00:00+07:00"}}]}'
  return wrk.format("POST", "/v1/streams/dossier-" .. run .. "-" .. tid .. "-" .. counter,
    {["Content-Type"] = "application/json"}, body)
end
