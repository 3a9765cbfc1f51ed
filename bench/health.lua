-- GET /api/health/ (no authentication). Also used against the ceiling server, which answers
-- any path with its fixed body, so both carry the same Lua overhead in wrk.
dofile((os.getenv("BENCH_LUA_DIR") or "bench") .. "/common.lua")

wrk.method = "GET"
wrk.path = "/api/health/"
