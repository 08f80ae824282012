import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, test, vi } from "vitest";

async function fresh() {
  vi.resetModules();
  return import("../src/index.js");
}

describe("the baseline and relaxed builds", () => {
  test("relaxed results are within 1e-5 of baseline, relative to the largest output (a child Node with --experimental-wasm-relaxed-simd)", () => {
    const out = execFileSync(process.execPath, ["--experimental-wasm-relaxed-simd", "test/support/relaxed.mjs"], { cwd: new URL("..", import.meta.url), encoding: "utf8" });
    const r = JSON.parse(out);
    expect(r.relaxed).toBe("relaxed");
    expect(r.baseline).toBe("baseline");
    expect(r.worst).toBeLessThan(1e-5);
    expect(r.worst).toBeGreaterThan(0); // the relaxed build really fused something
  });

  test("without relaxed SIMD (plain Node 20), auto picks baseline and relaxed is a clear error", async () => {
    const lib = await fresh();
    expect(lib.relaxedSimdSupported()).toBe(false);
    await expect(lib.init({ simd: "relaxed" })).rejects.toThrow(/not supported by this runtime.*--experimental-wasm-relaxed-simd/);
    await lib.init({ simd: "auto" });
    expect(lib.runtimeInfo()).toEqual({ simd: "baseline", threads: 1 });
  });

  test("option errors", async () => {
    const lib = await fresh();
    await expect(lib.init({ simd: "fast" as never })).rejects.toThrow(/simd must be "auto", "baseline" or "relaxed", got string fast/);
    await expect(lib.init({ simd: "relaxed", deterministic: true })).rejects.toThrow(/cannot be deterministic/);
    const bytes = new Uint8Array(readFileSync(new URL("../build/kernels.wasm", import.meta.url)));
    await expect(lib.init({ wasm: bytes, simd: "baseline" })).rejects.toThrow(/either wasm .* or simd/);
    await lib.init({ deterministic: true });
    expect(lib.runtimeInfo().simd).toBe("baseline");
  });

  test("a binary passed in reports its own build", async () => {
    const lib = await fresh();
    await lib.init(new WebAssembly.Module(readFileSync(new URL("../build/kernels.wasm", import.meta.url))));
    expect(lib.runtimeInfo().simd).toBe("baseline");
  });
});
