// npm run build: kernels (AssemblyScript -> build/*.wasm), then the package (esbuild -> dist/index.js
// with the wasm embedded, tsc -> dist/*.d.ts, and the raw wasm as dist/kernels.wasm).
import { copyFile, mkdir, rm } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import asc from "assemblyscript/asc";
import { build } from "esbuild";

const root = new URL("..", import.meta.url).pathname;
process.chdir(root);

// one asc process for every target: each start costs seconds
const targets = ["baseline", "relaxed", "threads", "relaxed-threads"];
for (const target of targets) {
  const { error, stderr } = await asc.main(["--config", "asconfig.json", "--target", target]);
  if (error) {
    console.error(stderr.toString());
    throw error;
  }
}

await rm("dist", { recursive: true, force: true });
await mkdir("dist");
await build({
  entryPoints: ["src/index.ts"],
  outfile: "dist/index.js",
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  loader: { ".wasm": "binary" },
  minify: false,
  legalComments: "none",
});
await copyFile("build/kernels.wasm", "dist/kernels.wasm");
for (const t of targets.slice(1)) await copyFile(`build/kernels-${t}.wasm`, `dist/kernels-${t}.wasm`);
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
console.log(`built ${targets.length} kernel builds in build/ and the package in dist/`);
