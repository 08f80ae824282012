// A Worker with three routes, on the package's "workerd" entry (it imports the kernels as a
// WebAssembly module, so init() needs no argument; the model files are imported as modules, see
// wrangler.toml):
//   GET /?words=4             causal self-attention over that many positions, as JSON
//   GET /embed?text=a|b|c     sentence embeddings of a Hugging Face BERT checkpoint and their cosines
//   GET /generate?prompt=...  the tiny LM of examples/tiny-lm continuing a prompt, streamed a character at a time
import { CausalLM, EncoderModel, init, loadSafetensors, meanPool, scaledDotProductAttention, tensor } from "wasm-attention";
import bertConfig from "../../../test/fixtures/encoders/bert-f32.config.json";
import bertWeights from "../../../test/fixtures/encoders/bert-f32.safetensors";
import lmConfig from "../../tiny-lm/config.json";
import lmWeights from "../../tiny-lm/model.safetensors";
import lmVocab from "../../tiny-lm/vocab.json";
import { continuation, encode } from "../../tiny-lm/chars.mjs";

// loaded on first use and kept for the isolate's life
let bert = null;
let lm = null;

export default {
  async fetch(request) {
    await init();
    const url = new URL(request.url);
    if (url.pathname === "/embed") return embed(url.searchParams.get("text") ?? "the cat sat|a dog lay");
    if (url.pathname === "/generate")
      return generate(url.searchParams.get("prompt") ?? "Attention ", Math.min(400, Number(url.searchParams.get("tokens") ?? 120)));
    const L = Math.min(64, Number(url.searchParams.get("words") ?? 4));
    const x = tensor(
      Float32Array.from({ length: L * 8 }, (_, i) => Math.sin(i * 0.37)),
      [1, L, 8],
    );
    const { output, weights } = scaledDotProductAttention(x, x, x, { isCausal: true, returnWeights: true });
    return Response.json({ shape: output.shape, lastRowWeights: Array.from(weights.data.subarray((L - 1) * L)) });
  },
};

// the tiny BERT of the test fixtures has random weights: the cosines show the plumbing, not meaning
function embed(text) {
  bert ??= EncoderModel.fromConfig(bertConfig).loadStateDict(loadSafetensors(new Uint8Array(bertWeights)));
  const sentences = text.split("|");
  // ids 2 and 3 frame each sentence ([CLS], [SEP]); a word's id from its characters, within the 61 the model has
  const tokens = sentences.map((s) => [
    2,
    ...s
      .toLowerCase()
      .split(/\W+/)
      .filter(Boolean)
      .map((w) => 4 + ([...w].reduce((h, c) => h * 31 + c.charCodeAt(0), 7) % 57)),
    3,
  ]);
  const L = Math.max(...tokens.map((t) => t.length));
  const ids = new Int32Array(sentences.length * L);
  const mask = new Uint8Array(sentences.length * L);
  tokens.forEach((t, b) => {
    ids.set(t, b * L);
    mask.fill(1, b * L, b * L + t.length);
  });
  const attentionMask = { data: mask, shape: [sentences.length, L] };
  const e = meanPool(bert.forward({ data: ids, shape: [sentences.length, L] }, { attentionMask }), attentionMask);
  const H = e.shape[1];
  const row = (b) => e.data.subarray(b * H, (b + 1) * H);
  const dot = (x, y) => x.reduce((s, v, i) => s + v * y[i], 0);
  const cosines = sentences.map((_, a) => sentences.map((_, b) => dot(row(a), row(b)) / Math.sqrt(dot(row(a), row(a)) * dot(row(b), row(b)))));
  return Response.json({ shape: e.shape, cosines });
}

// a stream that computes each character when the client is ready for it
function generate(prompt, tokens) {
  lm ??= CausalLM.fromConfig(lmConfig).loadStateDict(loadSafetensors(new Uint8Array(lmWeights)));
  try {
    encode(lmVocab, prompt);
  } catch (error) {
    return new Response(String(error.message), { status: 400 });
  }
  const chars = continuation(lm, lmVocab, prompt, tokens);
  const encoder = new TextEncoder();
  const body = new ReadableStream({
    pull(controller) {
      const { value, done } = chars.next();
      if (done) controller.close();
      else controller.enqueue(encoder.encode(value));
    },
    cancel() {
      chars.return();
    },
  });
  return new Response(body, { headers: { "content-type": "text/plain; charset=utf-8" } });
}
