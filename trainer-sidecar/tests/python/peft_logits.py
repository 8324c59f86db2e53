"""Load a base checkpoint and a PEFT LoRA adapter the way users do, and write the logits.

Usage: python peft_logits.py BASE_DIR ADAPTER_DIR IDS_JSON OUT.safetensors

IDS_JSON is a list of token-id lists (one row each, equal lengths). Writes `logits` [B, T, V]
(f32) and `merged_logits` (the same after `merge_and_unload`, an independent path through the
adapter's weights). Any warning but a deprecation notice (a missing or unexpected adapter key
is only a warning in PEFT) is an error here, and the adapter's tensor names must all be used.
"""
import json
import sys
import warnings

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

base_dir, adapter_dir, ids_path, out = sys.argv[1:5]
ids = torch.tensor(json.load(open(ids_path)), dtype=torch.int64)
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
with warnings.catch_warnings():
    warnings.simplefilter("error")
    # transformers' own deprecation notices are not about the adapter
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
# every tensor of the file landed on a module
state = {k for k in model.state_dict() if "lora_" in k}
saved = set(load_file(f"{adapter_dir}/adapter_model.safetensors"))
expected = {k.replace(".default.weight", ".weight") for k in state}
if saved != expected:
    raise SystemExit(f"adapter keys differ: only in file {sorted(saved - expected)[:3]}, "
                     f"only in model {sorted(expected - saved)[:3]}")
with torch.no_grad():
    logits = model(input_ids=ids).logits.float().contiguous()
    merged = model.merge_and_unload()(input_ids=ids).logits.float().contiguous()
save_file({"logits": logits, "merged_logits": merged}, out)
print(json.dumps({"shape": list(logits.shape)}))
