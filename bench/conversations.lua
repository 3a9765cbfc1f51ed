-- GET /api/conversations/ as the user with 100 conversations.
-- Args: tokens_file hub
dofile((os.getenv("BENCH_LUA_DIR") or "bench") .. "/common.lua")

function init(args)
   local _, by_name = bench.load_tokens(args[1])
   wrk.method = "GET"
   wrk.path = "/api/conversations/"
   wrk.headers = bench.auth_headers(by_name[args[2]].token)
end
