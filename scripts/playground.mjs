// npm run playground: builds the browser playground (examples/browser) into build/playground and
// serves it on http://localhost:8080 with the COOP/COEP headers that threads need. The page
// fetches the demo model (examples/pronoun) from its folder and the tiny LM (examples/tiny-lm:
// config.json, model.safetensors, vocab.json) from tiny-lm/.
//   node scripts/playground.mjs [--port N] [--build-only]
import { access, copyFile, mkdir, readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { build } from "esbuild";

const root = new URL("..", import.meta.url).pathname;

export async function buildPlayground(out = join(root, "build/playground")) {
  await mkdir(out, { recursive: true });
  await build({
    entryPoints: [join(root, "examples/browser/app.mjs")],
    outfile: join(out, "app.js"),
    bundle: true,
    format: "esm",
    target: "es2022",
    alias: { "wasm-attention": join(root, "dist/index.js") },
    legalComments: "none",
  });
  await copyFile(join(root, "examples/browser/index.html"), join(out, "index.html"));
  for (const f of ["model.safetensors", "vocab.json"]) await copyFile(join(root, "examples/pronoun", f), join(out, f));
  // the tiny LM, when it has been trained (scripts/train-tiny-lm.py); without it the panel says so
  await mkdir(join(out, "tiny-lm"), { recursive: true });
  for (const f of ["config.json", "model.safetensors", "vocab.json"]) {
    const from = join(root, "examples/tiny-lm", f);
    if (
      await access(from).then(
        () => true,
        () => false,
      )
    )
      await copyFile(from, join(out, "tiny-lm", f));
    else console.warn(`playground: ${from} is missing (train it with scripts/train-tiny-lm.py); the tiny LM panel will say so`);
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = await buildPlayground();
  if (process.argv.includes("--build-only")) process.exit(0);
  const port = Number(process.argv[process.argv.indexOf("--port") + 1]) || 8080;
  const types = { ".html": "text/html", ".js": "text/javascript", ".json": "application/json" };
  createServer(async (req, res) => {
    const path = normalize(join(out, new URL(req.url, "http://x").pathname === "/" ? "index.html" : new URL(req.url, "http://x").pathname));
    try {
      if (!path.startsWith(out)) throw new Error("outside");
      res
        .writeHead(200, {
          "content-type": types[extname(path)] ?? "application/octet-stream",
          "cross-origin-opener-policy": "same-origin",
          "cross-origin-embedder-policy": "require-corp",
        })
        .end(await readFile(path));
    } catch {
      res.writeHead(404).end();
    }
  }).listen(port, () => console.log(`playground: http://localhost:${port}/ (Ctrl-C to stop)`));
}
