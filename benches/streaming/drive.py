"""Driver of benches/streaming/run.sh: time to first text and the delay each token's text
gets, of TGI `/generate_stream` answers, per target, as a client sees them (time.perf_counter
after the socket read that completed an event; chunked framing undone; events without text,
such as those a guard sends while it holds a word back, do not count as arrivals). Prints a
Markdown table.

Targets are interleaved request by request so that machine noise hits them alike. "Added"
figures are a target's minus the direct path's in the same run; the added delay per token
compares, for each character position of the answer, when it reached the client (median over
requests), so text a guard holds back until the next token shows as delay.
"""

import argparse
import json
import socket
import statistics
import time


def stream_once(port, body):
    """One request; returns (arrivals, text): for each event that carried text, (seconds since
    the request was sent, length of the text so far)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = (f"POST /generate_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    t0 = time.perf_counter()
    s.sendall(req)
    raw, sse = b"", b""
    chunked, header_done = False, False
    arrivals, text = [], ""
    while True:
        chunk = s.recv(65536)
        now = time.perf_counter() - t0
        if not chunk:
            break
        raw += chunk
        if not header_done:
            if b"\r\n\r\n" not in raw:
                continue
            head, raw = raw.split(b"\r\n\r\n", 1)
            header_done = True
            if int(head.split(b" ")[1]) != 200:
                raise RuntimeError(f"answer: {head[:200]!r}")
            chunked = b"transfer-encoding: chunked" in head.lower()
        # undo the chunked framing: only whole chunks move to the event buffer
        if chunked:
            while b"\r\n" in raw:
                size_line, rest = raw.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    break
                sse += rest[:size]
                raw = rest[size + 2:]
        else:
            sse, raw = sse + raw, b""
        while b"\n\n" in sse:
            ev, sse = sse.split(b"\n\n", 1)
            for line in ev.split(b"\n"):
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                d = json.loads(line[5:])
                tok = d.get("token") or {}
                if tok.get("special") or not tok.get("text"):
                    continue
                text += tok["text"]
                arrivals.append((now, len(text)))
    s.close()
    if not arrivals:
        raise RuntimeError("no text")
    return arrivals, text


def at_length(arrivals, n):
    """When the text first reached `n` characters."""
    for t, length in arrivals:
        if length >= n:
            return t
    return arrivals[-1][0]


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", required=True, help="name=port")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    targets = [(t.split("=")[0], int(t.split("=")[1])) for t in a.target]
    words = ("The harbour market opens early and the old streets fill with traders selling "
             "fish bread and spices while visitors walk along the quay towards the lighthouse "
             "and the museum of ships where the guides tell stories of storms and trade").split()
    prompt = " ".join(words[i % len(words)] for i in range(a.tokens + 8))
    body = json.dumps({"inputs": prompt, "parameters": {"max_new_tokens": a.tokens}}).encode()
    res = {n: [] for n, _ in targets}
    texts = {}
    for i in range(a.requests + 2):
        for n, port in targets:
            arrivals, text = stream_once(port, body)
            texts.setdefault(n, text)
            if i >= 2:  # warm-up
                res[n].append(arrivals)
    base = targets[0][0]
    # each character position of the direct answer's tokens: when it reached the client,
    # median over requests; a target's added delay at that position is its median minus the
    # direct path's (pacing makes the backend's schedule the same for every target)
    marks = [length for _, length in res[base][0]]

    def median_at(n, k):
        return statistics.median(at_length(r, k) for r in res[n])

    print(f"| {a.title} target | TTFT p50 ms | TTFT p99 ms | gap p50 ms | gap p99 ms | added TTFT p50 ms | added delay per token p50 / p99 ms | text equal to direct |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    direct = [median_at(base, k) for k in marks]
    for n, _ in targets:
        ttft = [r[0][0] * 1e3 for r in res[n]]
        gaps = [(b[0] - a_[0]) * 1e3 for r in res[n] for a_, b in zip(r, r[1:])]
        mine = [median_at(n, k) for k in marks]
        added = [(m - d) * 1e3 for m, d in zip(mine, direct)]
        at = pct(ttft, 50) - pct([r[0][0] * 1e3 for r in res[base]], 50)
        print(f"| {n} | {pct(ttft, 50):.3f} | {pct(ttft, 99):.3f} | {pct(gaps, 50):.3f} | {pct(gaps, 99):.3f} | "
              + ("" if n == base else f"{at:+.3f}") + " | "
              + ("" if n == base else f"{pct(added, 50):+.3f} / {pct(added, 99):+.3f}")
              + f" | {'yes' if texts[n] == texts[base] else 'no'} |")


if __name__ == "__main__":
    main()
