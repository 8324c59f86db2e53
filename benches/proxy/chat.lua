-- wrk script: POST /v1/chat/completions with a short prompt (ROUTE=chat in run.sh); prints one
-- JSON line with the results (the `done` of generate.lua). PROMPTS=distinct varies the prompt.
dofile("benches/proxy/generate.lua")
prompt_body('{"model":"tgi","max_tokens":8,"messages":[{"role":"user","content":"What is Deep Learning? Answer in one sentence.', '"}]}')
if os.getenv("BENCH_KEY") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end
