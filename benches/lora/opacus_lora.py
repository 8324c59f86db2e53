#!/usr/bin/env python3
"""Time one DP LoRA training step with Opacus 1.6 + PEFT on a Hugging Face checkpoint (CPU),
the baseline of benches/lora/run.sh.

Usage:
  opacus_lora.py --base DIR --mode nonprivate|hooks|ghost --batch B --seq T --rank R
      --steps N --warmup W --threads K

The model is loaded in f32 and materialised on the CPU, then wrapped by PEFT, then by Opacus,
then the optimiser is built over the trainable parameters: the order PEFT's troubleshooting
guide gives after meta-pytorch/opacus#820 (wrapping before materialising left the updates
no-ops), and the script checks that a lora_B tensor moved. The loss is each sequence's summed
next-token cross-entropy (Opacus: "the privacy unit for generative NLP tasks is per
sequence"), every position trained, as in the Rust bench.

Prints exactly one JSON line.
"""
import argparse
import json
import statistics
import time
import warnings

import torch
import torch.nn as nn
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

warnings.filterwarnings("ignore")

p = argparse.ArgumentParser()
p.add_argument("--base", required=True)
p.add_argument("--mode", choices=["nonprivate", "hooks", "ghost"], required=True)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=64)
p.add_argument("--rank", type=int, default=16)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
base = AutoModelForCausalLM.from_pretrained(a.base, dtype=torch.float32).eval()
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
model = get_peft_model(base, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0,
                                        target_modules=targets, task_type="CAUSAL_LM"))
with torch.no_grad():
    for n, t in model.named_parameters():
        if "lora_B" in n:
            t.normal_(0.0, 0.01)
params = [t for t in model.parameters() if t.requires_grad]
opt0 = torch.optim.SGD(params, lr=1e-3)
V = model.config.vocab_size
ids = torch.randint(V, (a.batch, a.seq))
B, T = a.batch, a.seq


def token_ce(logits):
    return logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1)


def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


loaded_rss = status_mb("VmRSS:")
# the peak of the training steps, not of loading the checkpoint (writing 5 resets VmHWM)
try:
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
if a.mode == "hooks":
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
    m = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    opt = DPOptimizer(opt0, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=B,
                      loss_reduction="sum")

    def step():
        x, y = token_ce(m(input_ids=ids).logits)
        nn.functional.cross_entropy(x, y, reduction="none").view(B, -1).sum(1).sum().backward()
        opt.step()
        opt.zero_grad()
elif a.mode == "ghost":
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
    m = GradSampleModuleFastGradientClipping(model, batch_first=True, loss_reduction="sum",
                                             max_grad_norm=1.0, use_ghost_clipping=True)
    opt = DPOptimizerFastGradientClipping(opt0, noise_multiplier=1.0, max_grad_norm=1.0,
                                          expected_batch_size=B, loss_reduction="sum")
    crit = DPLossFastGradientClipping(m, opt, nn.CrossEntropyLoss(reduction="sum"),
                                      loss_reduction="sum")

    def step():
        x, y = token_ce(m(input_ids=ids).logits)
        crit(x, y, shape=(B, T - 1)).backward()
        opt.step()
        opt.zero_grad()
else:
    def step():
        x, y = token_ce(model(input_ids=ids).logits)
        nn.functional.cross_entropy(x, y, reduction="none").view(B, -1).sum(1).mean().backward()
        opt0.step()
        opt0.zero_grad()

lora_b = next(t for n, t in model.named_parameters() if "lora_B" in n)
before = lora_b.detach().clone()
times = []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    step()
    if i >= a.warmup:
        times.append((time.perf_counter() - t0) * 1e3)
assert not torch.equal(before, lora_b.detach()), "the LoRA weights did not move (opacus#820)"
median = statistics.median(times)
print(json.dumps({
    "impl": "opacus" if a.mode != "nonprivate" else "pytorch", "mode": a.mode, "batch": B,
    "seq": T, "rank": a.rank, "threads": a.threads, "step_ms": times, "median_ms": median,
    "tokens_per_second": B * T / (median / 1e3),
    "peak_rss_mb": status_mb("VmHWM:"),
    "loaded_rss_mb": loaded_rss,
}))
