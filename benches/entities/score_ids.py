"""Per national-identifier type: valid identifiers found (a span of that type covering the
identifier), and decoys flagged (any national-identifier span on a decoy text; in brackets,
those flagged as the decoy's own type).
Usage: score_ids.py CORPUS NAME=PRED.jsonl ..."""

import json
import sys


def load(path):
    return {r["id"]: r for r in map(json.loads, open(path, encoding="utf-8")) if "id" in r}


corpus = load(sys.argv[1])
types = list(dict.fromkeys(r["type"] for r in corpus.values()))
print("| type | " + " | ".join(f"{n.split('=')[0]} valid found | {n.split('=')[0]} decoys flagged" for n in sys.argv[2:]) + " |")
print("|---|" + "---|---|" * (len(sys.argv) - 2))
preds = [load(a.split("=", 1)[1]) for a in sys.argv[2:]]
totals = [[0, 0, 0, 0] for _ in preds]
for ty in types:
    cells = [ty]
    for k, pred in enumerate(preds):
        valid = [r for r in corpus.values() if r["type"] == ty and r["valid"]]
        decoys = [r for r in corpus.values() if r["type"] == ty and not r["valid"]]
        found = 0
        for r in valid:
            a, b, _ = r["spans"][0]
            found += any(t == ty and s <= a and e >= b for s, e, t in pred.get(r["id"], {"spans": []})["spans"])
        flagged = sum(bool(pred.get(r["id"], {"spans": []})["spans"]) for r in decoys)
        same = sum(
            any(t == ty for _, _, t in pred.get(r["id"], {"spans": []})["spans"]) for r in decoys
        )
        totals[k][0] += found
        totals[k][1] += len(valid)
        totals[k][2] += flagged
        totals[k][3] += len(decoys)
        cells += [f"{found}/{len(valid)}", f"{flagged}/{len(decoys)} ({same})"]
    print("| " + " | ".join(cells) + " |")
print("| all | " + " | ".join(f"{t[0]}/{t[1]} | {t[2]}/{t[3]}" for t in totals) + " |")
