// npm run fuzz: the property tests (test/properties.test.ts) with many runs and a fresh seed, printed
// before and after the run so that a failure can be replayed. FUZZ_SEED and FUZZ_RUNS choose both.
// (A seed from the shell's $RANDOM would be empty: npm runs scripts with sh, which is dash on Debian.)
import { spawnSync } from "node:child_process";
import { randomInt } from "node:crypto";

const root = new URL("..", import.meta.url).pathname;
const seed = process.env.FUZZ_SEED || String(randomInt(2 ** 31));
const runs = process.env.FUZZ_RUNS || "3000";
const replay = `FUZZ_SEED=${seed} FUZZ_RUNS=${runs} npm run fuzz`;

console.log(`fuzz: FUZZ_SEED=${seed} FUZZ_RUNS=${runs}`);
const vitest = spawnSync(process.execPath, ["node_modules/vitest/vitest.mjs", "run", "test/properties.test.ts", ...process.argv.slice(2)], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, FUZZ_SEED: seed, FUZZ_RUNS: runs },
});
const code = vitest.status ?? 1;
console.log(
  code === 0 ? `fuzz: passed with FUZZ_SEED=${seed} FUZZ_RUNS=${runs}` : `fuzz: FAILED with FUZZ_SEED=${seed} FUZZ_RUNS=${runs}; replay: ${replay}`,
);
process.exit(code);
