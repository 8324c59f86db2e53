"""The entity head: a per-token BIO tagger (PERSON, ADDRESS) on the encoder's `tokens` output
(layers 3 and 6, 768 values per token), trained on frozen FP32 states of the synthetic sentences
of entity_data.py, calibrated and evaluated on each bundle's own encoder (INT8 or FP32).

The head: h_i = ReLU(W1 x_i + b1) per token (HIDDEN units), then the output layer reads the hidden
units of the token and of its CONTEXT neighbours on each side ([h_(i-1), h_i, h_(i+1)], zeros past
the text's edges): a width-3 convolution over the hidden layer, so the big first layer still runs
once per token. `benches/entities/head_experiment.py` chose HIDDEN and CONTEXT on development
families and a development locale held out of training (never on the test splits).

The gateway (filters/src/classify/entities.rs) does what `decode` below does, token for token:
  - a token is an entity token when 1 - p(O) >= threshold; its type is the likeliest (B and I
    of a type summed; the first in LABELS order on a tie);
  - a token between two tokens of one type, the second of which continues the span (not a
    B token), takes that type (bridges one-token gaps and flips);
  - a run of tokens of one type between two tokens of another, same type takes that type ("Via
    Giuseppe Verdi 3": a street named after a person is part of the address);
  - the tokens of one word (joined with no gap, letters or digits on both sides of the joint)
    take the type of the word's first entity token;
  - consecutive entity tokens of one type form a span; a B token starts a new span, unless it
    continues the previous token's word (no gap between them);
  - a span grows to whole words (letters and digits around it).
The threshold is the lowest that flags at most PUBLIC_FLAG_TARGET of the `public_calibration`
texts (questions about public figures, characters, places and brands that training never saw),
so that such questions keep their words; `ood_public` (other unseen ones) reports the rate.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import entity_data  # noqa: E402

HIDDEN = 64
CONTEXT = 1
# the two decoding rules added with the context head (benches/entities/head_experiment.py turns
# them off to measure what each brings)
ENCLOSED_RUNS = True
WORD_TYPE = True
TOKEN_DIM = 768
PUBLIC_FLAG_TARGET = 0.05
SIZES = {
    "train": 12000,
    "validation": 1500,
    "ood_family": 1000,
    "ood_locale": 1000,
    "public_calibration": 600,
    "ood_public": 1000,
}
# in the order of entity_data.LABELS (B-, I- pairs after O)
TYPES = ["person", "address"]


class TokenHead(torch.nn.Module):
    """`layers` as nn.Sequential numbers them (0: first, 2: output), the names the bundle's
    safetensors file and the gateway's loader use."""

    def __init__(self, hidden=None, context=None):
        super().__init__()
        self.hidden = HIDDEN if hidden is None else hidden
        self.context = CONTEXT if context is None else context
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(TOKEN_DIM, self.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(self.hidden * (1 + 2 * self.context), len(entity_data.LABELS)),
        )

    def hidden_units(self, x):
        return self.layers[1](self.layers[0](x))

    def forward(self, x, neighbours=()):
        """x: [n, TOKEN_DIM]; neighbours: per offset -c..-1, 1..c, (states [n, TOKEN_DIM], mask [n])
        with mask 0 where the neighbour is past the text's edge."""
        h = self.hidden_units(x)
        if self.context:
            hs = [self.hidden_units(s) * m[:, None] for s, m in neighbours]
            c = self.context
            h = torch.cat(hs[:c] + [h] + hs[c:], dim=1)
        return self.layers[2](h)

    def sequence(self, x):
        """Logits for the tokens of one text, x: [n, TOKEN_DIM]."""
        n = len(x)
        neighbours = []
        for d in list(range(-self.context, 0)) + list(range(1, self.context + 1)):
            idx = torch.arange(n) + d
            ok = (idx >= 0) & (idx < n)
            neighbours.append((x[idx.clamp(0, max(n - 1, 0))], ok.float()))
        return self(x, neighbours)


def token_labels(offsets, spans):
    """BIO label per token (0 = O), from character spans."""
    lab = np.zeros(len(offsets), dtype=np.int64)
    prev_in = None
    for k, (s, e) in enumerate(offsets):
        if s == e:
            prev_in = None
            continue
        hit = None
        for si, (a, b, ty) in enumerate(spans):
            if a <= s < b:
                hit = (si, ty)
                break
        if hit is None:
            prev_in = None
            continue
        base = 1 + 2 * TYPES.index(hit[1])
        lab[k] = base + (1 if prev_in == hit[0] else 0)
        prev_in = hit[0]
    return lab


class Featurizer:
    def __init__(self, onnx_path, tokenizer_path):
        import os

        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.tok.no_padding()
        self.tok.no_truncation()

    def run(self, rows):
        """Per text: (token states [n, 768] float16, offsets, labels); [CLS]/[SEP] dropped.
        Texts are short (one window); longer ones are cut at 126 tokens."""
        encs = [self.tok.encode(r["text"], add_special_tokens=False) for r in rows]
        cls, sep = self.tok.token_to_id("[CLS]"), self.tok.token_to_id("[SEP]")
        order = sorted(range(len(rows)), key=lambda i: len(encs[i].ids))
        out = [None] * len(rows)
        for b in range(0, len(order), 64):
            idx = order[b : b + 64]
            width = max(min(len(encs[i].ids), 126) for i in idx) + 2
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for j, i in enumerate(idx):
                t = [cls] + encs[i].ids[:126] + [sep]
                ids[j, : len(t)] = t
                mask[j, : len(t)] = 1
            toks = self.session.run(["tokens"], {"input_ids": ids, "attention_mask": mask})[0]
            for j, i in enumerate(idx):
                n = min(len(encs[i].ids), 126)
                out[i] = toks[j, 1 : n + 1].astype(np.float16)
        res = []
        for i, r in enumerate(rows):
            offs = encs[i].offsets[: len(out[i])]
            res.append((out[i], offs, token_labels(offs, r["spans"])))
        return res


def train(feats, epochs=10, seed=0, hidden=None, context=None):
    torch.manual_seed(seed)
    x = np.concatenate([f for f, _, _ in feats]).astype(np.float32)
    y = np.concatenate([l for _, _, l in feats])
    head = TokenHead(hidden, context)
    # each token's neighbours within its text (-1: past the edge)
    offsets = list(range(-head.context, 0)) + list(range(1, head.context + 1))
    near = {d: [] for d in offsets}
    base = 0
    for f, _, _ in feats:
        n = len(f)
        for d in offsets:
            near[d] += [base + k + d if 0 <= k + d < n else -1 for k in range(n)]
        base += n
    near = {d: torch.tensor(v) for d, v in near.items()}
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt, yt = torch.from_numpy((x - mu) / sd), torch.from_numpy(y)
    xz = torch.cat([xt, torch.zeros(1, xt.shape[1])])  # index -1: the zero row
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for b in range(0, len(xt), 256):
            i = perm[b : b + 256]
            opt.zero_grad()
            nb = [(xz[near[d][i]], (near[d][i] >= 0).float()) for d in offsets]
            torch.nn.functional.cross_entropy(head(xt[i], nb), yt[i]).backward()
            opt.step()
    with torch.no_grad():
        first = head.layers[0]
        w = first.weight / torch.from_numpy(sd).float()
        first.bias -= (w * torch.from_numpy(mu).float()).sum(dim=1)
        first.weight.copy_(w)
    return head.eval()


def probabilities(head, f):
    with torch.no_grad():
        return torch.softmax(head.sequence(torch.from_numpy(f.astype(np.float32))), dim=-1).numpy()


def tags(probs, threshold):
    """Per token: (type 0 none / 1 + index in TYPES, begins, 1 - p(O)), then one-token gaps
    and one-token type flips inside a span bridged (a token between two tokens of one type,
    the second of which continues the span, takes that type)."""
    out = []
    for p in probs:
        pe = float(1.0 - p[0])
        if pe < threshold:
            out.append([0, False, pe])
            continue
        totals = [p[1 + 2 * i] + p[2 + 2 * i] for i in range(len(TYPES))]
        best = max(range(len(TYPES)), key=lambda i: (totals[i], -i))
        begin = bool(p[1 + 2 * best] > p[2 + 2 * best])
        out.append([best + 1, begin, pe])
    for k in range(1, len(out) - 1):
        a, b, c = out[k - 1], out[k], out[k + 1]
        if a[0] != 0 and a[0] == c[0] and b[0] != a[0] and not c[1]:
            b[0], b[1] = a[0], False
    # a run of one type between two tokens of another, same type takes that type
    k = 0
    while ENCLOSED_RUNS and k < len(out):
        j = k
        while j + 1 < len(out) and out[j + 1][0] == out[k][0]:
            j += 1
        if out[k][0] != 0 and k > 0 and j + 1 < len(out) and out[k - 1][0] != 0 and out[k - 1][0] == out[j + 1][0]:
            for t in range(k, j + 1):
                out[t][0], out[t][1] = out[k - 1][0], False
        k = j + 1
    return out


def joins(text, prev_end, start):
    """The token starting at `start` continues the word of the token ending at `prev_end`."""
    return prev_end == start and start > 0 and text[start - 1].isalnum() and start < len(text) and text[start].isalnum()


def decode(text, offsets, probs, threshold):
    """Character spans [(start, end, type)], as the gateway decodes them."""
    spans, cur, prev_end = [], None, None
    tg = tags(probs, threshold)
    # the tokens of one word take the type of its first entity token
    word_type, end = 0, None
    for (s, e), t in zip(offsets, tg):
        if s == e:
            continue
        if not joins(text, end, s):
            word_type = 0
        if t[0] != 0 and WORD_TYPE:
            if word_type == 0:
                word_type = t[0]
            t[0] = word_type
        end = e
    for (s, e), (t, begin, _) in zip(offsets, tg):
        if s == e:
            continue
        if t == 0:
            cur = None
            prev_end = e
            continue
        ty = t - 1
        joined = prev_end == s
        if cur is not None and cur[2] == ty and (not begin or joined):
            cur[1] = e
        else:
            cur = [s, e, ty]
            spans.append(cur)
        prev_end = e
    out = []
    for s, e, ty in spans:
        while s > 0 and text[s - 1].isalnum():
            s -= 1
        while e < len(text) and text[e].isalnum():
            e += 1
        out.append((s, e, TYPES[ty]))
    return out


def evaluate(rows, feats, head, threshold):
    """Character-level recall and precision per type (how much of each entity is covered, how
    much of what is flagged is that entity), entity-level recall (at least half of an entity's
    characters covered), and the share of texts with any finding."""
    stats = {t: {"gold": 0, "pred": 0, "hit": 0, "entities": 0, "found": 0} for t in TYPES}
    flagged = 0
    for r, (f, offs, _) in zip(rows, feats):
        pred = decode(r["text"], offs, probabilities(head, f), threshold)
        flagged += bool(pred)
        for t in TYPES:
            g = set()
            for a, b, ty in r["spans"]:
                if ty == t:
                    g |= {i for i in range(a, b) if not r["text"][i].isspace()}
            p = set()
            for a, b, ty in pred:
                if ty == t:
                    p |= {i for i in range(a, b) if not r["text"][i].isspace()}
            st = stats[t]
            st["gold"] += len(g)
            st["pred"] += len(p)
            st["hit"] += len(g & p)
            for a, b, ty in r["spans"]:
                if ty != t:
                    continue
                chars = {i for i in range(a, b) if not r["text"][i].isspace()}
                st["entities"] += 1
                st["found"] += len(chars & p) * 2 >= len(chars)
    out = {"texts": len(rows), "flagged_texts": round(flagged / max(len(rows), 1), 4)}
    for t, st in stats.items():
        if st["entities"] == 0 and st["pred"] == 0:
            continue
        out[t] = {
            "entities": st["entities"],
            "char_recall": round(st["hit"] / max(st["gold"], 1), 4),
            "char_precision": round(st["hit"] / max(st["pred"], 1), 4) if st["pred"] else None,
            "entity_recall": round(st["found"] / max(st["entities"], 1), 4),
        }
    return out


def probe(fz, head, threshold, rows, per_split=15):
    """Texts with the spans this decoder finds, each text run alone (INT8 activations are
    quantised per batch), with UTF-8 byte offsets: filters/tests/entities.rs checks that the
    gateway's decoder finds the same spans on the same bundle."""
    out = []
    for split in ("ood_family", "ood_locale", "ood_public"):
        for r in rows[split][:per_split]:
            f = fz.run([r])[0]
            spans = decode(r["text"], f[1], probabilities(head, f[0]), threshold)
            b = lambda i: len(r["text"][:i].encode("utf-8"))  # noqa: E731
            out.append({"text": r["text"], "spans": [[b(a), b(e), t] for a, e, t in spans]})
    return out


def calibrate(rows, feats, head):
    """Lowest threshold that flags at most PUBLIC_FLAG_TARGET of the public-entity texts."""
    public = [(r, f) for r, f in zip(rows, feats) if r["family"].startswith("public-")]
    # coarse steps, then finer ones near 1 (the head is confident: most tokens sit near 0 or 1)
    grid = list(np.arange(0.3, 0.99, 0.01)) + [1.0 - 10.0 ** (-k / 4) for k in range(8, 17)]
    for t in grid:
        n = sum(bool(decode(r["text"], f[1], probabilities(head, f[0]), t)) for r, f in public)
        if n <= PUBLIC_FLAG_TARGET * len(public):
            return float(round(t, 6))
    return float(grid[-1])


def build(encoder_dir, variants):
    """Train on FP32 states; calibrate and evaluate per variant. Returns (head, {variant:
    {"threshold", "splits"}}, data counts)."""
    t0 = time.time()
    rows = {s: entity_data.split(s, n) for s, n in SIZES.items()}
    enc = Path(encoder_dir)
    fz = {v: Featurizer(enc / f"{v}.onnx", enc / "tokenizer.json") for v in variants}
    train_feats = fz["fp32"].run(rows["train"])
    head = train(train_feats)
    del train_feats
    train_s = time.time() - t0
    report = {}
    for v in variants:
        feats = {s: fz[v].run(rows[s]) for s in SIZES if s != "train"}
        thr = calibrate(rows["public_calibration"], feats["public_calibration"], head)
        report[v] = {
            "threshold": thr,
            "splits": {s: evaluate(rows[s], feats[s], head, thr) for s in feats},
        }
    for v in variants:
        report[v]["probe"] = probe(fz[v], head, report[v]["threshold"], rows)
    counts = {s: len(r) for s, r in rows.items()}
    print(f"[build] entity head: {time.time() - t0:.0f}s (training {train_s:.0f}s)", file=sys.stderr)
    return head, report, counts
