// Canaries: resident tensors of random floats placed in WebAssembly memory before a call, checked
// bit for bit afterwards. A call that writes outside its own blocks changes one of them.
//
// The allocator is first fit, so a canary made before a call usually sits below the call's blocks
// and an overflow (which runs upwards) would miss it. canary() therefore also leaves holes of
// 16 B .. 64 KiB, each followed by a guard tensor: a call's small blocks land in the holes, and
// writing past one of them reaches the guard above it.
import * as defaultLib from "../../src/index.js";
import { rng } from "../reference.js";

type Lib = Pick<typeof defaultLib, "residentTensor">;
type Resident = ReturnType<Lib["residentTensor"]>;

export interface Canary {
  /** Throws (naming the first changed float) unless every canary and guard holds the same bits. */
  (): void;
  /** Frees the canary and its guards. */
  dispose(): void;
}

const HOLES = [16, 64, 256, 1024, 4096, 16384, 65536];
let counter = 0;

/** A residentTensor of 1,000 random floats (plus guards around holes); returns its check. */
export function canary(lib: Lib = defaultLib, seed = 0x5eed + counter++): Canary {
  const r = rng(seed);
  const watched: [string, Resident, Uint32Array][] = [];
  const watch = (name: string, n: number) => {
    const t = lib.residentTensor([n], r.floats(n, 1e3));
    watched.push([name, t, new Uint32Array(t.data.slice().buffer)]);
  };
  watch("canary", 1000);
  const holes: Resident[] = [];
  for (const bytes of HOLES) {
    holes.push(lib.residentTensor([bytes / 4]));
    watch(`guard after a ${bytes}-byte hole`, 64);
  }
  for (const h of holes) h.dispose();
  const check = (() => {
    for (const [name, t, bits] of watched) {
      const now = new Uint32Array(t.data.slice().buffer);
      for (let i = 0; i < bits.length; i++) {
        if (now[i] !== bits[i]) {
          throw new Error(
            `${name}: float ${i} of ${bits.length} was overwritten (0x${bits[i].toString(16)} -> 0x${now[i].toString(16)}): a write outside the call's own memory`,
          );
        }
      }
    }
  }) as Canary;
  check.dispose = () => {
    for (const [, t] of watched) t.dispose();
  };
  return check;
}
