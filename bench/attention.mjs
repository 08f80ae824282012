// npm run bench: scaledDotProductAttention at B=1, H=12, d=64: median time and GFLOP/s
// (4*B*H*Lq*Lk*d flops; half of that for causal).
import { init, scaledDotProductAttention } from "../dist/index.js";
import { measure, randomTensor, table } from "./harness.mjs";

await init();
const H = 12;
const d = 64;
const cases = [
  ...[128, 512, 2048].flatMap((L) => [
    { name: `attention L=${L}`, Lq: L, Lk: L, causal: false },
    { name: `attention L=${L} causal`, Lq: L, Lk: L, causal: true },
  ]),
  { name: "decode step Lq=1, Lk=4096", Lq: 1, Lk: 4096, causal: false },
];

const rows = [];
for (const c of cases) {
  const q = randomTensor([1, H, c.Lq, d], 1);
  const k = randomTensor([1, H, c.Lk, d], 2);
  const v = randomTensor([1, H, c.Lk, d], 3);
  const { median, runs } = measure(() => scaledDotProductAttention(q, k, v, { isCausal: c.causal }), { runs: c.Lq >= 2048 ? 7 : 21 });
  const flops = (4 * H * c.Lq * c.Lk * d) / (c.causal ? 2 : 1);
  rows.push({ case: c.name, "median ms": median.toFixed(3), "GFLOP/s": (flops / median / 1e6).toFixed(1), runs });
  console.error(`${c.name}: ${median.toFixed(3)} ms`);
}
console.log(table(rows, ["case", "median ms", "GFLOP/s", "runs"]));
