"""The injection heads: `injection` (text a user typed) and `indirect_injection` (text supplied
for the model to read: documents, tool results, web pages), trained on every source of
injection_sources.py whose role is `train`, with thresholds chosen on the `calibrate` sources
and figures reported on the `test` sources (never trained on, never used for a threshold).

Operating points, each chosen on the calibration sources of the head's own channel:
- default (`threshold_logit`): at most DEFAULT_FPR of the benign calibration rows flagged;
- `strict` (`operating_points.strict`): at most STRICT_FPR flagged, for more recall.

Run by build_guard.py; `python injection_heads.py --help` runs it alone for experiments.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import injection_sources as src  # noqa: E402

DEFAULT_FPR = 0.01
STRICT_FPR = 0.02
HEADS = {"injection": src.TYPED, "indirect_injection": src.SUPPLIED}


def balanced(w, y):
    """Weights scaled so that attacks and benign rows weigh the same in total (mean 1)."""
    w = w.astype(np.float64).copy()
    for lab in (0, 1):
        w[y == lab] *= 0.5 / w[y == lab].sum()
    return w * len(w)


def threshold_at(scores, fpr):
    """Lowest threshold flagging at most `fpr` of `scores` (benign rows)."""
    neg = np.sort(scores)[::-1]
    k = int(np.floor(fpr * len(neg)))
    if k >= len(neg):
        return float(neg[-1])
    return float(np.nextafter(neg[k], np.inf))


def roc(scores, labels):
    """(fpr, tpr) points and the AUC."""
    order = np.argsort(-scores, kind="stable")
    ranked = labels[order]
    pos, neg = max(int(labels.sum()), 1), max(int((1 - labels).sum()), 1)
    tpr = np.concatenate([[0], np.cumsum(ranked) / pos])
    fpr = np.concatenate([[0], np.cumsum(1 - ranked) / neg])
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def evaluate(scores, labels, thresholds):
    pos, neg = scores[labels == 1], scores[labels == 0]
    out = {"rows": int(len(labels)), "attacks": int(len(pos)), "benign": int(len(neg))}
    for name, t in thresholds.items():
        out[name] = {
            "recall": float((pos >= t).mean()) if len(pos) else None,
            "benign_flagged": float((neg >= t).mean()) if len(neg) else None,
        }
    if len(pos) and len(neg):
        fpr, tpr, auc = roc(scores, labels)
        out["auc"] = auc
        t1 = threshold_at(neg, 0.01)
        out["recall_at_1pct_fpr_own"] = float((pos >= t1).mean())
    return out


def build(embedder_fp32, embedders, sources, train_head, log=print):
    """Train both heads on FP32 features; calibrate and evaluate on each variant's features.
    Returns (heads: name -> torch module, report: variant -> {...})."""
    import build_guard as bg

    def feats(emb, s, channel=None):
        idx = [i for i, c in enumerate(s.channels) if channel is None or c == channel]
        if not idx:
            return None, None
        texts = [s.texts[i] for i in idx]
        x, owner = bg.split_rows(emb.embed(texts, f"inj-{s.name.replace(':', '_')}-{channel or 'all'}"))
        return (x, owner, len(texts)), np.array([s.labels[i] for i in idx])

    train = [s for s in sources if s.role == "train"]
    heads, stats = {}, {}
    for head, channel in HEADS.items():
        xs, ys, ws, owners = [], [], [], []
        base = 0
        for s in train:
            (x, owner, n), y = feats(embedder_fp32, s)
            # Both heads learn from every channel (an override is an override wherever it is
            # typed); each weighs its own channel's rows twice.
            ch = np.array(s.channels)[owner]
            w = np.full(len(owner), 1.0 / np.sqrt(max(n, 1)))
            w[ch == channel] *= 2.0
            xs.append(x)
            ys.append(y[owner])
            ws.append(w)
            owners.append(owner + base)
            base += n
        x, y, w, owner = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws), np.concatenate(owners)
        windows = np.bincount(owner)[owner]
        t0 = time.time()
        # A long attack text is labelled as a whole, but its instruction sits in one window:
        # the other windows of it are benign text. First pass: such windows share their
        # text's weight; second pass: only the window the first model scores highest keeps
        # the label, the others are left out.
        w1 = np.where((y == 1) & (windows > 1), w / windows, w)
        first = train_head(x, y, epochs=20, smoothing=0.3, weights=balanced(w1, y))
        with torch.no_grad():
            logits = first(torch.from_numpy(x)).numpy()
        best = np.full(base, -np.inf)
        np.maximum.at(best, owner, logits)
        keep = (y == 0) | (windows == 1) | (logits >= best[owner])
        heads[head] = train_head(x[keep], y[keep], epochs=20, smoothing=0.3, weights=balanced(w[keep], y[keep]))
        stats[head] = {
            "train_windows": int(keep.sum()),
            "attack_windows_left_out": int((~keep).sum()),
            "train_seconds": round(time.time() - t0, 1),
        }
        log(f"[build] {head}: trained on {int(keep.sum())} windows ({int((~keep).sum())} left out) in {stats[head]['train_seconds']}s")

    report = {}
    for variant, emb in embedders.items():
        rv = {}
        for head, channel in HEADS.items():
            model = heads[head]
            cal = [s for s in sources if s.role == "calibrate" and channel in s.channels]
            cal_scores, cal_labels = [], []
            for s in cal:
                (x, owner, n), y = feats(emb, s, channel)
                cal_scores.append(bg.text_scores(model, x, owner, n))
                cal_labels.append(y)
            cs, cl = np.concatenate(cal_scores), np.concatenate(cal_labels)
            thresholds = {
                "default": threshold_at(cs[cl == 0], DEFAULT_FPR),
                "strict": threshold_at(cs[cl == 0], STRICT_FPR),
            }
            per_source = {}
            for s in sources:
                if channel not in s.channels:
                    continue
                (x, owner, n), y = feats(emb, s, channel)
                sc = bg.text_scores(model, x, owner, n)
                r = evaluate(sc, y, thresholds)
                r["role"] = s.role
                fpr, tpr, _ = roc(sc, y) if (y.sum() and (1 - y).sum()) else (None, None, None)
                if fpr is not None:
                    # the ROC curve, thinned to ~200 points for the card's plot
                    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
                    r["roc"] = {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}
                per_source[s.name] = r
            pooled = {}
            for role in ("in_distribution", "calibrate", "test"):
                scs, lbs = [], []
                for s in sources:
                    if s.role == role and channel in s.channels:
                        (x, owner, n), y = feats(emb, s, channel)
                        scs.append(bg.text_scores(model, x, owner, n))
                        lbs.append(y)
                if scs:
                    pooled[role] = evaluate(np.concatenate(scs), np.concatenate(lbs), thresholds)
            rv[head] = {
                "channel": channel,
                "thresholds": thresholds,
                "calibration": f"benign rows of the {channel}-channel calibration sources: at most {DEFAULT_FPR:.0%} flagged (default), {STRICT_FPR:.0%} (strict)",
                "pooled": pooled,
                "sources": per_source,
                **stats[head],
            }
        report[variant] = rv
    return heads, report


def summary(report):
    """One line per head, role and operating point."""
    lines = []
    for head, r in report.items():
        for role, m in r["pooled"].items():
            for point in ("default", "strict"):
                p = m[point]
                lines.append(
                    f"{head:20s} {role:16s} {point:8s} recall {p['recall'] if p['recall'] is not None else float('nan'):.3f}"
                    f"  benign flagged {p['benign_flagged'] if p['benign_flagged'] is not None else float('nan'):.3f}"
                    f"  (rows {m['rows']}, attacks {m['attacks']})"
                )
    return "\n".join(lines)


def main():
    import argparse

    import build_guard as bg

    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder-dir", required=True)
    ap.add_argument("--data", required=True, help=".deps/data")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", help="write the report here (JSON)")
    args = ap.parse_args()
    enc = Path(args.encoder_dir)
    tok = enc / "tokenizer.json"
    embs = {"fp32": bg.Embedder(enc / "fp32.onnx", tok, args.cache)}
    sources = src.all_sources(Path(args.data))
    heads, report = build(embs["fp32"], embs, sources, bg.train_head, log=lambda m: print(m, file=sys.stderr))
    print(summary(report["fp32"]))
    for head, r in report["fp32"].items():
        print(f"\n{head}:")
        for name, m in r["sources"].items():
            d = m["default"]
            print(
                f"  {name:36s} {m['role']:16s} n={m['rows']:5d} att={m['attacks']:5d}"
                f" recall={d['recall'] if d['recall'] is not None else float('nan'):.3f}"
                f" flagged={d['benign_flagged'] if d['benign_flagged'] is not None else float('nan'):.3f}"
                f" auc={m.get('auc', float('nan')):.3f}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))



def plot_roc(report, path):
    """One panel per head: the ROC curve of every source with both classes (out-of-distribution
    sources solid, training sources' own splits dotted), log-scaled false-positive axis, the
    operating points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report), figsize=(7 * len(report), 6), squeeze=False)
    style = {"test": "-", "calibrate": "--", "in_distribution": ":"}
    for ax, (head, r) in zip(axes[0], report.items()):
        for name, m in sorted(r["sources"].items()):
            if "roc" not in m or m["role"] == "train":
                continue
            fpr = np.maximum(np.array(m["roc"]["fpr"]), 1e-4)
            ax.plot(fpr, m["roc"]["tpr"], style[m["role"]], label=f"{name} ({m['role']}, AUC {m['auc']:.3f})", linewidth=1.2)
        for point, fp in (("default", DEFAULT_FPR), ("strict", STRICT_FPR)):
            ax.axvline(fp, color="grey", linewidth=0.6)
            ax.text(fp, 0.02, f" {point}", rotation=90, fontsize=7, color="grey")
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("benign rows flagged (false-positive rate, log)")
        ax.set_ylabel("attacks flagged (recall)")
        ax.set_title(f"{head} ({r['channel']} channel)")
        ax.legend(fontsize=6, loc="lower right")
        ax.grid(True, which="both", linewidth=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def card_section(report, sources):
    """The model card's injection section: data, operating points, per-source tables."""

    def pct(v):
        return "—" if v is None else f"{v:.3f}"

    lines = [
        "## Injection heads: `injection` (typed) and `indirect_injection` (supplied)",
        "",
        "Two MLP heads on the encoder's `features`, one per channel: text a user typed, and text supplied for the "
        "model to read (tool results, documents, web pages, tool definitions: the policy's `classifiers.supplied_roles`). "
        "Both learn from every training source (each row weighted by 1/sqrt of its source's size, the head's own channel twice, "
        "attacks and benign rows equal in total). Sources, not rows, are held out: `calibrate` sources choose the thresholds, "
        "`test` sources are never used for training or thresholds. Data (see models/README.md for packages and licences):",
        "",
        "| source | role | rows | attacks | benign | channels |",
        "|---|---|---|---|---|---|",
    ]
    for s in sources:
        c = s.counts()
        lines.append(f"| {s.name} | {s.role} | {c['rows']} | {c['attacks']} | {c['benign']} | {', '.join(sorted(set(s.channels)))} |")
    for head, r in report.items():
        t = r["thresholds"]
        lines += [
            "",
            f"### `{head}` ({r['channel']} channel)",
            f"Thresholds (logit): default **{t['default']:.3f}** (p = {1 / (1 + np.exp(-t['default'])):.4f}), "
            f"`strict` **{t['strict']:.3f}** (p = {1 / (1 + np.exp(-t['strict'])):.4f}); {r['calibration']}.",
            "",
            "| sources | rows | attacks | recall (default) | benign flagged (default) | recall (strict) | benign flagged (strict) | AUC |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for role, m in r["pooled"].items():
            lines.append(
                f"| all {role} | {m['rows']} | {m['attacks']} | {pct(m['default']['recall'])} | {pct(m['default']['benign_flagged'])} "
                f"| {pct(m['strict']['recall'])} | {pct(m['strict']['benign_flagged'])} | {pct(m.get('auc'))} |"
            )
        for name, m in r["sources"].items():
            if m["role"] == "train":
                continue
            lines.append(
                f"| {name} ({m['role']}) | {m['rows']} | {m['attacks']} | {pct(m['default']['recall'])} | {pct(m['default']['benign_flagged'])} "
                f"| {pct(m['strict']['recall'])} | {pct(m['strict']['benign_flagged'])} | {pct(m.get('auc'))} |"
            )
    lines += ["", "ROC curves per source: `roc.png`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
