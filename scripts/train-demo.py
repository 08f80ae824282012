"""Trains the demo model: who is "it" in "The cat sat on the mat because it was comfortable"?

Run with Debian's torch (apt-get install python3-torch): /usr/bin/python3 scripts/train-demo.py
Writes examples/pronoun/model.safetensors, vocab.json and expected.json (torch's float64 outputs
for the demo sentences, which test/demo.test.ts compares with ours).

The task is synthetic: "The <animal> <verb> on the <object> because it was <adjective>". "it" is
the animal when the adjective fits an animal (tired, hungry...) and the object when it fits an
object (comfortable, soft...). A 2-layer post-LN transformer encoder reads the sentence; a pointer
head scores every position against "it" (one attention row) and the best score is the referent.
Every sentence with cat and mat is held out of training: the demo's sentences are unseen.
"""
import itertools
import json
import math
import pathlib
import random
import struct

import torch
from torch import nn

torch.manual_seed(0)
random.seed(0)
torch.set_num_threads(2)
OUT = pathlib.Path(__file__).resolve().parent.parent / "examples" / "pronoun"

ANIMALS = ["cat", "dog", "bird", "kitten", "puppy", "rabbit", "mouse", "fox", "hamster", "parrot"]
OBJECTS = ["mat", "rug", "sofa", "bed", "chair", "box", "pillow", "blanket", "bench", "carpet"]
VERBS = ["sat", "lay", "slept", "jumped"]
ANIMAL_ADJ = ["tired", "hungry", "sleepy", "happy", "scared", "lazy"]
OBJECT_ADJ = ["comfortable", "soft", "warm", "cozy", "clean", "smooth"]
VOCAB = ["<pad>", "the", "on", "because", "it", "was"] + ANIMALS + OBJECTS + VERBS + ANIMAL_ADJ + OBJECT_ADJ
INDEX = {w: i for i, w in enumerate(VOCAB)}
D, HEADS, FF, LAYERS, MAX_LEN = 32, 4, 64, 2, 16


def sentence(animal, verb, obj, adj):
    return f"the {animal} {verb} on the {obj} because it was {adj}".split()


class PronounModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), D)
        self.pos = nn.Embedding(MAX_LEN, D)
        layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.pointer_q = nn.Linear(D, D)
        self.pointer_k = nn.Linear(D, D)

    def forward(self, tokens, it):
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1]))
        h = self.encoder(x)
        q = self.pointer_q(h[torch.arange(len(it)), it])  # [B, D]
        k = self.pointer_k(h)  # [B, L, D]
        return (k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(D)  # [B, L]: one attention row


def batch(examples):
    tokens = torch.tensor([[INDEX[w] for w in s] for s, _ in examples])
    it = torch.tensor([s.index("it") for s, _ in examples])
    target = torch.tensor([t for _, t in examples])
    return tokens, it, target


data, held_out = [], []
for animal, verb, obj, adj in itertools.product(ANIMALS, VERBS, OBJECTS, ANIMAL_ADJ + OBJECT_ADJ):
    s = sentence(animal, verb, obj, adj)
    example = (s, s.index(animal) if adj in ANIMAL_ADJ else s.index(obj))
    (held_out if (animal, obj) == ("cat", "mat") else data).append(example)

model = PronounModel()
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
for epoch in range(12):
    random.shuffle(data)
    for i in range(0, len(data), 64):
        tokens, it, target = batch(data[i : i + 64])
        loss = nn.functional.cross_entropy(model(tokens, it), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = lambda ex: (model(*batch(ex)[:2]).argmax(-1) == batch(ex)[2]).float().mean().item()
        print(f"epoch {epoch}: loss {loss.item():.4f}, train {acc(data):.3f}, held out (cat/mat) {acc(held_out):.3f}")

OUT.mkdir(parents=True, exist_ok=True)
state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
header, blobs, offset = {"__metadata__": {"format": "pt", "task": "pronoun referent"}}, [], 0
for name, t in state.items():
    raw = t.numpy().tobytes()
    header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
    blobs.append(raw)
    offset += len(raw)
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
(OUT / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
config = {"vocab": VOCAB, "dModel": D, "nhead": HEADS, "dimFeedforward": FF, "numLayers": LAYERS, "maxLength": MAX_LEN}
(OUT / "vocab.json").write_text(json.dumps(config, indent=1) + "\n")

# torch's own numbers for the demo sentences, in float64: pointer scores and every layer's weights
model = model.double().eval()
expected = []
for words in (sentence("cat", "sat", "mat", "comfortable"), sentence("cat", "sat", "mat", "tired")):
    tokens, it, _ = batch([(words, 0)])
    x = model.embed(tokens) + model.pos(torch.arange(len(words)))
    layers = []
    for layer in model.encoder.layers:
        _, w = layer.self_attn(x, x, x, need_weights=True, average_attn_weights=False)
        layers.append(w[0].tolist())
        x = layer(x)
    scores = model(tokens, it)[0]
    expected.append({"words": words, "scores": scores.tolist(), "referent": words[scores.argmax().item()], "weights": layers})
    print(" ".join(words), "->", expected[-1]["referent"])
(OUT / "expected.json").write_text(json.dumps(expected) + "\n")
print(f"wrote {OUT}/model.safetensors ({(OUT / 'model.safetensors').stat().st_size} bytes)")
