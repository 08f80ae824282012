// npm run build: kernels (AssemblyScript -> build/*.wasm), then the package in dist/:
//   index.js         the default entry; it embeds no kernel build itself: each build is a module of
//                    its own, dist/embedded/kernels*.js (the binary gzipped, in base64), that
//                    init() loads with a dynamic import() only when it needs that build. Every
//                    bundler follows a relative dynamic import without configuration (esbuild
//                    inlines it into a single-file bundle, or makes a chunk with --splitting; Vite
//                    and webpack make a chunk that only the init() needing it fetches).
//   core.js          the same library with no build at all: init(yourBinary) only
//   workerd.js, edge-light.js   the edge entries: the .wasm files imported as modules
//   worker.js        createWorker(): the library in a dedicated Web Worker (worker-entry.js)
//   index.d.ts, worker.d.ts     declarations bundled from src/index.ts and src/worker-api.ts by
//                    dts-bundle-generator: only the public names are exported (see bundleTypes)
//   kernels*.wasm    the raw binaries, for init(source) and the edge runtimes
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import asc from "assemblyscript/asc";
import { build } from "esbuild";

// the declaration that lib.esnext.disposable and @types/node make, for the other consumers
const DISPOSE_GLOBAL = `
declare global {
	interface SymbolConstructor {
		/** The method \`using\` calls at the end of its block (explicit resource management). */
		readonly dispose: unique symbol;
	}
}

export {};
`;

const root = new URL("..", import.meta.url).pathname;
process.chdir(root);

// one asc process for every target: each start costs seconds
const targets = ["baseline", "relaxed", "threads", "relaxed-threads"];
const file = (t) => (t === "baseline" ? "kernels" : `kernels-${t}`);
for (const target of targets) {
  const { error, stderr } = await asc.main(["--config", "asconfig.json", "--target", target]);
  if (error) {
    console.error(stderr.toString());
    throw error;
  }
}

await rm("dist", { recursive: true, force: true });
await mkdir("dist/embedded", { recursive: true });

// src/binaries.ts imports ../build/kernels*.wasm dynamically; in dist/ those are the modules
// ./embedded/kernels*.js. The other entries swap src/binaries.ts for src/binaries.<name>.ts.
const binariesPlugin = (variant) => ({
  name: "binaries",
  setup(b) {
    b.onResolve({ filter: /^\.\/binaries\.js$/ }, (args) =>
      variant && args.importer.endsWith("init.ts") ? { path: new URL(`../src/binaries.${variant}.ts`, import.meta.url).pathname } : undefined,
    );
    b.onResolve({ filter: /^\.\.\/build\/kernels[a-z-]*\.wasm$/ }, (args) => ({
      path: `./embedded/${args.path.slice("../build/".length, -".wasm".length)}.js`,
      external: true,
    }));
  },
});
const entry = (entryPoint, outfile, variant, external = []) =>
  build({
    entryPoints: [entryPoint],
    outfile,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    external: ["./kernels.wasm", "./kernels-relaxed.wasm", "./kernels.wasm?module", "./kernels-relaxed.wasm?module", ...external],
    plugins: [binariesPlugin(variant)],
    legalComments: "none",
  });
await entry("src/index.ts", "dist/index.js");
await entry("src/index.ts", "dist/core.js", "core");
await entry("src/index.ts", "dist/workerd.js", "workerd");
await entry("src/index.ts", "dist/edge-light.js", "edge-light");
// the worker's side is the whole library; the page's side shares the error classes with index.js
await entry("src/worker-entry.ts", "dist/worker-entry.js");
await build({
  entryPoints: ["src/worker-api.ts"],
  outfile: "dist/worker.js",
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  legalComments: "none",
  plugins: [{ name: "errors-from-index", setup: (b) => b.onResolve({ filter: /^\.\/errors\.js$/ }, () => ({ path: "./index.js", external: true })) }],
});

for (const t of targets) {
  const bytes = await readFile(`build/${file(t)}.wasm`);
  await copyFile(`build/${file(t)}.wasm`, `dist/${file(t)}.wasm`);
  const packed = gzipSync(bytes, { level: 9 }).toString("base64");
  await writeFile(
    `dist/embedded/${file(t)}.js`,
    `// the ${t} kernel build, gzipped, in base64 (src/binaries.ts unpacks it)\nexport default "${packed}";\n`,
  );
  // what importing a .wasm subpath gives in the runtimes that need it (workerd, bundlers' module rules)
  await writeFile(
    `dist/${file(t)}.wasm.d.ts`,
    "/** The kernel binary as a compiled module: pass it to init(). */\ndeclare const module: WebAssembly.Module;\nexport default module;\n",
  );
}

await bundleTypes("src/index.ts", "dist/index.d.ts");
await bundleTypes("src/worker-api.ts", "dist/worker.d.ts");
await writeFile("dist/core.d.ts", 'export * from "./index.js";\n');
await writeFile(
  "dist/worker-entry.d.ts",
  "// the script of a wasm-attention worker (see createWorker in wasm-attention/worker): start it as a module Worker\nexport {};\n",
);
console.log(`built ${targets.length} kernel builds in build/ and the package in dist/`);

// Declarations bundled from one entry into one file, so that only the entry's exports are names a
// consumer can import and no internal file ships (a .d.ts per source file would ship heads,
// memory, threads, ... and their helpers). Declarations marked @internal are left out (tsconfig.build.json:
// stripInternal); where that leaves a public declaration pointing at a missing one, the bundle is
// made again with them (and a warning), so the build works while test/package.test.ts says which
// internal names leaked. dts-bundle-generator compiles its output with skipLibCheck off.
async function bundleTypes(from, to) {
  const run = (project) =>
    execFileSync(
      process.execPath,
      [
        "node_modules/dts-bundle-generator/dist/bin/dts-bundle-generator.js",
        "--silent",
        "--no-banner",
        "--export-referenced-types",
        "false",
        "--project",
        project,
        "-o",
        to,
        from,
      ],
      {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
  try {
    run("tsconfig.build.json");
  } catch (error) {
    console.warn(
      `warning: the declarations of ${from} do not compile without the @internal ones; shipping them with every internal declaration they reach:\n${error.stdout}${error.stderr}`,
    );
    await writeFile(
      "build/tsconfig.dts-all.json",
      JSON.stringify({ extends: "../tsconfig.build.json", compilerOptions: { stripInternal: false }, include: ["../src"] }),
    );
    run("build/tsconfig.dts-all.json");
  }
  let dts = await readFile(to, "utf8");
  // `[Symbol.dispose]()` methods: consumers whose lib lacks esnext.disposable still compile them
  if (dts.includes("[Symbol.dispose]")) {
    dts = dts.replace(/export \{\};\s*$/, "") + DISPOSE_GLOBAL;
  }
  await writeFile(to, dts);
}
