// npm run build: kernels (AssemblyScript -> build/*.wasm), then the package (esbuild -> dist/index.js
// with the wasm embedded, tsc -> dist/*.d.ts, and the raw wasm as dist/kernels.wasm).
import { copyFile, mkdir, rm, writeFile } from "node:fs/promises";
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
// the default entry embeds the binaries; the edge entries import them as modules (their
// runtimes refuse to compile bytes) by swapping src/binaries.ts for src/binaries.<edge>.ts
const entry = (outfile, binaries) => build({
  entryPoints: ["src/index.ts"],
  outfile,
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  loader: { ".wasm": "binary" },
  external: ["./kernels.wasm", "./kernels-relaxed.wasm", "./kernels.wasm?module", "./kernels-relaxed.wasm?module"],
  plugins: binaries ? [{
    name: "edge-binaries",
    setup(b) {
      b.onResolve({ filter: /^\.\/binaries\.js$/ }, (args) => (args.importer.endsWith("init.ts") ? { path: new URL(`../src/binaries.${binaries}.ts`, import.meta.url).pathname } : undefined));
    },
  }] : [],
  legalComments: "none",
});
await entry("dist/index.js");
await entry("dist/workerd.js", "workerd");
await entry("dist/edge-light.js", "edge-light");
await copyFile("build/kernels.wasm", "dist/kernels.wasm");
for (const t of targets.slice(1)) await copyFile(`build/kernels-${t}.wasm`, `dist/kernels-${t}.wasm`);
// what importing a .wasm subpath gives in the runtimes that need it (workerd, bundlers' module rules)
for (const t of ["", ...targets.slice(1).map((x) => `-${x}`)]) {
  await writeFile(`dist/kernels${t}.wasm.d.ts`, "/** The kernel binary as a compiled module: pass it to init(). */\ndeclare const module: WebAssembly.Module;\nexport default module;\n");
}
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
console.log(`built ${targets.length} kernel builds in build/ and the package in dist/`);
