"""Tiny random Llama and Qwen2 checkpoints with transformers' own logits, made offline.

Usage: python tiny_llms.py OUT_DIR

Each model directory is what `save_pretrained` writes (config.json, safetensors weights,
tokenizer.json, tokenizer_config.json, chat_template.jinja) plus `reference.safetensors`: token
ids and transformers' f32 logits for a plain text and a chat rendered with the template, and
`reference.json` with the texts. The Rust decoder must reproduce those logits (1e-4).

Variants, chosen to cover what decides whether logits match:
- llama3-tied: llama3 RoPE scaling (all three frequency bands), grouped-query attention, tied
  embeddings; its config is rewritten in the legacy form (top-level `rope_theta`, `rope_scaling`)
  as `llama3-legacy-config`, which must give the same logits.
- qwen2-tied-bias: q/k/v biases, tied embeddings, saved in shards with an index.
- llama-untied-bias-headdim: attention and MLP biases (o_proj too), an explicit head_dim that is
  not hidden/heads, a single kv head, an untied lm_head.
Norm weights and biases are perturbed: their default init (1 and 0) would hide bugs.
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM)

OUT = sys.argv[1]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
            "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
            "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CHAT = [{"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"}]


def tiny_tokenizer(vocab_size=384):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["Hello world, this is a tiny corpus for a tiny tokenizer.",
              "The quick brown fox jumps over the lazy dog 0123456789.",
              "user assistant system: what is the capital of France? Paris."] * 50
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>", chat_template=TEMPLATE)


@torch.no_grad()
def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if name.endswith("norm.weight"):
            p.copy_(1.0 + 0.2 * noise)
        elif name.endswith(".bias"):
            p.copy_(0.1 * noise)
        else:
            p.copy_(noise * (1.0 / p.shape[-1] ** 0.5))


@torch.no_grad()
def build(name, model, tok, seed, **save):
    d = os.path.join(OUT, name)
    perturb(model, seed)
    model.eval().save_pretrained(d, **save)
    tok.save_pretrained(d)
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    t = AutoTokenizer.from_pretrained(d)
    chat = t.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    out, texts = {}, {"plain": "Hello world, the quick brown fox 42.", "chat": chat}
    for k, text in texts.items():
        ids = t(text, add_special_tokens=(k == "plain")).input_ids
        x = torch.tensor([ids])
        out[f"{k}.input_ids"] = x[0].to(torch.int64).contiguous()
        out[f"{k}.logits"] = m(x).logits[0].contiguous()
    # a right-padded batch of two: the second row's real tokens must not see the padding
    a, b = out["plain.input_ids"], out["chat.input_ids"][:7]
    batch = torch.full((2, len(a)), 2, dtype=torch.int64)
    batch[0], batch[1, :len(b)] = a, b
    out["batch.input_ids"] = batch
    out["batch.logits"] = m(batch).logits.contiguous()
    out["batch.lengths"] = torch.tensor([len(a), len(b)], dtype=torch.int64)
    save_file(out, os.path.join(d, "reference.safetensors"))
    json.dump({"texts": texts, "messages": CHAT}, open(os.path.join(d, "reference.json"), "w"), indent=1)
    return d


def legacy_copy(src, dst):
    """The same model with its RoPE settings written the way pre-5 transformers wrote them."""
    shutil.copytree(src, dst)
    path = os.path.join(dst, "config.json")
    cfg = json.load(open(path))
    rope = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rope.pop("rope_theta")
    rope["type"] = rope.pop("rope_type")
    cfg["rope_scaling"] = rope
    json.dump(cfg, open(path, "w"), indent=2)


if __name__ == "__main__":
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    V = len(tok)
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2))
    d = build("llama3-tied", llama, tok, seed=1)
    legacy_copy(d, os.path.join(OUT, "llama3-legacy-config"))
    qwen = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=V, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
        rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=None, eos_token_id=2))
    build("qwen2-tied-bias", qwen, tok, seed=2, max_shard_size="40KB")
    llama_u = LlamaForCausalLM(LlamaConfig(
        vocab_size=V, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=3,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=128, rope_theta=10000.0,
        attention_bias=True, mlp_bias=True, tie_word_embeddings=False, eos_token_id=2))
    build("llama-untied-bias-headdim", llama_u, tok, seed=3)
    print(json.dumps(sorted(os.listdir(OUT))))
