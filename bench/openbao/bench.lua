-- The one wrk script both servers are driven with, so the load generator does the
-- same work per request on each side: only the request line, headers and body shape
-- differ. Set by bench/openbao/run through the environment:
--
--   BENCH_TARGET  keyledger | openbao
--   BENCH_OP      create (each request creates a new secret) | read (payload reads)
--                 | get (keyledger: AWS GetSecretValue; OpenBao: as read)
--                 | put (a new version of an existing secret: keyledger: AWS
--                 PutSecretValue; OpenBao: a KV v2 write to an existing path)
--                 | meta (one secret's metadata: keyledger: Barbican's GET
--                 /v1/secrets/<id>; OpenBao: KV v2's GET /v1/secret/metadata/<path>)
--   BENCH_TOKEN   keyledger bearer token or OpenBao token
--   BENCH_PREFIX  makes names unique across wrk runs (names add thread and counter)
--   BENCH_IDS     read, get, put, meta: file with one keyledger secret id or OpenBao path
--                 per line
--   BENCH_THREADS wrk's -t, so each thread takes its own share of the signed puts
--   BENCH_SIGNED  keyledger get and put: file of requests the runner signed with
--                 SigV4, one per line: X-Amz-Target, X-Amz-Date, Authorization and
--                 body, tab-separated. get cycles over them (a read may be replayed);
--                 put uses each once (each has its own ClientRequestToken), and
--                 running out is an error, since a replayed put would be a no-op
--
-- Every response is checked: a non-2xx status, or a read whose body is shorter than
-- the payload, is an error. done() prints one machine-readable line, BENCH_RESULT
-- {json}, with the counts and latency percentiles; the runner fails on any error,
-- since a benchmark that counts errors as throughput measures nothing.

local target = os.getenv("BENCH_TARGET")
local op = os.getenv("BENCH_OP")
local token = os.getenv("BENCH_TOKEN")
local prefix = os.getenv("BENCH_PREFIX") or "x"
local ids_file = os.getenv("BENCH_IDS")
local signed_file = os.getenv("BENCH_SIGNED")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")

local PAYLOAD_BYTES = 1024
local payload = string.rep("x", PAYLOAD_BYTES) -- 1 KiB, needs no JSON escaping

-- Main state: hand each thread a number (for unique names) and keep the threads so
-- done() can collect their counters.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- Thread state. Globals on purpose: done() reads them with thread:get().
n = 0         -- requests this thread has built
codes = {}    -- non-2xx status -> count
short = 0     -- 2xx reads whose body was shorter than the payload
spent = 0     -- puts asked for after the signed ones ran out (each an error)

local headers
local reads = {} -- prebuilt read requests, so a read costs wrk no string building

function init(args)
  if target == "keyledger" then
    headers = { ["X-Auth-Token"] = token, ["Content-Type"] = "application/json" }
  elseif target == "openbao" then
    headers = { ["X-Vault-Token"] = token, ["Content-Type"] = "application/json" }
  else
    error("BENCH_TARGET must be keyledger or openbao, not " .. tostring(target))
  end
  if target == "keyledger" and (op == "get" or op == "put") then
    local f = assert(io.open(signed_file, "r"), "cannot open BENCH_SIGNED " .. tostring(signed_file))
    local line_no = 0
    for line in f:lines() do
      line_no = line_no + 1
      -- Puts: each thread takes its own share of the lines, so no two send one.
      if op == "get" or (line_no - tid) % nthreads == 0 then
        local amz_target, date, auth, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
        if amz_target then
          table.insert(reads, wrk.format("POST", "/", {
            ["Content-Type"] = "application/x-amz-json-1.1",
            ["X-Amz-Target"] = amz_target,
            ["X-Amz-Date"] = date,
            ["Authorization"] = auth,
          }, body))
        end
      end
    end
    f:close()
    assert(#reads > 0, "BENCH_SIGNED is empty")
  elseif op == "read" or op == "get" or op == "put" or op == "meta" then
    local f = assert(io.open(ids_file, "r"), "cannot open BENCH_IDS " .. tostring(ids_file))
    for id in f:lines() do
      if id ~= "" then
        if op == "meta" and target == "keyledger" then
          table.insert(reads, wrk.format("GET", "/v1/secrets/" .. id,
            { ["X-Auth-Token"] = token, ["Accept"] = "application/json" }))
        elseif op == "meta" then
          table.insert(reads, wrk.format("GET", "/v1/secret/metadata/" .. id,
            { ["X-Vault-Token"] = token }))
        elseif target == "keyledger" then
          table.insert(reads, wrk.format("GET", "/v1/secrets/" .. id .. "/payload",
            { ["X-Auth-Token"] = token, ["Accept"] = "text/plain" }))
        elseif op == "put" then
          table.insert(reads, wrk.format("POST", "/v1/secret/data/" .. id, headers,
            '{"data":{"v":"' .. payload .. '"}}'))
        else
          table.insert(reads, wrk.format("GET", "/v1/secret/data/" .. id,
            { ["X-Vault-Token"] = token }))
        end
      end
    end
    f:close()
    assert(#reads > 0, "BENCH_IDS is empty")
  elseif op ~= "create" then
    error("BENCH_OP must be create, read, get, put or meta, not " .. tostring(op))
  end
end

function request()
  n = n + 1
  if op == "put" and target == "keyledger" then
    if n > #reads then
      spent = spent + 1
      return reads[(n - 1) % #reads + 1]
    end
    return reads[n]
  end
  if op ~= "create" then
    -- Threads start at different offsets and walk the whole set.
    return reads[(n + tid * 7919) % #reads + 1]
  end
  local name = prefix .. "-" .. tid .. "-" .. n
  if target == "keyledger" then
    return wrk.format("POST", "/v1/secrets", headers,
      '{"name":"' .. name .. '","payload":"' .. payload .. '","payload_content_type":"text/plain"}')
  end
  return wrk.format("POST", "/v1/secret/data/" .. name, headers,
    '{"data":{"v":"' .. payload .. '"}}')
end

function response(status, hdrs, body)
  if status < 200 or status > 299 then
    codes[status] = (codes[status] or 0) + 1
  elseif (op == "read" or op == "get") and #body < PAYLOAD_BYTES then
    short = short + 1
  end
end

function done(summary, latency, requests)
  local by_code, shorts = {}, 0
  for _, t in ipairs(threads) do
    for code, count in pairs(t:get("codes")) do
      by_code[code] = (by_code[code] or 0) + count
    end
    -- A put sent again after the signed ones ran out counts as a short answer.
    shorts = shorts + t:get("short") + t:get("spent")
  end
  local parts = {}
  for code, count in pairs(by_code) do
    table.insert(parts, string.format('"%d":%d', code, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"status":%d,"short":%d,"codes":{%s},"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    shorts, table.concat(parts, ","), latency:percentile(50), latency:percentile(99),
    latency.max))
end
