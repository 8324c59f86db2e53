"""The shipped policies on held-out injection data, through `gateway check` (what users run).

Every row of the `test` sources of models/build/injection_sources.py (never trained on, never
used for a threshold) goes through `gateway check --jsonl` once per policy, with the role of its
channel (`user` for typed text, `tool` for supplied text); a row counts as blocked when the
policy's decision is `block` (rules or classifier, as a client would see it).

  .venv/bin/python benches/injection/policy_eval.py --data .deps/data \
      --gateway target/release/gateway --policy policies/default.yaml --policy policies/strict.yaml

prints per-source tables (markdown) and writes --json. `--write-sample FILE` writes the small
fixed sample the regression test (gateway/tests/injection_ood.rs) runs instead.
"""

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models" / "build"))
import injection_sources as src  # noqa: E402

ROLE = {src.TYPED: "user", src.SUPPLIED: "tool"}
# The package does not state WritingBench's licence: it is evaluated here, never copied into
# the repository's fixture.
NOT_COPIED = {"inspect:writingbench"}


def test_rows(data):
    for s in src.all_sources(data):
        if s.role != "test":
            continue
        for i, (t, lab, ch) in enumerate(zip(s.texts, s.labels, s.channels)):
            yield {"id": f"{s.name}#{i}", "source": s.name, "label": lab, "role": ROLE[ch], "text": t}


def sample(rows, per_cell, max_chars, seed=0):
    """Up to `per_cell` rows of each (source, role, label), short enough to read in a diff."""
    cells = {}
    for r in rows:
        if r["source"] in NOT_COPIED or len(r["text"]) > max_chars:
            continue
        cells.setdefault((r["source"], r["role"], r["label"]), []).append(r)
    rng = random.Random(seed)
    out = []
    for k in sorted(cells):
        out += rng.sample(cells[k], min(per_cell, len(cells[k])))
    return out


def check(gateway, policy, models, rows):
    """{id: action} from one `gateway check --jsonl` run."""
    lines = "".join(json.dumps({"id": r["id"], "text": r["text"], "role": r["role"]}) + "\n" for r in rows)
    t0 = time.time()
    p = subprocess.run(
        [gateway, "check", "--policy", policy, "--models", models, "--jsonl"],
        input=lines,
        capture_output=True,
        text=True,
        env={"PORTCULLIS_PSEUDONYM_KEY": "eval", "PATH": "/usr/bin:/bin"},
    )
    if p.returncode != 0:
        sys.exit(f"gateway check failed ({policy}): {p.stderr[-2000:]}")
    out = {json.loads(line)["id"]: json.loads(line)["action"] for line in p.stdout.splitlines() if line.strip()}
    return out, time.time() - t0


def figures(rows, actions):
    def fig(rs):
        att = [r for r in rs if r["label"] == 1]
        ben = [r for r in rs if r["label"] == 0]
        blocked = lambda xs: sum(actions[r["id"]] == "block" for r in xs)  # noqa: E731
        return {
            "attacks": len(att),
            "benign": len(ben),
            "recall": blocked(att) / len(att) if att else None,
            "benign_blocked": blocked(ben) / len(ben) if ben else None,
        }

    per = {}
    for r in rows:
        per.setdefault((r["source"], r["role"]), []).append(r)
    return {
        "all": fig(rows),
        "typed": fig([r for r in rows if r["role"] == "user"]),
        "supplied": fig([r for r in rows if r["role"] == "tool"]),
        "sources": {f"{s} ({'typed' if role == 'user' else 'supplied'})": fig(rs) for (s, role), rs in sorted(per.items())},
    }


def markdown(policy, f):
    def pct(v):
        return "—" if v is None else f"{v:.3f}"

    lines = [f"#### `{policy}`", "", "| held-out rows | attacks | recall (blocked) | benign | benign blocked |", "|---|---:|---:|---:|---:|"]
    for name in ("all", "typed", "supplied"):
        m = f[name]
        lines.append(f"| **{name}** | {m['attacks']} | {pct(m['recall'])} | {m['benign']} | {pct(m['benign_blocked'])} |")
    for name, m in f["sources"].items():
        lines.append(f"| {name} | {m['attacks']} | {pct(m['recall'])} | {m['benign']} | {pct(m['benign_blocked'])} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / ".deps" / "data"))
    ap.add_argument("--gateway", default=str(ROOT / "target" / "debug" / "gateway"))
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--policy", action="append", default=[])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--write-sample", help="write the regression test's fixed sample (JSON lines) here")
    ap.add_argument("--per-cell", type=int, default=8)
    ap.add_argument("--max-chars", type=int, default=1200)
    args = ap.parse_args()
    rows = list(test_rows(args.data))
    if args.write_sample:
        with open(args.write_sample, "w", encoding="utf-8") as f:
            for r in sample(rows, args.per_cell, args.max_chars):
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"wrote {args.write_sample}", file=sys.stderr)
    out = {}
    for policy in args.policy:
        actions, secs = check(args.gateway, policy, args.models, rows)
        f = figures(rows, actions)
        f["seconds"] = round(secs, 1)
        out[policy] = f
        print(markdown(policy, f))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
