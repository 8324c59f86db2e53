"""Summarise benches/protocols/run.sh's criterion outputs as a RESULTS.md section."""
import os
import platform
import re
import statistics
import subprocess
import sys

out, base, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
UNIT = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}


def medians(path):
    """name -> median time in µs, from criterion's text output."""
    res, name = {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"^(\S+/\S+)", line)
        if m and "/" in m.group(1) and not line.startswith("Benchmarking"):
            name = m.group(1)
        t = re.search(r"time:\s+\[(\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\]", line)
        if t and name:
            res[name] = float(t.group(3)) * UNIT[t.group(4)]
            name = None
    return res


def over(prefix):
    runs = [medians(os.path.join(out, f"{prefix}-{r}.txt")) for r in range(1, rounds + 1)]
    names = sorted(set().union(*runs))
    return {n: statistics.median([r[n] for r in runs if n in r]) for n in names}


base_t, new_t = over("base"), over("new")
deltas = medians(os.path.join(out, "deltas.txt"))
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = "unknown CPU"
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
print(f"\n## API families: rule chain per request and stream filtering per delta ({subprocess.run(['date', '+%F'], capture_output=True, text=True).stdout.strip()})\n")
print(f"- Command: `bash benches/protocols/run.sh` (BASE={base}, ROUNDS={rounds}; the two builds alternate, medians of the rounds)")
print(f"- Machine: {os.cpu_count()} cores, {cpu}, {platform.system()}")
print(f"- Build: commit `{commit}` against `{base}`, bench profile (release, fat LTO)")
print("- Policy: the shipped `default` without classifiers; 1 KB of prose with one e-mail per shape\n")
print("| shape | before (µs) | after (µs) | after / before |")
print("|---|---:|---:|---:|")
ratios = []
for n in new_t:
    if n in base_t:
        r = new_t[n] / base_t[n]
        ratios.append(r)
        print(f"| {n.split('/', 1)[1]} | {base_t[n]:.2f} | {new_t[n]:.2f} | {r:.2f} |")
if ratios:
    print(f"\n- Geometric mean after/before: {statistics.geometric_mean(ratios):.2f} (target ≤ 1.10)")
instr = os.path.join(out, "instructions.md")
if os.path.exists(instr) and os.path.getsize(instr) > 0:
    print("\nInstructions per request, counted by callgrind (`benches/protocols/instructions.sh`, run by the")
    print("same command; each shape N and 2N times, the difference over N, so set-up cancels out):\n")
    print(open(instr, encoding="utf-8").read().rstrip())
print("\n| stream (512 deltas of 4 bytes) | per delta (µs) |")
print("|---|---:|")
for n, t in deltas.items():
    print(f"| {n.split('/', 1)[1]} | {t / 512:.2f} |")
print("\n- Target: tool-call delta filtering < 5 µs per delta.")
