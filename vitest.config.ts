import { existsSync, readFileSync } from "node:fs";
import { defineConfig } from "vitest/config";

// Two tiers. `slow`: the files below, which start browsers, other runtimes, npm pack or worker
// threads, make 10,000 calls or survey every argument. `unit`: every other test file, new ones
// included, for an answer in seconds: `npm run test:unit` runs it, and also skips the tests whose
// names start with "10,000" (calls repeated to show that memory stays flat; test/soak.test.ts
// repeats every public call). `npm test` runs everything.
const SLOW = [
  "test/browser.test.ts", // headless Chromium
  "test/playground.test.ts", // headless Chromium
  "test/runtimes.test.ts", // Deno, Bun, workerd, the edge runtime
  "test/examples.test.ts", // the examples in Node, Deno and workerd
  "test/package.test.ts", // npm pack, publint, attw
  "test/consumer.test.ts", // npm pack into a fresh TypeScript project, tsc under three resolutions
  "test/browser-package.test.ts", // npm pack, esbuild and Vite builds of a page, the worker API, in Chromium
  "test/docs-run.test.ts", // every code block of README.md and docs/API.md, in Node and Chromium
  "test/demo.test.ts", // the demo model and `npm start` in a child Node
  "test/soak.test.ts", // 10,000 calls of every function
  "test/threads.test.ts", // worker pools started and killed; a dead worker's 500 ms timeout, twice
  "test/hardening-threads.test.ts", // worker pools at batches of hundreds of sequences
  "test/hostile.test.ts", // every function x argument x kind of lie, and a property test over them
  "test/hardening-misc.test.ts", // a fresh copy of the library for each of its 63 tests
];
// a renamed slow file would land in the unit tier: say so
for (const file of SLOW)
  if (!existsSync(new URL(file, import.meta.url))) console.warn(`vitest.config.ts: the slow tier lists ${file}, which does not exist`);

export default defineConfig({
  plugins: [
    {
      // under vitest a .wasm import would be undefined; give it the bytes, as esbuild's binary loader does
      name: "wasm-bytes",
      enforce: "pre",
      load(id) {
        if (!id.endsWith(".wasm")) return null;
        const base64 = readFileSync(id).toString("base64");
        return `export default Uint8Array.from(atob("${base64}"), (c) => c.charCodeAt(0));`;
      },
    },
  ],
  test: {
    setupFiles: ["test/setup.ts"],
    testTimeout: 60_000,
    projects: [
      { extends: true, test: { name: "unit", include: ["test/**/*.test.ts"], exclude: SLOW } },
      { extends: true, test: { name: "slow", include: SLOW } },
    ],
  },
});
