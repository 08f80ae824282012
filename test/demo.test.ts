// The demo model: its numbers equal PyTorch's (examples/pronoun/expected.json, written by
// scripts/train-demo.py), and `npm start` shows "it" resolving to mat, then to cat.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { beforeAll, expect, test } from "vitest";
import { init } from "wasm-attention";
// @ts-expect-error: a plain .mjs example without declarations
import { createPronounModel } from "../examples/pronoun/model.mjs";
import { expectClose } from "./reference.js";

interface Expected {
  words: string[];
  scores: number[];
  referent: string;
  weights: number[][][][]; // [layer][head][L][L]
}

const dir = new URL("../examples/pronoun/", import.meta.url);
const expected: Expected[] = JSON.parse(readFileSync(new URL("expected.json", dir), "utf8"));
let model: { predict(s: string): { words: string[]; referent: string; probs: number[]; weights: { data: Float32Array }[] } };

beforeAll(async () => {
  await init();
  model = createPronounModel(readFileSync(new URL("model.safetensors", dir)), JSON.parse(readFileSync(new URL("vocab.json", dir), "utf8")));
});

for (const e of expected) {
  test(`equals PyTorch on "${e.words.join(" ")}" (it = ${e.referent})`, () => {
    const r = model.predict(e.words.join(" "));
    expect(r.words).toEqual(e.words);
    expect(r.referent).toBe(e.referent);
    const max = Math.max(...e.scores);
    const exps = e.scores.map((s) => Math.exp(s - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    expectClose(
      r.probs,
      exps.map((x) => x / sum),
      [e.words.length],
      { atol: 1e-5, rtol: 1e-4 },
      "pointer",
    );
    e.weights.forEach((layer, i) => {
      const L = e.words.length;
      expectClose(r.weights[i].data, layer.flat(2), [layer.length, L, L], { atol: 1e-5, rtol: 1e-4 }, `layer ${i + 1} weights`);
    });
  });
}

test("npm start resolves it to mat, then to cat", () => {
  const out = execFileSync(process.execPath, ["examples/demo.mjs", "--svg", "test-results/attention.svg"], {
    cwd: new URL("..", import.meta.url),
    encoding: "utf8",
  });
  const answers = [...out.matchAll(/"it" refers to: (\w+)/g)].map((m) => m[1]);
  expect(answers).toEqual(["MAT", "CAT"]);
  expect(readFileSync(new URL("../test-results/attention.svg", import.meta.url), "utf8")).toContain("<svg");
});
