"""Driver of benches/conversation/run.sh: sends the turns of distinct conversations to each
gateway and measures the gateway's CPU time per request, turn by turn. Prints a Markdown report.

The CPU time is the sum over the gateway's threads of /proc/<pid>/task/<tid>/schedstat's first
field (nanoseconds on a CPU), read before and after each turn's requests: the proxy, the rules,
the tokenizer and the ONNX sessions all count, the client and the backend do not.
"""

import argparse
import http.client
import json
import os
import statistics
import time

USER = [
    "I am planning a trip for conversation {c}, turn {t}. Which museums near the old harbour "
    "open early on weekdays, and is there a combined ticket? My e-mail is guest{c}x{t}@example.com.",
    "For the report in conversation {c} (step {t}), summarise how the quarterly sales of the "
    "northern region changed, and list three questions I should ask the team lead.",
    "Turn {t} of chat {c}: rewrite this paragraph so it reads better: our new onboarding guide "
    "explains the tools, the people to ask, and the first week's tasks for every new hire.",
    "In session {c}, point {t}: what are good vegetarian dishes for a dinner of eight people, "
    "one of whom cannot eat nuts, and how early can I prepare each of them?",
]
ASSISTANT = (
    "Here is what I found for point {t} of conversation {c}. First, the places you asked about "
    "open at nine on weekdays and at ten at weekends; a combined ticket covers three of them and "
    "saves about a fifth of the price. Second, the quieter hours are early in the morning and "
    "after four in the afternoon, when most tour groups have left. Third, if you want a guided "
    "visit, book it two days ahead: the groups are small and fill quickly in the summer. Finally, "
    "the harbour walk between them takes twenty minutes and passes the market, which is worth a "
    "stop for lunch. Let me know if you want an itinerary for the whole day (reply {c}-{t})."
)


def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def conversation(c, turns):
    msgs = [{"role": "system", "content": f"You are a helpful assistant for customer {c}."}]
    for t in range(1, turns + 1):
        msgs.append({"role": "user", "content": USER[(c + t) % len(USER)].format(c=c, t=t)})
        yield list(msgs)
        msgs.append({"role": "assistant", "content": ASSISTANT.format(c=c, t=t)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", required=True)
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--conversations", type=int, default=12)
    ap.add_argument("--out", required=True)
    ap.add_argument("--machine", default="")
    ap.add_argument("--commit", default="")
    ap.add_argument("--command", default="")
    a = ap.parse_args()
    targets = []
    for line in open(a.targets):
        name, pid, port = line.split()
        targets.append((name, int(pid), http.client.HTTPConnection("127.0.0.1", int(port))))
    convs = [list(conversation(c, a.turns)) for c in range(a.conversations)]
    # per target, per turn: CPU ms per request, client-side ms per request, body bytes
    cpu = {n: [] for n, _, _ in targets}
    wall = {n: [] for n, _, _ in targets}
    size = []
    statuses = {}
    for t in range(a.turns):
        bodies = [
            json.dumps({"model": "tgi", "messages": convs[c][t], "max_tokens": 8}).encode()
            for c in range(a.conversations)
        ]
        size.append(statistics.mean(len(b) for b in bodies))
        for name, pid, conn in targets:
            before, t0 = cpu_ns(pid), time.perf_counter()
            for b in bodies:
                conn.request("POST", "/v1/chat/completions", body=b,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                statuses[(name, r.status)] = statuses.get((name, r.status), 0) + 1
            took = time.perf_counter() - t0
            cpu[name].append((cpu_ns(pid) - before) / 1e6 / len(bodies))
            wall[name].append(took * 1e3 / len(bodies))
    json.dump({"cpu_ms": cpu, "wall_ms": wall, "body_bytes": size,
               "statuses": {f"{k[0]} {k[1]}": v for k, v in statuses.items()}},
              open(os.path.join(a.out, "results.json"), "w"), indent=1)

    names = [n for n, _, _ in targets]
    print(f"## Conversations: gateway CPU per turn, scan-once cache on and off ({time.strftime('%Y-%m-%d')})\n")
    print(f"- Command: `{a.command}`; commit `{a.commit}`")
    print(f"- Machine: {a.machine}; release build; 1 proxy thread, 1 encoder session per gateway")
    print("- Policies: `cached`/`uncached`: the shipped `default` rules with the injection "
          "classifier *blocking* (every request waits for its scores; threshold 0.9999 so that "
          "benign chat reaches the backend), toxicity head recording; `rules-*`: the `default` "
          "rules alone. `*cached` have `guard.scan_cache_bytes_per_tenant: 16 MiB`, "
          "`*uncached` 0. "
          f"{a.conversations} distinct conversations per turn, each turn = the whole "
          "conversation so far + one new user message (system prompt, user ~200 B, "
          "assistant ~900 B)")
    print("- Statuses: " + ", ".join(f"{k[0]} {k[1]}: {v}" for k, v in sorted(statuses.items())) + "\n")
    print("| turn | body bytes | " + " | ".join(f"{n} CPU ms/request" for n in names)
          + " | " + " | ".join(f"{n} vs its turn 1" for n in names) + " | "
          + " | ".join(f"{n} client ms" for n in names) + " |")
    print("|---:|---:|" + "---:|" * (3 * len(names)))
    shown = sorted({1, 2, 5, 10, 20, 30, 40, a.turns} & set(range(1, a.turns + 1)))
    for t in shown:
        i = t - 1
        print(f"| {t} | {size[i]:,.0f} | "
              + " | ".join(f"{cpu[n][i]:.3f}" for n in names) + " | "
              + " | ".join(f"{cpu[n][i] / cpu[n][0]:.2f}x" for n in names) + " | "
              + " | ".join(f"{wall[n][i]:.2f}" for n in names) + " |")
    last = a.turns - 1
    print()
    for n in names:
        tail = statistics.mean(cpu[n][max(0, last - 4):])
        head = statistics.mean(cpu[n][:3])
        second = cpu[n][1] if a.turns > 1 else cpu[n][0]
        print(f"- `{n}`: turns {max(1, last - 3)}-{a.turns} average {tail:.3f} ms vs turns 1-3 "
              f"{head:.3f} ms: **{tail / head:.2f}x** (vs turn 2, the first with an answer to "
              f"scan: {tail / second:.2f}x); whole run {sum(cpu[n]) * a.conversations / 1e3:.2f} s CPU")


if __name__ == "__main__":
    main()
