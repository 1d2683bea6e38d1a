-- One page of history after a position, for each of several channels
-- (history.rs gathers the reads that arrive together into one run).
-- KEYS the history streams; ARGV[1] the most entries per page; then for
-- each key its position and the most bytes of field values of its page
-- (at least one entry): ARGV[2k], ARGV[2k + 1].
-- Returns, per key, {status, from, entries, more}: status 0 covered, 1
-- trimmed, 2 not a position of this history (ahead of it, or an entry it
-- never had), 3 from a history that is gone; `from` is where the
-- returned entries start (exclusive); `more` is 1 when the page stopped
-- before the stream's end. Read in small chunks so a page of large events
-- does not pull the whole stream into the script first.
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function lt(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function read(key, after, max_count, budget)
  if redis.call('EXISTS', key) == 0 then
    if after == '0-0' then return {0, '0-0', {}, 0} end
    return {3, '0-0', {}, 0}
  end
  local info = redis.call('XINFO', 'STREAM', key)
  local last, maxdel, first = '0-0', '0-0', '0-0'
  for i = 1, #info, 2 do
    local k = info[i]
    if k == 'last-generated-id' then last = info[i + 1]
    elseif k == 'max-deleted-entry-id' then maxdel = info[i + 1]
    elseif k == 'recorded-first-entry-id' then first = info[i + 1] end
  end
  if lt(last, after) then return {2, last, {}, 0} end
  local status, from = 0, after
  if lt(after, maxdel) then
    status, from = 1, maxdel
  elseif after ~= '0-0' and lt(maxdel, after) and lt(after, first) then
    status, from = 3, '0-0'
  elseif after ~= '0-0' and lt(maxdel, after) then
    -- Inside what is retained, a position must be an entry of this
    -- history. One the old primary gave out before a failover to a replica
    -- that missed it is not, even once newer entries follow it: treated as
    -- covered, its reader would silently miss the lost tail.
    if #redis.call('XRANGE', key, after, after) == 0 then return {2, last, {}, 0} end
  end
  local out, used, cursor = {}, 0, from
  while true do
    local want = math.min(32, max_count - #out)
    local chunk = redis.call('XRANGE', key, '(' .. cursor, '+', 'COUNT', want)
    for _, e in ipairs(chunk) do
      local size = 0
      for j = 2, #e[2], 2 do size = size + #e[2][j] end
      if #out > 0 and used + size > budget then return {status, from, out, 1} end
      used = used + size
      out[#out + 1] = e
      cursor = e[1]
    end
    if #chunk < want then return {status, from, out, 0} end
    if #out >= max_count then return {status, from, out, 1} end
  end
end
local max_count, out = tonumber(ARGV[1]), {}
for k = 1, #KEYS do
  out[k] = read(KEYS[k], ARGV[2 * k], max_count, tonumber(ARGV[2 * k + 1]))
end
return out
