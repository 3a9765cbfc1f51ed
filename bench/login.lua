-- POST /api/login/ with the right password of a random seeded user (Argon2id at the
-- server's default cost: slow on purpose). Each success opens a new session.
-- Args: tokens_file password
dofile((os.getenv("BENCH_LUA_DIR") or "bench") .. "/common.lua")

local reqs = {}

function init(args)
   bench.seed_random()
   local users = bench.load_tokens(args[1])
   local headers = { ["Content-Type"] = "application/json" }
   for i, u in ipairs(users) do
      local body = "{\"username\":" .. bench.q(u.name) .. ",\"password\":" .. bench.q(args[2]) .. "}"
      reqs[i] = wrk.format("POST", "/api/login/", headers, body)
   end
end

function request()
   return reqs[math.random(#reqs)]
end
