"""Summarise benches/lora/run.sh: median step time per configuration (median over rounds of
each process's median), tokens/s, peak RSS while training, and the ratios the trainer's
targets are stated in (DP-LoRA / non-private LoRA <= 1.15; >= 1.5x faster than Opacus's best
DP mode; peak memory <= Opacus's)."""

import json
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = defaultdict(list)
tok = defaultdict(list)
rss = defaultdict(list)
for r in rows:
    k = (r["impl"], r["mode"])
    by[k].append(r["median_ms"])
    tok[k].append(r["tokens_per_second"])
    rss[k].append(r["peak_rss_mb"])
r0 = rows[0]
med = lambda k: statistics.median(by[k])
cpu = "unknown CPU"
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
date = subprocess.run(["date", "+%F"], capture_output=True, text=True).stdout.strip()
print(f"\n## DP LoRA on SmolLM2-135M-Instruct: Portcullis vs Opacus 1.6 + PEFT ({date})\n")
print(f"- Command: `bash benches/lora/run.sh` (rounds: {len(by[('portcullis', 'dp')])})")
print(f"- Machine: {os.cpu_count()} cores, {cpu}, {platform.system()}; {r0['threads']} threads each side")
print(f"- Build: commit `{commit}`; f32 base, LoRA rank {r0['rank']} on q/k/v/o/gate/up/down of all 30 layers, "
      f"batch {r0['batch']} x {r0['seq']} tokens, every position trained, C = 1, sigma = 1\n")
print("| implementation | mode | step ms (median) | tokens/s | peak RSS while training (MB) |")
print("|---|---|---:|---:|---:|")
for k in sorted(by):
    print(f"| {k[0]} | {k[1]} | {med(k):.0f} | {statistics.median(tok[k]):.0f} | {max(rss[k]):.0f} |")
ours = ("portcullis", "dp")
print()
if ("portcullis", "nonprivate") in by:
    print(f"- DP-LoRA / non-private LoRA (ours): {med(ours) / med(('portcullis', 'nonprivate')):.2f}x (target <= 1.15)")
opacus = {m: med(("opacus", m)) for m in ("hooks", "ghost") if ("opacus", m) in by}
if opacus:
    best = min(opacus, key=opacus.get)
    print(f"- Opacus's best DP mode ({best}) / ours: {opacus[best] / med(ours):.2f}x faster (target >= 1.5x)")
    print(f"- Peak RSS while training: ours {max(rss[ours]):.0f} MB, Opacus {best} {max(rss[('opacus', best)]):.0f} MB "
          f"(target: ours <= Opacus's)")
print(f"- DP-LoRA throughput here: {statistics.median(tok[ours]):.0f} tokens/s")
