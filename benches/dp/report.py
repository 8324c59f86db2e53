"""Summarise benches/dp/run.sh results: median step time per configuration (median over rounds
of each process's median), DP/non-private ratios within each implementation and allocator
setting, and Opacus's best DP mode against ours."""

import json
import statistics
import sys
from collections import defaultdict

# What each implementation ships with: the trainer tunes glibc's allocator, PyTorch does not.
SHIPPED = {"portcullis": "tuned", "opacus": "default"}
MODES = {"portcullis": ("nonprivate", "ghost", "materialize", "auto"), "opacus": ("nonprivate", "hooks", "ghost")}

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = defaultdict(list)
mem = defaultdict(list)
meta = {}
for r in rows:
    malloc = r.get("malloc", SHIPPED[r["impl"]])
    key = (r["model"], r["impl"], malloc, r["mode"])
    by[key].append(r["median_ms"])
    mem[key].append(r["peak_rss_mb"])
    meta[r["model"]] = (r["batch"], r.get("layers"), r["threads"])


def med(key):
    return statistics.median(by[key]) if by[key] else float("nan")


def rss(key):
    return max(mem[key]) if mem[key] else float("nan")


print("| model | impl | malloc | mode | step ms (median) | / its non-private | peak RSS MB | / its non-private |")
print("|---|---|---|---|---|---|---|---|")
for model in ("mlp", "transformer"):
    for impl, modes in MODES.items():
        for malloc in (SHIPPED[impl], "default" if SHIPPED[impl] == "tuned" else "tuned"):
            base = (model, impl, malloc, "nonprivate")
            for mode in modes:
                k = (model, impl, malloc, mode)
                if not by[k]:
                    continue
                print(
                    f"| {model} | {impl} | {malloc} | {mode} | {med(k):.1f} | {med(k) / med(base):.2f}x | {rss(k):.0f} | {rss(k) / rss(base):.2f}x |"
                )
print()
for model in ("mlp", "transformer"):
    if model not in meta:
        continue
    batch, layers, threads = meta[model]
    ours = {m: med((model, "portcullis", "tuned", m)) for m in ("ghost", "materialize", "auto") if by[(model, "portcullis", "tuned", m)]}
    if "auto" not in ours:
        continue
    auto = ours["auto"]
    desc = f"batch {batch}" + (f", {layers} layers, d=256, seq 128" if model == "transformer" else ", 2304-256-1")
    for malloc in ("default", "tuned"):
        opacus = {m: med((model, "opacus", malloc, m)) for m in ("hooks", "ghost") if by[(model, "opacus", malloc, m)]}
        if not opacus:
            continue
        best = min(opacus, key=opacus.get)
        others = ", ".join(f"{m} {opacus[m] / auto:.2f}x" for m in opacus)
        print(
            f"- {model} ({desc}, {threads} thread(s), {len(by[(model, 'portcullis', 'tuned', 'auto')])} rounds), "
            f"Opacus with {malloc} malloc: best DP mode `{best}` {opacus[best]:.1f} ms vs Portcullis auto {auto:.1f} ms: "
            f"**{opacus[best] / auto:.2f}x faster** ({others}); our best mode {min(ours.values()):.1f} ms"
        )
