"""End-to-end: huggingface_hub's InferenceClient (TGI's native API) against the gateway.

Run by gateway/tests/e2e_clients.rs with GATEWAY_URL pointing at a gateway in front of mock-tgi
in echo mode.
"""
import os
import sys

from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, TextGenerationError, ValidationError

BASE = os.environ["GATEWAY_URL"]
client = InferenceClient(base_url=BASE, api_key=os.environ["API_KEY"], timeout=30)
PROMPT = "The huggingface_hub library is"


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


out = client.text_generation(PROMPT, max_new_tokens=20)
check(out == PROMPT, f"text_generation: {out!r}")

out = client.text_generation(PROMPT, max_new_tokens=20, details=True)
check(out.generated_text == PROMPT, f"details text: {out.generated_text!r}")
check(out.details.finish_reason == "eos_token", f"finish_reason: {out.details.finish_reason}")
# under output rules the gateway empties the token lists: they would carry unfiltered text
check(out.details.generated_tokens > 0 and out.details.tokens == [], f"details: {out.details}")

out = client.text_generation(PROMPT, max_new_tokens=2, details=True)
check(out.details.finish_reason == "length" and out.details.generated_tokens == 2, f"length cut: {out.details}")

# Like real TGI, a generation that ends on its own streams the end-of-sequence token last
# (`special: true`, text `</s>`); the client passes token texts through as they come.
tokens = list(client.text_generation(PROMPT, max_new_tokens=20, stream=True))
check(tokens[-1] == "</s>" and "".join(tokens[:-1]) == PROMPT, f"stream: {tokens!r}")
check(len(tokens) > 3, f"expected several tokens, got {tokens}")

events = list(client.text_generation(PROMPT, max_new_tokens=20, stream=True, details=True))
check("".join(e.token.text for e in events if not e.token.special) == PROMPT, "streamed token texts")
check(events[-1].token.special and events[-1].generated_text == PROMPT, f"last event: {events[-1]}")
check(events[-1].details.finish_reason == "eos_token", f"last event details: {events[-1].details}")
check([e.index for e in events] == list(range(1, len(events) + 1)), "event indexes")

# errors: the backend's validation error passes through untouched, so the client maps TGI's
# `error_type: validation` to its own ValidationError exactly as it would without the gateway
try:
    client.text_generation("", max_new_tokens=5)
    check(False, "empty input accepted")
except ValidationError as e:
    check("cannot be empty" in str(e), f"message: {e}")

# the gateway's own refusal: the client raises its TGI error (UnknownError for an error_type it
# does not know) carrying our message; the HTTP response says the gateway refused
try:
    client.text_generation("x" * 2_100_000, max_new_tokens=5)
    check(False, "oversize request accepted")
except TextGenerationError as e:
    check("limit" in str(e), f"message: {e}")
    http = e.__cause__
    check(isinstance(http, HfHubHTTPError), f"cause: {http!r}")
    check(http.response.status_code == 413, f"status {http.response.status_code}")
    check(http.response.headers.get("x-portcullis-error-source") == "gateway", "source header")
    check(http.response.json()["error_type"] == "request_too_large", f"body {http.response.text}")

# TGI's Messages API through the same client: secrets redacted before the model, personal data
# placeholdered and put back
r = client.chat_completion(messages=[{"role": "user", "content": "Mail jane.doe@example.com, key AKIAQ7LMZ2XABCDEFGHI"}], max_tokens=100)
check(r.choices[0].message.content == "Mail jane.doe@example.com, key [AWS_KEY]", f"chat: {r.choices[0].message.content!r}")
# (streamed chat is covered with the openai SDK: this client's stream parser expects
# `data: [DONE]` with a space, which TGI's framing, mirrored by mock-tgi, does not have)

print("huggingface_hub: all checks passed")
