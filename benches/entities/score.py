"""Score predictions against benches/entities' corpus with the model card's measures:
character-level recall and precision per type (whitespace not counted), entity recall (at
least half of an entity's characters covered), and the share of public-entity texts flagged.
Usage: score.py CORPUS NAME=PRED.jsonl [NAME=PRED.jsonl ...] (predictions in character
offsets, one {"id", "spans"} per text)."""

import json
import sys

TYPES = ["person", "address"]


def load(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        r = json.loads(line)
        if "id" in r:
            out[r["id"]] = r
    return out


def chars(text, spans, ty):
    s = set()
    for a, b, t in spans:
        if t == ty:
            s |= {i for i in range(a, b) if not text[i].isspace()}
    return s


def score(corpus, pred):
    rows = {}
    for split in ("ood_family", "ood_locale", "ood_public"):
        part = [r for r in corpus.values() if r["split"] == split]
        st = {t: [0, 0, 0, 0, 0] for t in TYPES}  # gold, pred, hit, entities, found
        flagged = 0
        for r in part:
            p = pred.get(r["id"], {"spans": []})["spans"]
            flagged += bool(p)
            for t in TYPES:
                g, q = chars(r["text"], r["spans"], t), chars(r["text"], p, t)
                st[t][0] += len(g)
                st[t][1] += len(q)
                st[t][2] += len(g & q)
                for a, b, ty in r["spans"]:
                    if ty == t:
                        c = {i for i in range(a, b) if not r["text"][i].isspace()}
                        st[t][3] += 1
                        st[t][4] += len(c & q) * 2 >= len(c)
        row = {"texts": len(part), "flagged": flagged / max(len(part), 1)}
        for t, (g, q, h, e, f) in st.items():
            row[t] = {
                "recall": h / g if g else None,
                "precision": h / q if q else None,
                "entity_recall": f / e if e else None,
            }
        rows[split] = row
    return rows


def main():
    corpus = load(sys.argv[1])
    results = {}
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        results[name] = score(corpus, load(path))
    f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    print("| detector | split | texts | texts flagged | PERSON recall | PERSON precision | PERSON entity recall | ADDRESS recall | ADDRESS precision | ADDRESS entity recall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for split, r in rows.items():
            cells = [name, split, str(r["texts"]), f(r["flagged"])]
            for t in TYPES:
                cells += [f(r[t]["recall"]), f(r[t]["precision"]), f(r[t]["entity_recall"])]
            print("| " + " | ".join(cells) + " |")
    json.dump(results, open(sys.argv[1].replace("corpus.jsonl", "summary.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
