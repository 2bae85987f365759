-- wrk script for bench/run. One script, five modes, chosen by the first
-- argument after "--":
--   fixed                  every request is the URL given to wrk
--   bearer TOKEN           the same, with "Authorization: Bearer TOKEN"
--   paths FILE [TOKEN]     GET a random line of FILE (a path) per request,
--                          with "Authorization: Bearer TOKEN" when given
--   signup TAG PASSWORD    POST /api/users, every email new (TAG keeps runs apart)
--   login FILE PASSWORD    POST /api/sessions as a random email from FILE
-- Whatever the mode, done() prints one line "BENCH_JSON {...}" with the
-- figures bench.py reads (wrk's own summary rounds too much to parse).

local next_tid = 0

-- Runs in wrk's main Lua state, once per thread before it starts.
function setup(thread)
   -- Each thread gets its own number, so signup emails never collide.
   next_tid = next_tid + 1
   thread:set("tid", next_tid)
end

local mode, lines, tag, password, fixed_request, auth_headers
local counter = 0
local json_headers = { ["Content-Type"] = "application/json" }

local function read_lines(path)
   local list = {}
   for line in io.lines(path) do
      if line ~= "" then list[#list + 1] = line end
   end
   assert(#list > 0, "no lines in " .. path)
   return list
end

-- Runs in each thread's own Lua state.
function init(args)
   mode = args[1] or "fixed"
   math.randomseed(os.time() * 1000 + (tid or 0))
   if mode == "fixed" then
      fixed_request = wrk.format()
   elseif mode == "bearer" then
      fixed_request = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. args[2] })
   elseif mode == "paths" then
      lines = read_lines(args[2])
      if args[3] then auth_headers = { ["Authorization"] = "Bearer " .. args[3] } end
   elseif mode == "signup" then
      tag, password = args[2], args[3]
   elseif mode == "login" then
      lines, password = read_lines(args[2]), args[3]
   else
      error("unknown mode " .. mode)
   end
end

-- wrk decides from the script's top level whether requests vary, so
-- request() must exist here for every mode; "fixed" returns a prebuilt one.
function request()
   if mode == "fixed" or mode == "bearer" then
      return fixed_request
   elseif mode == "paths" then
      return wrk.format("GET", lines[math.random(#lines)], auth_headers)
   elseif mode == "signup" then
      counter = counter + 1
      local body = string.format(
         '{"name":"Bench Signup","email":"s%s-%d-%d@bench.example","password":"%s"}',
         tag, tid, counter, password)
      return wrk.format("POST", "/api/users", json_headers, body)
   else -- login
      local body = string.format('{"email":"%s","password":"%s"}',
         lines[math.random(#lines)], password)
      return wrk.format("POST", "/api/sessions", json_headers, body)
   end
end

-- errors.status counts answers with a status of 400 or more.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end
