// A fresh copy of the library (its own init state, pool and heap), for tests that need one beside
// the shared copy. test/setup.ts's settings reach only the first copy of each module, so a fresh
// copy gets them here: every call that can be split across threads is (Pool.dispatchMin = 0).
import { vi } from "vitest";

export type Lib = typeof import("../../src/index.js");

export async function freshLibrary(): Promise<Lib> {
  vi.resetModules();
  const lib = await import("../../src/index.js");
  (await import("../../src/threads.js")).Pool.dispatchMin = 0;
  return lib;
}
