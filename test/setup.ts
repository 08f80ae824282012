// Every test file runs with guard words around each WebAssembly heap block: an overflow fails the
// free() that meets it, and the check after the file catches one in a block still held.
import { afterAll } from "vitest";
import { Heap } from "../src/memory.js";

Heap.guard = true;

afterAll(() => Heap.checkGuards());
