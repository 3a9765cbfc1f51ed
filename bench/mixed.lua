-- Many users at once, a random user (token) per request: 80% reads (40% GET messages/ of
-- the conversation with their partner, which marks what they received as read, 40% GET
-- conversations/) and 20% POST send-message/ to that partner.
-- Args: tokens_file
dofile((os.getenv("BENCH_LUA_DIR") or "bench") .. "/common.lua")

local reads_messages, reads_conversations, sends = {}, {}, {}

function init(args)
   bench.seed_random()
   local users = bench.load_tokens(args[1])
   for i, u in ipairs(users) do
      local h = bench.auth_headers(u.token)
      reads_messages[i] = wrk.format("GET", "/api/messages/?other_username=" .. u.partner, h)
      reads_conversations[i] = wrk.format("GET", "/api/conversations/", h)
      local body = "{\"receiver\":" .. bench.q(u.partner) ..
         ",\"content\":\"mixed message from " .. u.name .. "\"}"
      sends[i] = wrk.format("POST", "/api/send-message/", bench.auth_headers(u.token, true), body)
   end
end

function request()
   local i = math.random(#sends)
   local r = math.random()
   if r < 0.4 then
      return reads_messages[i]
   elseif r < 0.8 then
      return reads_conversations[i]
   end
   return sends[i]
end
