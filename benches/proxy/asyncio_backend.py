"""A minimal LLM backend on Python's asyncio (standard library only), for benchmarks: vLLM's and
most Python inference servers' request handling runs on an asyncio loop, which costs far more
per request than mock-tgi (Rust). benches/proxy/run.sh uses it with BACKEND=asyncio so that the
proxies' overhead is also measured against a backend of that kind.

It answers, with HTTP/1.1 keep-alive and Content-Length framing:
- `POST /generate` (TGI): `{"generated_text": ...}` echoing the first words of `inputs`
- `POST /v1/chat/completions` (OpenAI): a `chat.completion` echoing the last message
- `GET /health`, `GET /info`: what the gateway's health check and readiness read

    python3 benches/proxy/asyncio_backend.py --listen 127.0.0.1:8000
"""

import argparse
import asyncio
import json
import time

INFO = json.dumps({
    "model_id": "portcullis/asyncio-backend", "model_dtype": "float16", "model_device_type": "cpu",
    "max_concurrent_requests": 4096, "max_input_tokens": 1000000, "max_total_tokens": 1048576,
    "max_best_of": 1, "max_stop_sequences": 4, "validation_workers": 1, "router": "asyncio",
    "version": "0.0.0",
}).encode()


def answer(method, path, body):
    if method == "GET" and path in ("/health", "/"):
        return 200, b""
    if method == "GET" and path == "/info":
        return 200, INFO
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        return 422, json.dumps({"error": "invalid JSON", "error_type": "validation"}).encode()
    if method == "POST" and path == "/generate":
        n = int((req.get("parameters") or {}).get("max_new_tokens") or 8)
        words = str(req.get("inputs", "")).split()[:n]
        return 200, json.dumps({"generated_text": " ".join(words)}).encode()
    if method == "POST" and path == "/v1/chat/completions":
        msgs = req.get("messages") or [{}]
        last = msgs[-1].get("content", "")
        text = last if isinstance(last, str) else json.dumps(last)
        n = int(req.get("max_tokens") or 8)
        words = text.split()[:n]
        return 200, json.dumps({
            "id": "chatcmpl-asyncio", "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model", "tgi"),
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": " ".join(words)}}],
            "usage": {"prompt_tokens": len(text.split()), "completion_tokens": len(words),
                      "total_tokens": len(text.split()) + len(words)},
        }).encode()
    return 404, json.dumps({"error": "not found", "error_type": "not_found"}).encode()


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            body = await reader.readexactly(n) if n else b""
            status, out = answer(method, path.split("?", 1)[0], body)
            reason = {200: "OK", 404: "Not Found", 422: "Unprocessable Entity"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(out)}\r\n\r\n".encode() + out)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:8000")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port), backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
