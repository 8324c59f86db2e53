#!/usr/bin/env python3
"""Score PII / secret detectors against the generated corpus.

Prediction files are JSONL, one line per text::

    {"id": int, "findings": [{"type": str, "start": int, "end": int, ...}]}

with UTF-8 byte offsets (extra keys such as ``score`` are ignored).  Texts
missing from a prediction file count as "no findings".

Matching rule, per text and per type T: a prediction of type T matches a gold
entity of type T when their byte spans overlap (share at least one byte).
Each gold entity and each prediction is matched at most once; candidate pairs
are taken greedily by largest overlap (ties: earlier gold, then earlier
prediction).  Matched pairs are TP, unmatched predictions FP, unmatched gold
entities FN.  Predicted types that never occur in the corpus gold are not
scored (reported separately).

A predictor's *supported types* (types it is able to emit) come from, in
order: ``--supports NAME=t1,t2``; ``supported_types`` in the sidecar
``<FILE>.timing.json`` if present; otherwise the scored types it emitted at
least once.  Unsupported types print as "—" and are excluded from its
aggregate row and from comparisons.

The ``secrets`` row pools TP/FP/FN over the secret types a predictor supports.
With two or more predictors, a final line says, for every type both the first
and second predictor support, whether the first beats the second on F2.

Usage::

    python benches/pii/score.py --corpus corpus.jsonl \\
        --pred portcullis=ours.jsonl --pred presidio=presidio.jsonl --markdown \\
        [--json-out summary.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict

SECRET_TYPES = [
    "aws_key", "github_token", "gitlab_token", "slack_token", "stripe_key",
    "openai_key", "jwt", "private_key", "url_password", "generic_secret",
]
# Preferred display order; unknown gold types are appended alphabetically.
TYPE_ORDER = [
    "email", "phone", "card", "iban", "ssn", "ip_address", "date_of_birth",
    "postal_code",
] + SECRET_TYPES
AGG = "secrets"
BETA = 2.0
DASH = "—"


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_corpus(path: str) -> dict[int, list[tuple[str, int, int]]]:
    """id -> list of (type, start, end) gold spans."""
    gold = {}
    for rec in load_jsonl(path):
        gold[rec["id"]] = [(e["type"], int(e["start"]), int(e["end"])) for e in rec["entities"]]
    return gold


def load_predictions(path: str) -> dict[int, list[tuple[str, int, int]]]:
    """id -> list of (type, start, end) predicted spans."""
    preds: dict[int, list] = defaultdict(list)
    for rec in load_jsonl(path):
        for f in rec.get("findings", []):
            preds[rec["id"]].append((f["type"], int(f["start"]), int(f["end"])))
    return preds


def load_sidecar(path: str) -> dict | None:
    side = path + ".timing.json"
    if os.path.exists(side):
        with open(side, encoding="utf-8") as fh:
            return json.load(fh)
    return None


# --------------------------------------------------------------------------
# Matching and metrics
# --------------------------------------------------------------------------


def match_spans(gold: list[tuple[int, int]], pred: list[tuple[int, int]]) -> int:
    """Greedy one-to-one matching by largest byte overlap; returns #matches."""
    pairs = []
    for gi, (gs, ge) in enumerate(gold):
        for pi, (ps, pe) in enumerate(pred):
            ov = min(ge, pe) - max(gs, ps)
            if ov > 0:
                pairs.append((-ov, gi, pi))
    pairs.sort()
    used_g, used_p = set(), set()
    for _, gi, pi in pairs:
        if gi not in used_g and pi not in used_p:
            used_g.add(gi)
            used_p.add(pi)
    return len(used_g)


def prf(tp: int, fp: int, fn: int) -> dict:
    """Counts plus precision, recall and F-beta (beta=2)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    b2 = BETA * BETA
    f = (1 + b2) * p * r / (b2 * p + r) if (b2 * p + r) else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f2": f}


def score_predictor(gold: dict, preds: dict, gold_types: list[str]) -> tuple[dict, Counter, Counter]:
    """Per-type TP/FP/FN over the corpus.

    Returns (counts per gold type, predicted-but-unscored type counts,
    predicted counts per scored type).
    """
    counts = {t: Counter() for t in gold_types}
    not_scored: Counter = Counter()
    emitted: Counter = Counter()
    unknown_ids = set(preds) - set(gold)
    if unknown_ids:
        print(f"warning: {len(unknown_ids)} prediction ids not in corpus (ignored)", file=sys.stderr)
    for tid, g_ents in gold.items():
        by_type_g: dict[str, list] = defaultdict(list)
        by_type_p: dict[str, list] = defaultdict(list)
        for t, s, e in g_ents:
            by_type_g[t].append((s, e))
        for t, s, e in preds.get(tid, []):
            if t in counts:
                by_type_p[t].append((s, e))
                emitted[t] += 1
            else:
                not_scored[t] += 1
        for t in set(by_type_g) | set(by_type_p):
            g, p = by_type_g.get(t, []), by_type_p.get(t, [])
            tp = match_spans(g, p)
            counts[t]["tp"] += tp
            counts[t]["fp"] += len(p) - tp
            counts[t]["fn"] += len(g) - tp
    return counts, not_scored, emitted


def build_rows(counts: dict, supported: set[str], gold_types: list[str]) -> dict:
    """Metrics per supported type plus the pooled ``secrets`` row (None = unsupported)."""
    rows = {}
    for t in gold_types:
        rows[t] = prf(counts[t]["tp"], counts[t]["fp"], counts[t]["fn"]) if t in supported else None
    rows[AGG] = pooled(counts, [t for t in gold_types if t in SECRET_TYPES and t in supported])
    return rows


def pooled(counts: dict, types: list[str]) -> dict | None:
    if not types:
        return None
    return prf(*(sum(counts[t][k] for t in types) for k in ("tp", "fp", "fn")))


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def fmt_pct(x: float) -> str:
    return f"{x:.3f}"


def markdown_table(names: list[str], results: dict, gold_counts: Counter, row_keys: list[str]) -> str:
    head = ["type", "gold"]
    for n in names:
        head += [f"{n} TP", "FP", "FN", "P", "R", "F2"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["--:"] * 6 * len(names)) + "|"]
    for key in row_keys:
        gold_n = gold_counts[key] if key != AGG else sum(gold_counts[t] for t in SECRET_TYPES)
        label = f"**{key}** (pooled)" if key == AGG else key
        cells = [label, str(gold_n)]
        for n in names:
            m = results[n]["rows"][key]
            if m is None:
                cells += [DASH] * 6
            else:
                cells += [str(m["tp"]), str(m["fp"]), str(m["fn"]),
                          fmt_pct(m["precision"]), fmt_pct(m["recall"]), fmt_pct(m["f2"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plain_table(names: list[str], results: dict, gold_counts: Counter, row_keys: list[str]) -> str:
    out = []
    for n in names:
        out.append(f"== {n}")
        out.append(f"{'type':<16}{'gold':>6}{'TP':>6}{'FP':>6}{'FN':>6}{'P':>8}{'R':>8}{'F2':>8}")
        for key in row_keys:
            gold_n = gold_counts[key] if key != AGG else sum(gold_counts[t] for t in SECRET_TYPES)
            m = results[n]["rows"][key]
            if m is None:
                out.append(f"{key:<16}{gold_n:>6}{DASH:>6}")
            else:
                out.append(f"{key:<16}{gold_n:>6}{m['tp']:>6}{m['fp']:>6}{m['fn']:>6}"
                           f"{m['precision']:>8.3f}{m['recall']:>8.3f}{m['f2']:>8.3f}")
    return "\n".join(out)


def compare(first: str, second: str, results: dict, gold_types: list[str]) -> list[dict]:
    """F2 comparison on types both predictors support (+ pooled secrets on the shared secret types)."""
    a, b = results[first], results[second]
    both = [t for t in gold_types if t in a["supported"] and t in b["supported"]]
    cmp = []
    for t in both:
        fa, fb = a["rows"][t]["f2"], b["rows"][t]["f2"]
        cmp.append({"type": t, "first_f2": fa, "second_f2": fb, "first_beats_second": fa > fb})
    shared_secrets = [t for t in both if t in SECRET_TYPES]
    if shared_secrets:
        fa = pooled(a["counts"], shared_secrets)["f2"]
        fb = pooled(b["counts"], shared_secrets)["f2"]
        cmp.append({"type": AGG, "first_f2": fa, "second_f2": fb, "first_beats_second": fa > fb,
                    "pooled_over": shared_secrets})
    return cmp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Score PII/secret predictions against the corpus (F2).")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--pred", action="append", required=True, metavar="NAME=FILE",
                    help="prediction JSONL; repeat for several predictors (first is compared to second)")
    ap.add_argument("--supports", action="append", default=[], metavar="NAME=t1,t2",
                    help="override the types predictor NAME supports")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table (default: plain text)")
    ap.add_argument("--json-out", help="write a JSON summary here")
    args = ap.parse_args(argv)

    gold = load_corpus(args.corpus)
    gold_counts: Counter = Counter(t for ents in gold.values() for t, _, _ in ents)
    gold_types = [t for t in TYPE_ORDER if t in gold_counts] + sorted(set(gold_counts) - set(TYPE_ORDER))
    overrides = {}
    for s in args.supports:
        name, _, types = s.partition("=")
        overrides[name] = {t.strip() for t in types.split(",") if t.strip()}

    names: list[str] = []
    results: dict[str, dict] = {}
    for spec in args.pred:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--pred expects NAME=FILE, got {spec!r}")
        if name in results:
            ap.error(f"duplicate predictor name {name!r}")
        preds = load_predictions(path)
        sidecar = load_sidecar(path)
        counts, not_scored, emitted = score_predictor(gold, preds, gold_types)
        if name in overrides:
            supported, source = overrides[name], "--supports"
        elif sidecar and sidecar.get("supported_types"):
            supported, source = set(sidecar["supported_types"]), "sidecar"
        else:
            supported, source = {t for t in emitted if emitted[t]}, "inferred"
        supported &= set(gold_types)
        names.append(name)
        results[name] = {
            "file": path, "supported": supported, "supported_source": source, "counts": counts,
            "rows": build_rows(counts, supported, gold_types), "not_scored": dict(not_scored),
            "timing": sidecar,
        }

    row_keys = gold_types + [AGG]
    table = (markdown_table if args.markdown else plain_table)(names, results, gold_counts, row_keys)
    print(f"Corpus: {args.corpus} — {len(gold)} texts, {sum(gold_counts.values())} gold entities; "
          f"overlap match per type, F2 (beta=2).\n")
    print(table)
    print()
    for n in names:
        r = results[n]
        extra = []
        if r["not_scored"]:
            extra.append("not scored (type absent from gold): "
                         + ", ".join(f"{t}={c}" for t, c in sorted(r["not_scored"].items())))
        t = r["timing"]
        if t and t.get("seconds"):
            extra.append(f"{t.get('texts')} texts / {t.get('bytes')} bytes in {t['seconds']:.2f}s "
                         f"({t['texts'] / t['seconds']:.0f} texts/s)")
        extra.append(f"supported types from {r['supported_source']}")
        print(f"- {n}: " + "; ".join(extra))

    comparison = []
    if len(names) >= 2:
        first, second = names[0], names[1]
        comparison = compare(first, second, results, gold_types)
        if comparison:
            parts = [f"{c['type']} {'YES' if c['first_beats_second'] else 'no'} "
                     f"({c['first_f2']:.3f} vs {c['second_f2']:.3f})" for c in comparison]
            wins = sum(c["first_beats_second"] for c in comparison)
            print(f"\n{first} beats {second} on F2 in {wins}/{len(comparison)} shared types: " + "; ".join(parts))
        else:
            print(f"\n{first} and {second} support no common types.")

    if args.json_out:
        summary = {
            "corpus": args.corpus, "texts": len(gold), "gold_counts": dict(gold_counts),
            "matching": "per-type byte-span overlap, greedy one-to-one by largest overlap", "beta": BETA,
            "predictors": {
                n: {"file": r["file"], "supported_types": sorted(r["supported"]),
                    "supported_source": r["supported_source"], "per_type": r["rows"],
                    "not_scored": r["not_scored"], "timing": r["timing"]}
                for n, r in results.items()
            },
            "comparison": {"first": names[0], "second": names[1], "types": comparison} if len(names) >= 2 else None,
        }
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
