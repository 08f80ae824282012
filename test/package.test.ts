// The built package (dist/), as a user imports it: the bundle with the embedded binary, the raw
// kernels.wasm subpath, and declarations for every public export.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import * as source from "../src/index.js";
import { freshSeed, rng } from "./reference.js";

const root = new URL("../", import.meta.url);
const pkg = JSON.parse(readFileSync(new URL("package.json", root), "utf8"));
const load = () => import(new URL(pkg.exports["."].default, root).href) as Promise<typeof source>;

describe("the built package", () => {
  test("package.json: ESM, no side effects, types and the kernels.wasm subpath point at files", () => {
    expect(pkg.type).toBe("module");
    expect(pkg.sideEffects).toBe(false);
    const targets = [
      ...Object.values(pkg.exports["."]),
      ...Object.entries(pkg.exports)
        .filter(([k]) => k.endsWith(".wasm"))
        .flatMap(([, v]) => Object.values(v as object)),
    ];
    for (const target of targets as string[]) {
      expect(() => readFileSync(new URL(target, root))).not.toThrow();
    }
  });

  test("the bundle gives the same bits as the sources, from the embedded binary and from kernels.wasm", async () => {
    const dist = await load();
    await dist.init({ simd: "baseline" });
    await source.init(new WebAssembly.Module(readFileSync(new URL(pkg.exports["./kernels.wasm"].default, root))));
    const r = rng(freshSeed());
    const q = dist.tensor(r.floats(2 * 3 * 9 * 20), [2, 3, 9, 20]);
    const k = dist.tensor(r.floats(2 * 3 * 70 * 20), [2, 3, 70, 20]);
    const fromDist = dist.scaledDotProductAttention(q, k, k, { isCausal: true, causalAlignment: "bottom-right" });
    const fromSource = source.scaledDotProductAttention(q, k, k, { isCausal: true, causalAlignment: "bottom-right" });
    expect(fromDist.data).toEqual(fromSource.data);
  });

  test("size budget: the default import (init, scaledDotProductAttention, tensor, bundled) and the kernel build init() loads are at most 40 KB gzipped, in a browser and in Node", async () => {
    // @ts-expect-error: a plain .mjs script without declarations
    const { sizes } = await import("../scripts/size.mjs");
    const [browser, node] = Object.values(sizes) as number[];
    expect(browser).toBeLessThanOrEqual(40 * 1024);
    expect(node).toBeLessThanOrEqual(40 * 1024);
  });

  test("the declarations: one file per entry, only public names exported, no internal file or helper", () => {
    const shipped = readdirSync(new URL("dist/", root))
      .filter((f) => f.endsWith(".d.ts"))
      .sort();
    expect(shipped).toEqual([
      "core.d.ts",
      "index.d.ts",
      "kernels-relaxed-threads.wasm.d.ts",
      "kernels-relaxed.wasm.d.ts",
      "kernels-threads.wasm.d.ts",
      "kernels.wasm.d.ts",
      "worker-entry.d.ts",
      "worker.d.ts",
    ]);
    const dts = readFileSync(new URL("dist/index.d.ts", root), "utf8");
    const exported = new Set(
      [...dts.matchAll(/^export (?:declare )?(?:abstract )?(?:class|function|const|interface|type|enum) (\w+)/gm)].map((m) => m[1]),
    );
    expect([...exported].filter((n) => !(n in source) && !/^[A-Z]/.test(n))).toEqual([]);
    for (const name of Object.keys(source)) expect(exported.has(name), name).toBe(true);
    // what the bundle reaches but does not export: the internal machinery must not be among it
    const declared = [...dts.matchAll(/^(?:declare )?(?:abstract )?(?:class|function|const|interface|type|enum|namespace) (\w+)/gm)].map((m) => m[1]);
    for (const internal of [
      "Heap",
      "Scope",
      "Pool",
      "Ctx",
      "Kernels",
      "checkTensor",
      "fmt",
      "runtime",
      "workerMain",
      "Route",
      "heads",
      "DecoderAttention",
    ])
      expect(declared, internal).not.toContain(internal);
    expect(dts).not.toMatch(/from "\.\//); // nothing points at another file of dist/
  });

  test("npm pack passes publint --strict and @arethetypeswrong/cli (esm-only profile)", () => {
    const opts = { cwd: new URL("..", import.meta.url), encoding: "utf8" as const, timeout: 120_000 };
    expect(execFileSync("npx", ["--no-install", "publint", "--strict"], opts)).toMatch(/All good/);
    // attw exits non-zero on any problem that the profile does not ignore
    execFileSync("npx", ["--no-install", "attw", "--pack", ".", "--profile", "esm-only"], opts);
  });

  test("every public export has a declaration in dist/index.d.ts", () => {
    const dts = readFileSync(new URL(pkg.exports["."].types, root), "utf8");
    for (const name of Object.keys(source)) expect(dts).toContain(name);
  });
});
