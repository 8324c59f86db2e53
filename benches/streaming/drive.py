"""Driver of benches/streaming/run.sh: time to first token and inter-token gaps of TGI
`/generate_stream` answers, per target, as a client sees them (each SSE event's arrival,
time.perf_counter after the socket read that completed it). Prints a Markdown report.

Targets are interleaved request by request so that machine noise hits them alike. "Added"
figures are a gateway's minus the direct path's, for the same statistic in the same run.
"""

import argparse
import json
import socket
import statistics
import time


def stream_once(port, body):
    """One request; returns (ttft_s, [gap_s...], tokens, texts)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = (f"POST /generate_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    t0 = time.perf_counter()
    s.sendall(req)
    buf = b""
    times, texts = [], []
    header_done = False
    while True:
        chunk = s.recv(65536)
        now = time.perf_counter()
        if not chunk:
            break
        buf += chunk
        if not header_done:
            if b"\r\n\r\n" not in buf:
                continue
            head, buf = buf.split(b"\r\n\r\n", 1)
            header_done = True
            status = int(head.split(b" ")[1])
            if status != 200:
                raise RuntimeError(f"status {status}: {head[:200]!r}")
        # chunked framing lines are skipped; events are the `data:` lines
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            for line in ev.split(b"\n"):
                line = line.strip()
                if line.startswith(b"data:"):
                    try:
                        d = json.loads(line[5:])
                    except ValueError:
                        continue
                    tok = d.get("token") or {}
                    if tok.get("special"):
                        continue
                    times.append(now)
                    texts.append(tok.get("text", ""))
    s.close()
    if not times:
        raise RuntimeError("no token events")
    gaps = [b - a for a, b in zip(times, times[1:])]
    return times[0] - t0, gaps, len(times), "".join(texts)


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
    res = {n: {"ttft": [], "gaps": [], "tokens": []} for n, _ in targets}
    texts = {}
    for i in range(a.requests + 2):
        for n, port in targets:
            ttft, gaps, ntok, text = stream_once(port, body)
            texts.setdefault(n, text)
            if i < 2:
                continue  # warm-up
            res[n]["ttft"].append(ttft)
            res[n]["gaps"].extend(gaps)
            res[n]["tokens"].append(ntok)
    base = targets[0][0]
    print(f"| {a.title} target | token events | TTFT p50 ms | TTFT p99 ms | gap p50 ms | gap p99 ms | added TTFT p50 ms | added gap p99 ms | text equal to direct |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    b = res[base]
    for n, _ in targets:
        r = res[n]
        t50, t99 = pct(r["ttft"], 50) * 1e3, pct(r["ttft"], 99) * 1e3
        g50, g99 = pct(r["gaps"], 50) * 1e3, pct(r["gaps"], 99) * 1e3
        at = t50 - pct(b["ttft"], 50) * 1e3
        ag = g99 - pct(b["gaps"], 99) * 1e3
        print(f"| {n} | {statistics.mean(r['tokens']):.0f} | {t50:.3f} | {t99:.3f} | {g50:.3f} | {g99:.3f} | "
              + ("" if n == base else f"{at:+.3f}") + " | " + ("" if n == base else f"{ag:+.3f}")
              + f" | {'yes' if texts[n] == texts[base] else 'no'} |")


if __name__ == "__main__":
    main()
