// Runs `npm run build` when dist/ is missing or older than any source of it.
import { existsSync, readdirSync, statSync } from "node:fs";
import { execSync } from "node:child_process";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const outputs = [
  "dist/index.js",
  "dist/workerd.js",
  "dist/edge-light.js",
  ...["", "-relaxed", "-threads", "-relaxed-threads"].flatMap((b) => [`dist/kernels${b}.wasm`, `build/kernels${b}.wasm`]),
].map((f) => join(root, f));
const sources = ["assembly", "src", "asconfig.json", "scripts/build.mjs"].map((f) => join(root, f));

function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name))));
}

const stale = outputs.some((f) => !existsSync(f)) || Math.max(...sources.map(newest)) > Math.min(...outputs.map((f) => statSync(f).mtimeMs));
if (stale) execSync("npm run build", { cwd: root, stdio: "inherit" });
