// Before the unit tier (npm run test:unit) and the fuzz run: compiles the kernel builds (the
// targets of asconfig.json, into build/) when one is missing or older than the kernel sources. The
// unit tests import src/ itself and their child processes a fresh bundle of it (test/support/child.ts),
// so a change to src/ needs no build, and a type error in src/ that would stop `npm run build` does
// not stop them. One exception reads dist/: test/support/forgotten.mjs (test/memory.test.ts); a
// missing dist/ is built, an older one is said. `npm test` rebuilds everything (scripts/ensure-built.mjs).
import { execSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
process.chdir(root);
const targets = JSON.parse(readFileSync("asconfig.json", "utf8")).targets;
const kernels = Object.values(targets).map((t) => t.outFile);

function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))));
}
const stale = (outputs, sources) =>
  outputs.some((f) => !existsSync(f)) || Math.max(...sources.map(newest)) > Math.min(...outputs.map((f) => statSync(f).mtimeMs));

if (!existsSync("dist/index.js")) {
  execSync("npm run build", { stdio: "inherit" });
} else {
  if (stale(kernels, ["assembly", "asconfig.json"])) {
    // one asc process for every target: each start costs seconds
    const { default: asc } = await import("assemblyscript/asc");
    for (const target of Object.keys(targets)) {
      const { error, stderr } = await asc.main(["--config", "asconfig.json", "--target", target]);
      if (error) {
        console.error(stderr.toString());
        process.exit(1);
      }
    }
    console.log(`compiled ${kernels.join(", ")}`);
  }
  if (stale(["dist/index.js"], ["src", ...kernels]))
    console.log(
      "note: dist/ is older than src/ or build/; only test/support/forgotten.mjs (test/memory.test.ts) reads it; `npm run build` refreshes it",
    );
}
