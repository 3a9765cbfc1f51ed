-- POST /api/send-message/: every seeded user sends to the partner they share a
-- conversation with, senders picked at random per request. Each 201 is a committed insert.
-- Args: tokens_file
dofile((os.getenv("BENCH_LUA_DIR") or "bench") .. "/common.lua")

local reqs = {}

function init(args)
   bench.seed_random()
   local users = bench.load_tokens(args[1])
   for i, u in ipairs(users) do
      local body = "{\"receiver\":" .. bench.q(u.partner) ..
         ",\"content\":\"bench message " .. i .. " from " .. u.name .. "\"}"
      reqs[i] = wrk.format("POST", "/api/send-message/", bench.auth_headers(u.token, true), body)
   end
end

function request()
   return reqs[math.random(#reqs)]
end
