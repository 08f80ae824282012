// The built package (dist/), as a user imports it: the bundle with the embedded binary, the raw
// kernels.wasm subpath, and declarations for every public export.
import { readFileSync } from "node:fs";
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
    for (const target of [pkg.exports["."].types, pkg.exports["."].default, pkg.exports["./kernels.wasm"]]) {
      expect(() => readFileSync(new URL(target, root))).not.toThrow();
    }
  });

  test("the bundle gives the same bits as the sources, from the embedded binary and from kernels.wasm", async () => {
    const dist = await load();
    await dist.init();
    await source.init(new WebAssembly.Module(readFileSync(new URL(pkg.exports["./kernels.wasm"], root))));
    const r = rng(freshSeed());
    const q = dist.tensor(r.floats(2 * 3 * 9 * 20), [2, 3, 9, 20]);
    const k = dist.tensor(r.floats(2 * 3 * 70 * 20), [2, 3, 70, 20]);
    const fromDist = dist.scaledDotProductAttention(q, k, k, { isCausal: true, causalAlignment: "bottom-right" });
    const fromSource = source.scaledDotProductAttention(q, k, k, { isCausal: true, causalAlignment: "bottom-right" });
    expect(fromDist.data).toEqual(fromSource.data);
  });

  test("every public export has a declaration in dist/index.d.ts", () => {
    const dts = readFileSync(new URL(pkg.exports["."].types, root), "utf8");
    for (const name of Object.keys(source)) expect(dts).toContain(name);
  });
});
