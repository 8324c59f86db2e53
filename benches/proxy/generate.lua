-- wrk script: POST /generate with a short prompt; prints one JSON line with the results.
wrk.method = "POST"
wrk.body = '{"inputs":"What is Deep Learning? Answer in one sentence.","parameters":{"max_new_tokens":8}}'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"rps":%.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, summary.requests / (summary.duration / 1e6)))
end
