-- GET /api/users/ (the default page: up to 1,000 users) as one user.
-- Args: tokens_file username
dofile((os.getenv("BENCH_LUA_DIR") or "bench") .. "/common.lua")

function init(args)
   local _, by_name = bench.load_tokens(args[1])
   wrk.method = "GET"
   wrk.path = "/api/users/"
   wrk.headers = bench.auth_headers(by_name[args[2]].token)
end
