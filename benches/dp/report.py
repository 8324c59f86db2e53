"""Summarise benches/dp/run.sh results: median step time per configuration (median over rounds
of each process's median), DP/non-private ratios within each implementation, and Opacus's best
DP mode against ours."""

import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = defaultdict(list)
mem = defaultdict(list)
meta = {}
for r in rows:
    key = (r["model"], r["impl"], r["mode"])
    by[key].append(r["median_ms"])
    mem[key].append(r["peak_rss_mb"])
    meta[r["model"]] = (r["batch"], r.get("layers"), r["threads"])


def med(key):
    return statistics.median(by[key]) if by[key] else float("nan")


def rss(key):
    return max(mem[key]) if mem[key] else float("nan")


print("| model | impl | mode | step ms (median) | / its non-private | peak RSS MB | / its non-private |")
print("|---|---|---|---|---|---|---|")
for model in ("mlp", "transformer"):
    for impl, modes in (("portcullis", ("nonprivate", "ghost", "materialize", "auto")), ("opacus", ("nonprivate", "hooks", "ghost"))):
        base = (model, impl, "nonprivate")
        for mode in modes:
            k = (model, impl, mode)
            if not by[k]:
                continue
            print(
                f"| {model} | {impl} | {mode} | {med(k):.1f} | {med(k) / med(base):.2f}x | {rss(k):.0f} | {rss(k) / rss(base):.2f}x |"
            )
print()
for model in ("mlp", "transformer"):
    if model not in meta:
        continue
    batch, layers, threads = meta[model]
    ours = min(med((model, "portcullis", m)) for m in ("ghost", "materialize", "auto") if by[(model, "portcullis", m)])
    auto = med((model, "portcullis", "auto"))
    opacus = {m: med((model, "opacus", m)) for m in ("hooks", "ghost") if by[(model, "opacus", m)]}
    if not opacus:
        continue
    best_mode = min(opacus, key=opacus.get)
    desc = f"batch {batch}" + (f", {layers} layers, d=256, seq 128" if model == "transformer" else ", 2304-256-1")
    print(
        f"- {model} ({desc}, {threads} thread(s), {len(by[(model, 'portcullis', 'auto')])} rounds): "
        f"Opacus best DP mode `{best_mode}` {opacus[best_mode]:.1f} ms vs Portcullis auto {auto:.1f} ms: "
        f"**{opacus[best_mode] / auto:.2f}x faster** (hooks {opacus.get('hooks', float('nan')) / auto:.2f}x, "
        f"ghost {opacus.get('ghost', float('nan')) / auto:.2f}x); our best mode {ours:.1f} ms"
    )
