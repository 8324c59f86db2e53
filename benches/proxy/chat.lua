-- wrk script: POST /v1/chat/completions with a short prompt (ROUTE=chat in run.sh); prints one
-- JSON line with the results (the `done` of generate.lua). PROMPTS=distinct varies the prompt.
dofile("benches/proxy/generate.lua")
local base = '{"model":"tgi","max_tokens":8,"messages":[{"role":"user","content":"What is Deep Learning? Answer in one sentence.'
wrk.body = base .. '"}]}'
if os.getenv("BENCH_KEY") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end
if os.getenv("PROMPTS") == "distinct" then
  math.randomseed(os.time())
  local id = tostring(math.random(1, 1e9))
  local n = 0
  request = function()
    n = n + 1
    return wrk.format(nil, nil, nil, base .. ' (' .. id .. '-' .. n .. ')"}]}')
  end
end
