"""Experiment: which entity head to ship, chosen without looking at the held-out test splits.

The bundle's held-out splits (`ood_family`, `ood_locale`, `ood_public`) are what the model card
reports; choosing a head by them would make those figures optimistic. This script holds out
*development* families and a *development* locale from the training families and locales
(never the test ones), trains each variant on what is left, calibrates its threshold(s) on
`public_calibration` exactly as the build does (at most 5% of public questions flagged), and
prints recall/precision on the development splits. The winner is then built into the bundle
(models/build/entity_head.py) and reported once on the test splits.

    .venv/bin/python benches/entities/head_experiment.py   # ~2 minutes on 2 cores

Variants (entity_head.train's `hidden` and `context`, and the decoder's two newer rules):
  - `hidden`: width of the MLP's hidden layer (shipped before: 32);
  - `context`: 0 = each token alone; 1 = the hidden units of the token before and after are
    read too (a width-3 convolution over the hidden layer, cheap in Rust: the big first layer
    still runs once per token);
  - `rules`: `before` (the decoder of the first head) or `now` (plus: a run of one type between
    two tokens of another type takes that type; a word's tokens take its first entity token's
    type), entity_head.ENCLOSED_RUNS and entity_head.WORD_TYPE.
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models" / "build"))
import entity_data  # noqa: E402
import entity_head  # noqa: E402

# the probabilities do not depend on the threshold: computed once per head and text
_probabilities = entity_head.probabilities
_memo = {}


def memo_probabilities(head, f):
    key = (id(head), id(f))
    if key not in _memo:
        _memo[key] = _probabilities(head, f)
    return _memo[key]


entity_head.probabilities = memo_probabilities

DEV_FAMILIES = ["support", "notes", "travel"]
DEV_LOCALE = "es_ES"


def dev_rows():
    fams = [f for f in entity_data.FAMILIES if f not in entity_data.HELD_OUT_FAMILIES]
    locs = [l for l in entity_data.LOCALES if l not in entity_data.HELD_OUT_LOCALES]
    tf = [f for f in fams if f not in DEV_FAMILIES]
    tl = [l for l in locs if l != DEV_LOCALE]
    n = entity_head.SIZES["train"]
    g = entity_data.Generator(100, tl)
    train = (g.private(tf, int(n * 0.6)) + g.public(entity_data._split_lists("train"), int(n * 0.25))
             + g.plain(n - int(n * 0.6) - int(n * 0.25)))
    return {
        "train": train,
        "dev_family": entity_data.Generator(101, tl).private(DEV_FAMILIES, 800),
        "dev_locale": entity_data.Generator(102, [DEV_LOCALE]).private(tf, 800),
        "public_calibration": entity_data.split("public_calibration", entity_head.SIZES["public_calibration"]),
    }


def main():
    t0 = time.time()
    rows = dev_rows()
    enc = ROOT / ".deps" / "encoder"
    fp = entity_head.Featurizer(enc / "fp32.onnx", enc / "tokenizer.json")
    i8 = entity_head.Featurizer(enc / "int8.onnx", enc / "tokenizer.json")
    train_feats = fp.run(rows["train"])
    feats = {s: i8.run(rows[s]) for s in rows if s != "train"}
    print(f"features: {time.time() - t0:.0f}s", file=sys.stderr)
    variants = [(32, 0, "before"), (32, 1, "now"), (64, 1, "before"), (64, 1, "now"), (128, 1, "now")]
    heads = {}
    print("| hidden | context | rules | threshold | split | flagged | PERSON R / P / entity R | ADDRESS R / P / entity R |")
    print("|---|---|---|---|---|---|---|---|")
    for hidden, context, rules in variants:
        if (hidden, context) not in heads:
            heads[hidden, context] = entity_head.train(train_feats, hidden=hidden, context=context)
        head = heads[hidden, context]
        entity_head.ENCLOSED_RUNS = entity_head.WORD_TYPE = rules == "now"
        thr = entity_head.calibrate(rows["public_calibration"], feats["public_calibration"], head)
        for s in ("dev_family", "dev_locale"):
            e = entity_head.evaluate(rows[s], feats[s], head, thr)
            cells = [f"{e[t]['char_recall']:.3f} / {e[t]['char_precision'] or 0:.3f} / {e[t]['entity_recall']:.3f}"
                     for t in entity_head.TYPES]
            print(f"| {hidden} | {context} | {rules} | {thr} | {s} | {e['flagged_texts']:.3f} | " + " | ".join(cells) + " |",
                  flush=True)
    print(f"total: {time.time() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
