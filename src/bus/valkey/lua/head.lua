-- The newest id of each channel's history stream, `0-0` for one that has
-- none (history.rs gathers the reads that arrive together into one run).
-- KEYS the history streams; returns their ids in order.
local out = {}
for k = 1, #KEYS do
  local id = '0-0'
  if redis.call('EXISTS', KEYS[k]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[k])
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        id = info[i + 1]
        break
      end
    end
  end
  out[k] = id
end
return out
