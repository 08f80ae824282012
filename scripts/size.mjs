// npm run size: what a user downloads, gzipped (level 9). The default entry embeds every kernel
// build; the workerd entry imports two .wasm files beside it. Budget: 100 KB for the default entry.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const BUDGET = 100 * 1024;
const gz = (files) => files.reduce((n, f) => n + gzipSync(readFileSync(new URL(`../dist/${f}`, import.meta.url)), { level: 9 }).length, 0);
export const sizes = {
  "default entry (index.js, 4 kernel builds embedded)": gz(["index.js"]),
  "workerd entry + kernels.wasm + kernels-relaxed.wasm": gz(["workerd.js", "kernels.wasm", "kernels-relaxed.wasm"]),
  "kernels.wasm alone": gz(["kernels.wasm"]),
};

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const [what, bytes] of Object.entries(sizes)) console.log(`${(bytes / 1024).toFixed(1).padStart(6)} KB  ${what}`);
  const main = Object.values(sizes)[0];
  console.log(main <= BUDGET ? `within the ${BUDGET / 1024} KB budget` : `OVER the ${BUDGET / 1024} KB budget`);
  process.exit(main <= BUDGET ? 0 : 1);
}
