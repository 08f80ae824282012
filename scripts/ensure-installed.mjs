// Installs the dev dependencies (npm ci) when node_modules is missing or older than the lockfile,
// so that `npm test` works on a fresh clone with nothing installed yet. Node builtins only.
import { execSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const installed = join(root, "node_modules/.package-lock.json");
const lock = join(root, "package-lock.json");
if (!existsSync(installed) || statSync(lock).mtimeMs > statSync(installed).mtimeMs) {
  console.log("Installing the dev dependencies (npm ci)...");
  execSync("npm ci --no-audit --no-fund", { cwd: root, stdio: "inherit" });
}
