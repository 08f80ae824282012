// The seed and the number of runs of the property tests (fast-check). `npm test` checks the same
// cases every time: a fixed seed unless FUZZ_SEED is set; FUZZ_RUNS sets the runs. `npm run fuzz`
// (scripts/fuzz.mjs) passes a fresh seed and many runs. A failure names the seed and the command
// that replays it.
import { relative } from "node:path";
import fc from "fast-check";

export const FUZZ_SEED = fromEnv("FUZZ_SEED", 20261128);
export const FUZZ_RUNS = fromEnv("FUZZ_RUNS", 60);

function fromEnv(name: string, fallback: number): number {
  const given = process.env[name];
  if (given === undefined || given === "") return fallback;
  const n = Number(given);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${given}"`);
  return n;
}

/** The vitest test that runs the property: `task` of its context (`test(name, ({ task }) => ...)`). */
export interface Where {
  name: string;
  file: { filepath: string };
}

/** The shell command that runs this test again with this seed and number of runs. */
export function replayCommand(where: Where): string {
  const file = relative(process.cwd(), where.file.filepath);
  const pattern = where.name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/'/g, "'\\''"); // -t takes a regular expression
  return `FUZZ_SEED=${FUZZ_SEED} FUZZ_RUNS=${FUZZ_RUNS} npx vitest run ${file} -t '${pattern}'`;
}

/**
 * fc.assert with FUZZ_SEED and `runs` runs (FUZZ_RUNS by default), stopping at the first failure
 * (no shrinking: each run calls into WebAssembly); the error names the seed and the replay command.
 */
export function assertProperty<Ts>(where: Where, property: fc.IAsyncProperty<Ts>, runs?: number): Promise<void>;
export function assertProperty<Ts>(where: Where, property: fc.IProperty<Ts>, runs?: number): void;
export function assertProperty<Ts>(where: Where, property: fc.IRawProperty<Ts>, runs = FUZZ_RUNS): Promise<void> | void {
  const fail = (e: unknown): never => {
    throw new Error(
      `property failed with FUZZ_SEED=${FUZZ_SEED} (FUZZ_RUNS=${FUZZ_RUNS}); replay it with:\n  ${replayCommand(where)}\n\n${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  };
  try {
    const done = fc.assert(property, { numRuns: runs, seed: FUZZ_SEED, endOnFailure: true });
    return done instanceof Promise ? done.catch(fail) : done;
  } catch (e) {
    return fail(e);
  }
}
