// npm start: self-attention over the seed's sentence with the public API.
// The word vectors are fixed pseudo-random ones (no trained weights yet), so this shows the
// mechanics and the timing: each word's query meets every word's key, softmax, weighted values.
import { init, scaledDotProductAttention, tensor } from "../dist/index.js";

const sentence = "The cat sat on the mat because it was comfortable";
const words = sentence.split(" ");
const E = 16;

function wordVector(word) {
  let s = [...word.toLowerCase()].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261) >>> 0;
  return Array.from({ length: E }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

await init();
const x = tensor(words.flatMap(wordVector), [1, words.length, E]);
const t0 = performance.now();
const { weights } = scaledDotProductAttention(x, x, x, { returnWeights: true });
const ms = performance.now() - t0;

console.log(`"${sentence}"\n`);
for (const [i, word] of words.entries()) {
  const row = Array.from(weights.data.subarray(i * words.length, (i + 1) * words.length));
  const j = row.indexOf(Math.max(...row));
  console.log(`${word.padEnd(12)} attends most to ${words[j].padEnd(12)} (${(row[j] * 100).toFixed(1)}%)`);
}
console.log(`\nself-attention over ${words.length} words: ${ms.toFixed(3)} ms`);
