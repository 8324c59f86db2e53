#!/usr/bin/env python3
"""Time one DP-SGD training step in Opacus (hooks / ghost) vs. plain PyTorch, on CPU.

Usage:
  opacus_step.py --model mlp|transformer --mode nonprivate|hooks|ghost \
      --batch B --steps N --warmup W --threads K [--layers L]

Prints exactly one JSON line on stdout. Each timed step is:
  optimizer.zero_grad(); loss = criterion(model(x), y); loss.backward(); optimizer.step()
(data loading from the DataLoader happens outside the timed region).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

D_IN_MLP = 2304
HIDDEN_MLP = 256

VOCAB = 1000
SEQ = 128
D_MODEL = 256
N_HEADS = 4
HEAD_DIM = 64
D_FF = 1024
N_CLASSES = 2


class Block(nn.Module):
    """Pre-LN transformer block with hand-written multi-head attention
    (plain nn.Linear / nn.LayerNorm only, so Opacus needs no layer replacement)."""

    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.out = nn.Linear(D_MODEL, D_MODEL)
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.fc1 = nn.Linear(D_MODEL, D_FF)
        self.fc2 = nn.Linear(D_FF, D_MODEL)

    def attn(self, x):
        b, t, _ = x.shape
        qkv = self.qkv(x)  # [B, T, 768]
        q, k, v = qkv.split(D_MODEL, dim=-1)  # each [B, T, 256]
        # [B, T, H, Dh] -> [B, H, T, Dh]
        q = q.reshape(b, t, N_HEADS, HEAD_DIM).transpose(1, 2)
        k = k.reshape(b, t, N_HEADS, HEAD_DIM).transpose(1, 2)
        v = v.reshape(b, t, N_HEADS, HEAD_DIM).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) / 8.0  # sqrt(64)
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v)  # [B, H, T, Dh]
        ctx = ctx.transpose(1, 2).reshape(b, t, D_MODEL)  # merge heads
        return ctx

    def forward(self, x):
        h = x + self.out(self.attn(self.ln1(x)))
        h = h + self.fc2(F.gelu(self.fc1(self.ln2(h))))
        return h


class Transformer(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D_MODEL)
        self.blocks = nn.ModuleList([Block() for _ in range(layers)])
        self.head = nn.Linear(D_MODEL, N_CLASSES)

    def forward(self, ids):
        x = self.emb(ids)  # [B, T, 256]
        for blk in self.blocks:
            x = blk(x)
        x = x.mean(dim=1)  # mean over sequence axis
        return self.head(x)  # [B, 2]


class SqueezeLast(nn.Module):
    """Adapter applied to the MLP logits only (no parameters): [B,1] -> [B].
    Keeps the per-sample loss 1-D, which Opacus' ghost-clipping loss wrapper
    requires (a [B,1] per-sample loss would broadcast against the [B] clipping
    coefficients into [B,B])."""

    def forward(self, x):
        return x.squeeze(-1)


def build(model_name, layers, n_examples):
    torch.manual_seed(0)
    if model_name == "mlp":
        model = nn.Sequential(
            nn.Linear(D_IN_MLP, HIDDEN_MLP),
            nn.ReLU(),
            nn.Linear(HIDDEN_MLP, 1),
        )
        x = torch.randn(n_examples, D_IN_MLP, dtype=torch.float32)
        y = torch.randint(0, 2, (n_examples,)).to(torch.float32)  # [N], matches squeezed logits
        criterion = nn.BCEWithLogitsLoss(reduction="mean")
        post = SqueezeLast()
    elif model_name == "transformer":
        model = Transformer(layers)
        x = torch.randint(0, VOCAB, (n_examples, SEQ), dtype=torch.long)
        y = torch.randint(0, 2, (n_examples,), dtype=torch.long)
        criterion = nn.CrossEntropyLoss(reduction="mean")
        post = None
    else:
        raise ValueError(model_name)
    return model, criterion, x, y, post


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mlp", "transformer"], required=True)
    ap.add_argument("--mode", choices=["nonprivate", "hooks", "ghost"], required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)

    import opacus
    from opacus import PrivacyEngine

    B, N, W = args.batch, args.steps, args.warmup
    layers = args.layers if args.model == "transformer" else None
    model, criterion, x_all, y_all, post = build(args.model, args.layers, B * (N + W))
    model.train()

    dataset = TensorDataset(x_all, y_all)
    data_loader = DataLoader(dataset, batch_size=B, shuffle=False, drop_last=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    if args.mode != "nonprivate":
        # Opacus emits some UserWarnings (e.g. secure RNG); keep them on stderr only.
        engine = PrivacyEngine()
        common = dict(
            module=model,
            optimizer=optimizer,
            data_loader=data_loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            poisson_sampling=False,
            loss_reduction="mean",
            grad_sample_mode=args.mode,
        )
        if args.mode == "ghost":
            model, optimizer, criterion, data_loader = engine.make_private(
                criterion=criterion, **common
            )
        else:
            model, optimizer, data_loader = engine.make_private(**common)

    step_ms = []
    n_done = 0
    for xb, yb in data_loader:
        assert xb.shape[0] == B, xb.shape
        t0 = time.perf_counter()
        optimizer.zero_grad()
        out = model(xb)
        if post is not None:
            out = post(out)
        loss = criterion(out, yb)
        loss.backward()
        optimizer.step()
        t1 = time.perf_counter()
        if n_done >= W:
            step_ms.append((t1 - t0) * 1e3)
        n_done += 1
    assert n_done == N + W, (n_done, N + W)
    if not torch.isfinite(loss.detach()).all():
        print("warning: non-finite loss", file=sys.stderr)

    rec = {
        "impl": "opacus",
        "model": args.model,
        "mode": args.mode,
        "batch": B,
        "threads": args.threads,
        "layers": layers,
        "step_ms": step_ms,
        "median_ms": statistics.median(step_ms) if step_ms else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # benches/dp/run.sh sets glibc's thresholds through the environment for the "tuned"
        # rows, the same values trainer-sidecar sets with mallopt.
        "malloc": "tuned" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "default",
        "opacus": opacus.__version__,
        "torch": torch.__version__,
    }
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
