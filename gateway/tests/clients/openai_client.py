"""End-to-end: the official `openai` Python SDK against the Portcullis gateway.

Run by gateway/tests/e2e_clients.rs with GATEWAY_URL pointing at a gateway in front of mock-tgi
in echo mode (the answer is the prompt, so every assertion knows exactly what to expect).
"""
import os
import sys

import openai
from openai import OpenAI

BASE = os.environ["GATEWAY_URL"]
client = OpenAI(base_url=f"{BASE}/v1", api_key="not-needed", max_retries=0, timeout=30)

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is a portcullis?"},
]
ECHO = "You are terse.\nWhat is a portcullis?"


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


# chat, not streamed
r = client.chat.completions.create(model="tgi", messages=MESSAGES, max_tokens=50)
check(r.choices[0].message.content == ECHO, f"chat content: {r.choices[0].message.content!r}")
check(r.choices[0].finish_reason == "stop", f"finish_reason: {r.choices[0].finish_reason}")
check(r.usage.completion_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, f"usage: {r.usage}")

# chat, streamed, with usage
parts, usage, finish = [], None, None
with client.chat.completions.create(
    model="tgi", messages=MESSAGES, max_tokens=50, stream=True, stream_options={"include_usage": True}
) as stream:
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
check("".join(parts) == ECHO, f"streamed chat: {''.join(parts)!r}")
check(len(parts) > 3, f"expected several chunks, got {len(parts)}")
check(finish == "stop", f"stream finish_reason: {finish}")
check(usage is not None and usage.completion_tokens > 0, f"stream usage: {usage}")

# max_tokens cuts the answer
r = client.chat.completions.create(model="tgi", messages=MESSAGES, max_tokens=2)
check(r.choices[0].finish_reason == "length", f"finish_reason with max_tokens=2: {r.choices[0].finish_reason}")

# legacy completions, both ways
r = client.completions.create(model="tgi", prompt="Once upon a time", max_tokens=20)
check(r.choices[0].text == "Once upon a time", f"completion: {r.choices[0].text!r}")
text = "".join(c.choices[0].text for c in client.completions.create(model="tgi", prompt="Once upon a time", max_tokens=20, stream=True) if c.choices)
check(text == "Once upon a time", f"streamed completion: {text!r}")

# a gateway refusal surfaces as an APIStatusError with our message, and says who refused
try:
    client.chat.completions.create(model="tgi", messages=[{"role": "user", "content": "x" * 2_100_000}])
    check(False, "an oversize request was accepted")
except openai.APIStatusError as e:
    check(e.status_code == 413, f"oversize status {e.status_code}")
    check(e.response.headers.get("x-portcullis-error-source") == "gateway", f"headers: {dict(e.response.headers)}")
    check("limit" in e.message, f"message: {e.message}")

# a backend error passes through as the backend's
try:
    client.chat.completions.create(model="tgi", messages=MESSAGES, extra_headers={"x-mock-fault": "status=424"})
    check(False, "a backend 424 was not raised")
except openai.APIStatusError as e:
    check(e.status_code == 424, f"backend status {e.status_code}")
    check(e.response.headers.get("x-portcullis-error-source") == "backend", f"headers: {dict(e.response.headers)}")

# a stream broken by the backend raises in the SDK with the gateway's message
got = []
try:
    for chunk in client.chat.completions.create(
        model="tgi", messages=MESSAGES, stream=True, extra_headers={"x-mock-fault": "drop_after=2"}
    ):
        got.extend(c.delta.content or "" for c in chunk.choices)
    check(False, "a broken stream ended without an error")
except openai.APIError as e:
    check("backend" in str(e.message), f"stream error message: {e.message}")
check(len(got) == 2, f"tokens before the break: {got}")

print("openai SDK: all checks passed")
