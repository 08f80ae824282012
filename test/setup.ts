// Every test file runs with guard words around each WebAssembly heap block: an overflow fails the
// free() that meets it, and the check after the file catches one in a block still held.
import { afterAll } from "vitest";
import { Heap } from "../src/memory.js";
import { Pool } from "../src/threads.js";

Heap.guard = true;
// every call that can be split across threads is, however small: the threaded paths stay tested
// (this reaches the first copy of the library; test/support/fresh.ts makes the others)
Pool.dispatchMin = 0;

afterAll(() => Heap.checkGuards());
