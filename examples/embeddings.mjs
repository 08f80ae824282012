// Sentence embeddings with a Hugging Face BERT checkpoint: tokens -> EncoderModel -> mean pooling
// -> cosine similarities.
//   node examples/embeddings.mjs   (after npm run build)
//
// The model is the tiny BERT of the test fixtures (test/fixtures/encoders/bert-f32.*, written by
// scripts/fixtures_encoders.py): its weights are RANDOM, so the similarities below show the
// plumbing, not meaning. For real embeddings, point `dir` at a sentence-transformers BERT model
// (config.json, model.safetensors) and replace `tokenize` with its WordPiece tokenizer.
import { readFileSync } from "node:fs";
import { EncoderModel, init, loadSafetensors, meanPool } from "../dist/index.js";

const dir = new URL("../test/fixtures/encoders/", import.meta.url);
await init();
const config = JSON.parse(readFileSync(new URL("bert-f32.config.json", dir), "utf8"));
const model = EncoderModel.fromConfig(config).loadStateDict(loadSafetensors(readFileSync(new URL("bert-f32.safetensors", dir))));

// a word-level vocabulary that fits the model's 61 ids: 0 padding, 1 unknown, 2 [CLS], 3 [SEP]
const words = "the a cat dog sat lay on mat rug stocks market fell dropped sharply this today morning".split(" ");
const vocab = new Map(words.map((w, i) => [w, 4 + i]));
const tokenize = (s) => [
  2,
  ...s
    .toLowerCase()
    .split(/\W+/)
    .filter(Boolean)
    .map((w) => vocab.get(w) ?? 1),
  3,
];

const sentences = ["The cat sat on the mat", "A dog lay on a rug", "Stocks fell sharply today", "The market dropped this morning"];
// a right-padded batch [B, L] and its attention mask (1 = real token, 0 = padding)
const tokens = sentences.map(tokenize);
const L = Math.max(...tokens.map((t) => t.length));
const ids = new Int32Array(sentences.length * L);
const mask = new Uint8Array(sentences.length * L);
tokens.forEach((t, b) => {
  ids.set(t, b * L);
  mask.fill(1, b * L, b * L + t.length);
});
const attentionMask = { data: mask, shape: [sentences.length, L] };

const hidden = model.forward({ data: ids, shape: [sentences.length, L] }, { attentionMask }); // [B, L, 36]
const embeddings = meanPool(hidden, attentionMask); // [B, 36]
const H = embeddings.shape[1];
const row = (b) => embeddings.data.subarray(b * H, (b + 1) * H);
const cosine = (x, y) => {
  let xy = 0,
    xx = 0,
    yy = 0;
  for (let i = 0; i < x.length; i++) [xy, xx, yy] = [xy + x[i] * y[i], xx + x[i] * x[i], yy + y[i] * y[i]];
  return xy / Math.sqrt(xx * yy);
};

console.log(
  `embeddings ${JSON.stringify(embeddings.shape)} from last_hidden_state ${JSON.stringify(hidden.shape)} (random weights: the numbers show the plumbing, not meaning)`,
);
console.log("cosine similarities:");
sentences.forEach((s, a) => console.log(`${sentences.map((_, b) => cosine(row(a), row(b)).toFixed(3).padStart(7)).join("")}  ${s}`));
model.dispose();
