// One row of an error table: the call throws `cls` (a WasmAttentionError) with `message`, leaves
// memory as it was, and `stillWorks` runs normally afterwards.
import { expect } from "vitest";
import { WasmAttentionError, memoryStats } from "../../src/index.js";

export function expectRejected(call: () => unknown, cls: typeof WasmAttentionError, message: RegExp, stillWorks: () => void): void {
  const before = memoryStats();
  let error: unknown;
  try {
    call();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(cls);
  expect(error).toBeInstanceOf(WasmAttentionError);
  expect((error as Error).message).toMatch(message);
  expect(memoryStats()).toEqual(before);
  stillWorks();
}
