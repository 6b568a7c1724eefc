-- One atomic breaker operation: read the state, apply the rules of state.py, write it
-- back, return the new state. Keep this file and breakers/state.py in step: the
-- store contract tests run the same scenarios against both.
--
-- KEYS[1] state hash, KEYS[2] probe reservations (zset: member -> expiry), KEYS[3] index set,
-- KEYS[4] the token of the last deliberate clear (absent when never cleared, or wiped)
-- ARGV: op, name, failure_threshold, success_threshold, open_seconds, max_open_seconds,
--       jitter, half_open_max_calls, probe_ttl, rand, now ('' = Redis TIME),
--       arg (record: 1 success, 0 failure, '' release; force: target state;
--            probed: 1 the active probe succeeded, 0 it failed; cool_down: seconds),
--       probe (1/0), error, probe member,
--       seed (JSON fields of this worker's open state, or ''), the clear token it last saw
-- op 'seed' only re-seeds: it writes nothing when the key exists or the seed is refused.

local key, probes_key, index_key = KEYS[1], KEYS[2], KEYS[3]
local op, name = ARGV[1], ARGV[2]
local cfg = {
  failure_threshold = tonumber(ARGV[3]), success_threshold = tonumber(ARGV[4]),
  open_seconds = tonumber(ARGV[5]), max_open_seconds = tonumber(ARGV[6]),
  jitter = tonumber(ARGV[7]), half_open_max_calls = tonumber(ARGV[8]),
  probe_ttl = tonumber(ARGV[9]),
}
local rand = tonumber(ARGV[10])
local now = tonumber(ARGV[11])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local arg, probe, err, member = ARGV[12], ARGV[13] == '1', ARGV[14], ARGV[15]
local seed, seen_clear = ARGV[16] or '', ARGV[17] or ''

local NUMBERS = {'failures', 'successes', 'openings', 'version', 'total_failures',
                 'opened_at', 'retry_at', 'last_failure_at', 'changed_at',
                 'active_probes', 'last_probe_at', 'cooldown_until'}
local s = {state = 'closed', failures = 0, successes = 0, openings = 0, version = 0,
           total_failures = 0, active_probes = 0}
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do s[raw[i]] = raw[i + 1] end
-- Redis lost this breaker (restarted empty, wiped) with no deliberate clear since this
-- worker last looked: the worker's open state is the best truth left, so it comes back.
local seeded = #raw == 0 and seed ~= '' and (redis.call('GET', KEYS[4]) or '') == seen_clear
if seeded then
  for k, v in pairs(cjson.decode(seed)) do s[k] = v end
end
for _, f in ipairs(NUMBERS) do
  if s[f] ~= nil then s[f] = tonumber(s[f]) end
end
local before, previous = s.version, s.state
local result = {allowed = 1, probe = 0, transitioned = 0, recorded = 1, cooling = 0}

-- A provider's Retry-After still holds every call back.
local function cooling()
  return s.cooldown_until and now < s.cooldown_until
end

-- A write that ends a streak drops a spent cooldown.
local function drop_spent_cooldown()
  if not cooling() then s.cooldown_until = false end
end

local function transition(to)
  s.state = to
  s.version = s.version + 1
  s.changed_at = now
end

local function open()
  if s.state ~= 'half_open' then s.active_probes = 0 end
  s.openings = s.openings + 1
  local base = math.min(cfg.open_seconds * math.max(s.openings, 1), cfg.max_open_seconds)
  local period = math.max(0, base * (1 + cfg.jitter * (2 * rand - 1)))
  transition('open')
  s.opened_at = now
  s.retry_at = now + period
  s.successes = 0
  redis.call('DEL', probes_key)
end

local function close()
  transition('closed')
  s.failures, s.successes, s.openings = 0, 0, 0
  s.opened_at, s.retry_at = false, false
  drop_spent_cooldown()
  redis.call('DEL', probes_key)
end

local function release_probe()
  redis.call('ZPOPMIN', probes_key)
end

if op == 'acquire' then
  if s.state == 'disabled' then
    result.recorded = 0
  elseif s.state == 'forced_open' then
    result.allowed = 0
  elseif cooling() then
    result.allowed, result.retry_after, result.cooling = 0, s.cooldown_until - now, 1
  elseif s.state ~= 'closed' then
    local admit = true
    if s.state == 'open' then
      if now < s.retry_at then
        result.allowed, result.retry_after, admit = 0, s.retry_at - now, false
      else
        transition('half_open')
        s.successes = 0
        redis.call('DEL', probes_key)
      end
    end
    if admit then
      redis.call('ZREMRANGEBYSCORE', probes_key, '-inf', now)
      if redis.call('ZCARD', probes_key) >= cfg.half_open_max_calls then
        local first = redis.call('ZRANGE', probes_key, 0, 0, 'WITHSCORES')
        result.allowed, result.retry_after = 0, tonumber(first[2]) - now
      else
        redis.call('ZADD', probes_key, now + cfg.probe_ttl, member)
        result.probe = 1
      end
    end
  end
elseif op == 'record' then
  if arg == '' then
    if probe and s.state == 'half_open' then release_probe() end
  elseif arg == '1' then
    if s.state == 'closed' then
      if s.failures > 0 then
        s.failures = 0
        s.version = s.version + 1
        drop_spent_cooldown()
      end
    elseif s.state == 'half_open' and probe then
      release_probe()
      s.successes = s.successes + 1
      if s.successes >= cfg.success_threshold then close() end
    end
  elseif s.state ~= 'disabled' and s.state ~= 'forced_open' then
    s.last_failure_at, s.last_error = now, err
    s.total_failures = s.total_failures + 1
    if s.state == 'closed' then
      if s.failures == 0 then s.version = s.version + 1 end
      s.failures = s.failures + 1
      if s.failures >= cfg.failure_threshold then open() end
    elseif s.state == 'half_open' and probe then
      open()
    end
  end
elseif op == 'probed' then
  -- An active probe's outcome (state.record_active_probe): only an OPEN breaker takes it;
  -- success closes at success_threshold, failure never touches the open period.
  if s.state == 'open' then
    s.active_probes = s.active_probes + 1
    s.last_probe_at = now
    if arg == '1' then
      s.last_probe = 'ok'
      s.successes = s.successes + 1
      if s.successes >= cfg.success_threshold then
        close()
      else
        s.version = s.version + 1
      end
    else
      s.last_probe = 'failed'
      s.successes = 0
      s.last_failure_at, s.last_error = now, err
      s.version = s.version + 1
    end
  end
elseif op == 'force' then
  if arg == 'closed' then
    close()
    s.last_failure_at, s.last_error, s.cooldown_until = false, false, false
    s.active_probes, s.last_probe_at, s.last_probe = 0, false, false
  else
    transition(arg)
    s.successes = 0
    redis.call('DEL', probes_key)
  end
elseif op == 'cool_down' then
  local seconds = tonumber(arg)
  if s.state ~= 'disabled' and s.state ~= 'forced_open' and seconds > 0 then
    local untl = now + math.min(seconds, cfg.max_open_seconds)
    if not s.cooldown_until or s.cooldown_until < untl then
      s.cooldown_until = untl
      s.version = s.version + 1
    end
  end
end

local flat = {}
for k, v in pairs(s) do
  if v ~= false then
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(v)
  else
    redis.call('HDEL', key, k)
  end
end
if seeded or s.version ~= before or op == 'record'
    or (op ~= 'seed' and redis.call('EXISTS', key) == 0) then
  redis.call('HSET', key, unpack(flat))
  redis.call('SADD', index_key, name)
end

local probes = redis.call('ZRANGE', probes_key, 0, -1, 'WITHSCORES')
local expiries = {}
for i = 2, #probes, 2 do expiries[#expiries + 1] = tonumber(probes[i]) end
result.state = s
result.probes = expiries
if s.version ~= before then result.transitioned, result.previous = 1, previous end
if seeded then result.seeded = 1 end
return cjson.encode(result)
