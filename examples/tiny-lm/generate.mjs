// A small Llama-style model, trained by scripts/train-tiny-lm.py on this project's attention
// explainer (corpus.md), one character a token, continues a prompt in the terminal as it writes.
//   node examples/tiny-lm/generate.mjs "Attention " [--tokens 200] [--temperature 0.8 --seed 1]
// (after npm run build). It is a Hugging Face LlamaForCausalLM checkpoint: config.json and
// model.safetensors load with CausalLM.fromConfig(...).loadStateDict(...).
import { readFileSync } from "node:fs";
import { CausalLM, init, loadSafetensors } from "../../dist/index.js";
import { decode, encode } from "./chars.mjs";

const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(`--${name}`) ? Number(args[args.indexOf(`--${name}`) + 1]) : fallback);
const prompt = args.find((a, i) => !a.startsWith("--") && !args[i - 1]?.startsWith("--")) ?? "Attention ";
const here = new URL("./", import.meta.url);
const read = (name) => readFileSync(new URL(name, here));

await init();
const vocab = JSON.parse(read("vocab.json"));
const model = CausalLM.fromConfig(JSON.parse(read("config.json"))).loadStateDict(loadSafetensors(read("model.safetensors")));
process.stdout.write(prompt);
const started = performance.now();
const tokens = model.generate(encode(vocab, prompt), {
  maxNewTokens: flag("tokens", 200),
  temperature: flag("temperature", 0),
  seed: flag("seed", 0),
  // one character a step, written as it comes
  onToken: (ids) => process.stdout.write(decode(vocab, ids)),
});
const seconds = (performance.now() - started) / 1000;
process.stdout.write(`\n\n[${tokens.length} tokens in ${seconds.toFixed(2)} s: ${(tokens.length / seconds).toFixed(0)} tokens/s]\n`);
model.dispose();
