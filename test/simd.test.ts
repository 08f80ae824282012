// The baseline and relaxed builds: relaxed SIMD is detected where this runtime has it (plain Node 20
// does not; later Node versions, which `engines` allows, do), "auto" follows the detection, and the
// relaxed build stays within 1e-5 of the baseline.
import { readFileSync } from "node:fs";
import { afterAll, afterEach, describe, expect, test, vi } from "vitest";
import { freshLibrary } from "./support/fresh.js";
import { describeRun, removeBundle, runChild } from "./support/child.js";

const fresh = freshLibrary;

const file = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url));
// the truth the detection must match: does this runtime accept the relaxed kernel build itself?
const runsRelaxedBuild = () => WebAssembly.validate(file("build/kernels-relaxed.wasm"));

afterEach(() => vi.restoreAllMocks());
afterAll(() => removeBundle());

describe("the baseline and relaxed builds", () => {
  test("in a child Node with --experimental-wasm-relaxed-simd: detected, picked by auto, and within 1e-5 of baseline relative to the largest output", async () => {
    const run = await runChild("relaxed-child.mjs", [], { timeoutMs: 60_000, nodeArgs: ["--experimental-wasm-relaxed-simd"] });
    expect(run.code, describeRun(run)).toBe(0);
    const r = run.json!;
    expect(r, describeRun(run)).toMatchObject({ detected: true, validates: true, auto: "relaxed", relaxed: "relaxed", baseline: "baseline" });
    expect(r.worst).toBeLessThan(1e-5);
    expect(r.worst).toBeGreaterThan(0); // the relaxed build really fused something
  }, 60_000);

  test(`this Node (${process.version}): relaxedSimdSupported() says whether it runs the relaxed build, and auto follows it`, async () => {
    const lib = await fresh();
    const supported = runsRelaxedBuild();
    expect(lib.relaxedSimdSupported()).toBe(supported);
    await lib.init({ simd: "auto" });
    expect(lib.runtimeInfo()).toEqual({ simd: supported ? "relaxed" : "baseline", threads: 1 });
  });

  test(`this Node (${process.version}): simd "relaxed" loads where supported, and is a clear error where not`, async () => {
    const lib = await fresh();
    if (runsRelaxedBuild()) {
      await lib.init({ simd: "relaxed" });
      expect(lib.runtimeInfo()).toEqual({ simd: "relaxed", threads: 1 });
    } else {
      await expect(lib.init({ simd: "relaxed" })).rejects.toThrow(/not supported by this runtime.*--experimental-wasm-relaxed-simd/);
    }
  });

  test("a runtime without relaxed SIMD (WebAssembly.validate stubbed to refuse it): auto picks baseline and relaxed is a clear error", async () => {
    const lib = await fresh();
    vi.spyOn(WebAssembly, "validate").mockReturnValue(false);
    expect(lib.relaxedSimdSupported()).toBe(false);
    await expect(lib.init({ simd: "relaxed" })).rejects.toThrow(/not supported by this runtime.*--experimental-wasm-relaxed-simd/);
    await lib.init({ simd: "auto" });
    expect(lib.runtimeInfo()).toEqual({ simd: "baseline", threads: 1 });
  });

  test("option errors", async () => {
    const lib = await fresh();
    await expect(lib.init({ simd: "fast" as never })).rejects.toThrow(/init simd: expected "auto", "baseline" or "relaxed", got string fast/);
    await expect(lib.init({ simd: "relaxed", deterministic: true })).rejects.toThrow(
      /init simd: expected "baseline" or "auto" with deterministic \(relaxed SIMD cannot be deterministic\), got string relaxed/,
    );
    await expect(lib.init({ wasm: file("build/kernels.wasm"), simd: "baseline" })).rejects.toThrow(/init simd: not together with wasm/);
    await lib.init({ deterministic: true });
    expect(lib.runtimeInfo().simd).toBe("baseline");
  });

  test("a binary passed in reports its own build", async () => {
    const lib = await fresh();
    await lib.init(new WebAssembly.Module(file("build/kernels.wasm")));
    expect(lib.runtimeInfo().simd).toBe("baseline");
  });
});
