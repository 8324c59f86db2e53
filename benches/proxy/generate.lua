-- wrk script: POST /generate with a short prompt; prints one JSON line with the results.
-- With PROMPTS=distinct in the environment every request's prompt is different (a counter in
-- it), so no cache in the gateway (the scan-once cache) can answer from memory: each prompt
-- is scanned and classified as new.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

-- The body is `prefix .. suffix`; with PROMPTS=distinct, `prefix .. " (<run>-<n>)" .. suffix`.
-- chat.lua calls it again with its own body.
function prompt_body(prefix, suffix)
  wrk.body = prefix .. suffix
  request = nil
  if os.getenv("PROMPTS") == "distinct" then
    math.randomseed(os.time())
    local id = tostring(math.random(1, 1e9))
    local n = 0
    request = function()
      n = n + 1
      return wrk.format(nil, nil, nil, prefix .. ' (' .. id .. '-' .. n .. ')' .. suffix)
    end
  end
end

prompt_body('{"inputs":"What is Deep Learning? Answer in one sentence.', '","parameters":{"max_new_tokens":8}}')

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"rps":%.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, summary.requests / (summary.duration / 1e6)))
end
