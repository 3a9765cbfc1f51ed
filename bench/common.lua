-- Shared by every bench/*.lua scenario (loaded with dofile): token loading, counting of
-- error answers (status >= 400) in the `response` hook, and one machine-readable RESULT
-- line printed by `done` for bench/run to parse.

bench = {}

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_id", #threads)
end

http_errors = 0
first_error = nil

function response(status, headers, body)
   if status >= 400 then
      http_errors = http_errors + 1
      if first_error == nil then
         first_error = tostring(status) .. " " .. string.sub(body or "", 1, 120)
      end
   end
end

-- Seeds this thread's random numbers differently from the other threads'.
function bench.seed_random()
   math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
   for _ = 1, 10 do math.random() end
end

-- The tokens file written by examples/bench_seed.rs: "username token partner" per line.
-- Returns the list of users and a map by username.
function bench.load_tokens(path)
   local f = assert(io.open(path, "r"), "cannot open tokens file " .. tostring(path))
   local list, by_name = {}, {}
   for line in f:lines() do
      local name, token, partner = line:match("^(%S+)%s+(%S+)%s+(%S+)")
      if name then
         local u = { name = name, token = token, partner = partner }
         table.insert(list, u)
         by_name[name] = u
      end
   end
   f:close()
   assert(#list > 0, "no tokens in " .. path)
   return list, by_name
end

function bench.auth_headers(token, json)
   local h = { ["Authorization"] = "Bearer " .. token }
   if json then h["Content-Type"] = "application/json" end
   return h
end

-- Minimal JSON string quoting for the ASCII names and texts the scenarios send.
function bench.q(s)
   return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
   local bad, example = 0, nil
   for _, t in ipairs(threads) do
      bad = bad + (t:get("http_errors") or 0)
      example = example or t:get("first_error")
   end
   local e = summary.errors
   local socket = e.connect + e.read + e.write + e.timeout
   local secs = summary.duration / 1e6
   io.write(string.format(
      "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d http_errors=%d socket_errors=%d\n",
      summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      summary.requests, bad, socket))
   if example then
      io.write("FIRST_ERROR " .. example:gsub("[\r\n]", " ") .. "\n")
   end
end
