"""Trains the tiny Llama of examples/tiny-lm on examples/tiny-lm/corpus.md (the attention explainer
this project started from), one character a token, and writes it as Hugging Face writes a
LlamaForCausalLM: model.safetensors with HF's key names, config.json, and vocab.json (the
characters, in id order).

The model's forward is the plain-torch Llama of scripts/fixtures_decoders.py (which follows
Hugging Face's modeling_llama.py function by function), run in float32 with autograd: the file
holds exactly the weights the reference computes with.

    /usr/bin/python3 scripts/train-tiny-lm.py            # ~2-4 minutes on 2 cores
"""
import json
import math
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from fixtures_decoders import causal_lm_forward, llama_config  # noqa: E402
from fixtures_encoders import write_safetensors  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "tiny-lm"
STEPS = int(os.environ.get("STEPS", 500))
CONTEXT = 128
BATCH = int(os.environ.get("BATCH", 16))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    text = open(os.path.join(HERE, "corpus.md"), encoding="utf-8").read()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    cfg = llama_config(
        vocab_size=len(chars), hidden_size=96, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
    )
    H, I, V, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["head_dim"]
    nq, nkv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        shapes.update({
            pre + "self_attn.q_proj.weight": (nq, H), pre + "self_attn.k_proj.weight": (nkv, H),
            pre + "self_attn.v_proj.weight": (nkv, H), pre + "self_attn.o_proj.weight": (H, nq),
            pre + "mlp.gate_proj.weight": (I, H), pre + "mlp.up_proj.weight": (I, H), pre + "mlp.down_proj.weight": (H, I),
            pre + "input_layernorm.weight": (H,), pre + "post_attention_layernorm.weight": (H,),
        })
    p = {}
    for name, shape in shapes.items():
        t = torch.ones(shape) if name.endswith("norm.weight") else torch.randn(shape) / math.sqrt(shape[-1])
        p[name] = t.requires_grad_(True)
    opt = torch.optim.AdamW(p.values(), lr=3e-3, weight_decay=0.01)
    t0 = time.time()
    for step in range(STEPS):
        lr = 3e-3 * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * step / STEPS)))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(ids) - CONTEXT - 1, (BATCH,))
        x = torch.stack([ids[s:s + CONTEXT] for s in starts])
        y = torch.stack([ids[s + 1:s + CONTEXT + 1] for s in starts])
        logits = causal_lm_forward(p, cfg, x, dtype=torch.float32)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == STEPS - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  ({time.time() - t0:.0f} s)", flush=True)
    state = {k: (v.detach().float(), "F32") for k, v in p.items()}
    write_safetensors(HERE / "model.safetensors", state)
    with open(os.path.join(HERE, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(HERE, "vocab.json"), "w") as f:
        json.dump(chars, f, ensure_ascii=False)
        f.write("\n")
    # the same model greedily continues a prompt: what the example must print too
    prompt = "Attention "
    seq = [chars.index(c) for c in prompt]
    with torch.no_grad():
        for _ in range(80):
            logits = causal_lm_forward({k: v.detach() for k, v in p.items()}, cfg, torch.tensor([seq]), dtype=torch.float32)
            seq.append(int(logits[0, -1].argmax()))
    sample = "".join(chars[i] for i in seq)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump({"prompt": prompt, "greedy80": sample}, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(repr(sample))


if __name__ == "__main__":
    main()
