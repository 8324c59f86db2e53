"""Summarise benches/proxy/run.sh results (JSON lines) as a Markdown section.

For each target and concurrency the round with the median requests/s is reported. Added
latency and the throughput ratio are computed against the baseline measured in the same run.
"""
import argparse
import datetime
import json
import statistics
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument("results")
ap.add_argument("--machine", required=True)
ap.add_argument("--command", required=True)
ap.add_argument("--commit", default="unknown")
ap.add_argument("--backend", default="mock-tgi", help="mock-tgi or asyncio")
ap.add_argument("--route", default="generate", help="generate or chat")
args = ap.parse_args()

runs = defaultdict(list)
with open(args.results) as f:
    for line in f:
        r = json.loads(line)
        runs[(r["target"], r["concurrency"])].append(r)


def median_round(rs):
    rs = sorted(rs, key=lambda r: r["rps"])
    return rs[len(rs) // 2]


def ms(us):
    return us / 1000.0


concurrencies = sorted({c for (_, c) in runs})
out = []
backend = "mock-tgi" if args.backend == "mock-tgi" else "a Python asyncio backend"
out.append(f"## Proxy overhead: {backend} direct vs Portcullis gateway vs nginx ({datetime.date.today().isoformat()})")
out.append("")
out.append(f"- Command: `{args.command}`")
out.append(f"- Machine: {args.machine}")
out.append(f"- Build: commit `{args.commit}`, release profile (fat LTO), gateway and nginx with the same number of workers")
out.append(("- Request: `POST /generate`, 93-byte JSON prompt, 8 new tokens, " if args.route == "generate" else
            "- Request: `POST /v1/chat/completions`, one short user message, max_tokens 8, ")
           + ("mock-tgi in echo mode without pacing." if args.backend == "mock-tgi" else
              "`benches/proxy/asyncio_backend.py` (Python asyncio, standard library, one process) echoing the prompt."))
out.append("- Median round by requests/s; `added` columns are relative to the direct baseline of the same run.")
out.append("")
out.append("| concurrency | target | req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | req/s vs nginx | errors |")
out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
summary = []
for c in concurrencies:
    base = median_round(runs[("direct", c)])
    ngx = median_round(runs[("nginx", c)]) if ("nginx", c) in runs else None
    for t in ["direct", "gateway", "base", "nginx", "litellm", "litellm-presidio"]:
        if (t, c) not in runs:
            continue
        r = median_round(runs[(t, c)])
        added50 = "" if t == "direct" else f"{ms(r['p50_us'] - base['p50_us']):+.3f}"
        added99 = "" if t == "direct" else f"{ms(r['p99_us'] - base['p99_us']):+.3f}"
        vs = f"{r['rps'] / ngx['rps']:.2f}" if ngx and t != "direct" else ""
        errs = r["socket_errors"] + r["non_2xx"]
        out.append(f"| {c} | {t} | {r['rps']:.0f} | {ms(r['p50_us']):.3f} | {ms(r['p90_us']):.3f} | {ms(r['p99_us']):.3f} | {added50} | {added99} | {vs} | {errs} |")
    if ("gateway", c) in runs and ngx:
        g = median_round(runs[("gateway", c)])
        g_rounds = ", ".join("%.0f" % x["rps"] for x in runs[("gateway", c)])
        n_rounds = ", ".join("%.0f" % x["rps"] for x in runs[("nginx", c)])
        summary.append(
            f"- c={c}: gateway adds {ms(g['p50_us'] - base['p50_us']):.3f} ms at p50 and "
            f"{ms(g['p99_us'] - base['p99_us']):.3f} ms at p99 over the direct path; "
            f"throughput {g['rps'] / ngx['rps']:.0%} of nginx's "
            f"(rounds: gateway {g_rounds} req/s; nginx {n_rounds} req/s)."
        )
    if ("gateway", c) in runs and ("base", c) in runs:
        g = median_round(runs[("gateway", c)])
        b = median_round(runs[("base", c)])
        ratios = [x["rps"] / y["rps"] for x, y in zip(
            sorted(runs[("gateway", c)], key=lambda r: r["round"]),
            sorted(runs[("base", c)], key=lambda r: r["round"]))]
        summary.append(
            f"- c={c}: this build against the base build: {g['rps'] / b['rps']:.3f}x the requests/s "
            f"(round by round: {', '.join('%.3f' % x for x in ratios)}), p50 {ms(g['p50_us'] - b['p50_us']):+.3f} ms, "
            f"p99 {ms(g['p99_us'] - b['p99_us']):+.3f} ms."
        )
    if ("litellm", c) in runs and ("gateway", c) in runs:
        l, g = median_round(runs[("litellm", c)]), median_round(runs[("gateway", c)])
        summary.append(
            f"- c={c}: LiteLLM proxy (no guardrails) adds {ms(l['p50_us'] - base['p50_us']):.3f} ms at p50; "
            f"the gateway serves {g['rps'] / l['rps']:.0f}x its requests/s."
        )
    if ("litellm-presidio", c) in runs and ("gateway", c) in runs:
        l, g = median_round(runs[("litellm-presidio", c)]), median_round(runs[("gateway", c)])
        summary.append(
            f"- c={c}: LiteLLM proxy with its Presidio guardrail adds {ms(l['p50_us'] - base['p50_us']):.3f} ms at p50; "
            f"the gateway serves {g['rps'] / l['rps']:.0f}x its requests/s."
        )
out.append("")
out.extend(summary)
print("\n".join(out))
