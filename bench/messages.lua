-- GET /api/messages/ as the reader, of the 5,000-message conversation with the writer (the
-- newest page of 100). The seeder left nothing unread for the reader, so it is read-only.
-- Args: tokens_file reader writer
dofile((os.getenv("BENCH_LUA_DIR") or "bench") .. "/common.lua")

function init(args)
   local _, by_name = bench.load_tokens(args[1])
   local reader, writer = args[2], args[3]
   wrk.method = "GET"
   wrk.path = "/api/messages/?other_username=" .. writer
   wrk.headers = bench.auth_headers(by_name[reader].token)
end
