-- The publish step of one batch (src/bus/valkey/publish.rs sends it, by
-- digest). Per channel: for each event check its idempotency key, XADD and
-- remember the key; then trim once and SPUBLISH the channel's events as one
-- message. The argument layout is written by mode.rs, the record by
-- record.rs; the reply is read by reply.rs.
--
-- Trimming records the newest dropped id as the stream's
-- `max-deleted-entry-id` (`XSETID … MAXDELETEDID`), which `XADD MAXLEN`
-- and `XTRIM` leave alone; reads compare cursors against it to tell a
-- covered position from a trimmed one.
local function parse(id)
  local d = string.find(id, '-', 1, true)
  return string.sub(id, 1, d - 1), tonumber(string.sub(id, d + 1))
end
local function lt(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and as < bs)
end
local max_len, age, window = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local min_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - age
local min_text = string.format('%d', min_ms)
-- Whether a bound passed as text (decimal ms, no leading zeros) is older
-- than the horizon. Compared as text: Lua turns a string into a number with
-- strtod, and that was a large part of the script's cost per event.
local function older(bound)
  return #bound < #min_text or (#bound == #min_text and bound < min_text)
end
-- One channel's reply line: its bound (and `/<length>` when the step
-- knows the stream's length), then its outcomes.
local function line(bound, out, len)
  if type(bound) == 'number' then bound = string.format('%d', bound) end
  if len then bound = bound .. '/' .. string.format('%d', len) end
  return bound .. ' ' .. table.concat(out, ' ')
end
-- One channel's events. ARGV[p] is its mode: first what the step is asked
-- to do besides appending — 'r' refresh the idle expiry, 'l' measure the
-- length (and trim to the bound), 'b' both, '-' neither — then a character
-- per event, '1' when the event has an idempotency key (the next key after
-- the history key KEYS[h]) and '0' when not. ARGV[p + 1] is the node's
-- lower bound of the oldest entry's ms (0: unknown); then per event its
-- record `<event>\n<json>`. Returns the bound, then the ids.
local function channel(p, h)
  local mode, bound = ARGV[p], ARGV[p + 1]
  local ask = string.byte(mode, 1)
  local refresh, measure = ask == 114 or ask == 98, ask == 108 or ask == 98
  local key = h
  local out, msg, id, first_id, created = {}, {}, nil, nil, false
  for i = 1, #mode - 1 do
    local record, k, first = ARGV[p + 1 + i], nil, false
    if string.byte(mode, i + 1) == 49 then
      key = key + 1
      k = KEYS[key]
      first = redis.call('GET', k)
    end
    if first then
      out[#out + 1] = '=' .. first
    else
      if id then
        id = redis.call('XADD', KEYS[h], '*', 'm', record)
      else
        -- The step's first append tells whether it creates the stream
        -- (which then holds just this step's entries) at no extra call.
        id = redis.call('XADD', KEYS[h], 'NOMKSTREAM', '*', 'm', record)
        if not id then
          id = redis.call('XADD', KEYS[h], '*', 'm', record)
          created = true
        end
      end
      first_id = first_id or id
      if k then redis.call('SET', k, id, 'PX', window) end
      out[#out + 1] = id
      msg[#msg + 1] = id .. '\n' .. record
    end
  end
  if id == nil then
    -- Only duplicates: nothing to trim or send, but a refresh that was due
    -- is done, since the node now counts it as done.
    if refresh then redis.call('PEXPIRE', KEYS[h], age * 2) end
    return line(bound, out)
  end
  -- The length is measured only when the node asks (its count of what was
  -- added since the last measure may reach the bound) or is known anyway;
  -- otherwise the stream is short of the bound and needs no trim.
  local len = nil
  if created then
    len = #msg
  elseif measure then
    len = redis.call('XLEN', KEYS[h])
  end
  local through = nil
  if len and len > max_len then
    local old = redis.call('XRANGE', KEYS[h], '-', '+', 'COUNT', len - max_len)
    through = old[#old][1]
    len = max_len
  end
  -- With the bound, most publishes skip reading the stream's head; only
  -- once it falls behind the horizon is the head read, and only when the
  -- head has aged out is the newest aged entry looked up (XREVRANGE from
  -- the horizon is far dearer). A step that created the stream (it holds
  -- only this step's entries, none trimmed) knows its head without reading
  -- it: short-lived channels then never read one.
  local stale = min_ms > 0 and older(bound)
  if stale and created and through == nil then
    local first_ms = tonumber((parse(first_id)))
    if first_ms >= min_ms then bound, stale = first_ms, false end
  end
  if stale then
    local oldest = redis.call('XRANGE', KEYS[h], '-', '+', 'COUNT', 1)
    if #oldest > 0 and tonumber((parse(oldest[1][1]))) < min_ms then
      local aged = redis.call('XREVRANGE', KEYS[h], '(' .. min_text .. '-0', '-', 'COUNT', 1)
      if #aged > 0 and (through == nil or lt(through, aged[1][1])) then through = aged[1][1] end
      bound = min_ms
    elseif #oldest > 0 then
      bound = tonumber((parse(oldest[1][1])))
    end
  end
  if through then
    local ms, seq = parse(through)
    redis.call('XTRIM', KEYS[h], 'MINID', ms .. '-' .. string.format('%d', seq + 1))
    redis.call('XSETID', KEYS[h], id, 'MAXDELETEDID', through)
  end
  -- Twice the age bound: an idle channel's stream lingers long enough that
  -- a client coming back soon is told `history_trimmed` rather than
  -- `history_lost`, and then it goes. A stream this step created (it holds
  -- only what the step added) gets its expiry whatever the node remembers.
  if refresh or created then redis.call('PEXPIRE', KEYS[h], age * 2) end
  -- The shard channel is the history key without its `:h`.
  redis.call('SPUBLISH', string.sub(KEYS[h], 1, -3), table.concat(msg, '\n'))
  return line(bound, out, len)
end
-- The reply is one string, a line per channel: the channel's bound, then
-- its events' ids, a duplicate's (the first publish's id) marked `=`. One
-- string rather than nested arrays: three values per event fewer for Valkey
-- to build and for the client to parse. A channel whose step fails (say its
-- key holds another type) fails alone: its line is `!` and the error, and
-- the other channels of the batch go on. Each channel's keys follow the
-- previous channel's: its history key, then its events' idempotency keys.
local all, p, h = {}, 4, 1
while p <= #ARGV do
  local mode = ARGV[p]
  local ok, out = pcall(channel, p, h)
  if not ok then
    if type(out) == 'table' then out = out.err or '?' end
    out = '!' .. string.gsub(tostring(out), '\n', ' ')
  end
  all[#all + 1] = out
  local _, keys = string.gsub(mode, '1', '')
  h = h + 1 + keys
  p = p + 1 + #mode
end
return table.concat(all, '\n')
