// Runs a script under test/support/ in a child Node process, for what may hang, abort the process or
// need --expose-gc. The child imports the library from a bundle of src/ made here with esbuild (the
// way scripts/build.mjs makes dist/index.js), so it runs the sources as they are now, not a dist/
// that may be older. A child that runs past its time is killed and reported as timed out.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("../..", import.meta.url));
let bundled: Promise<string> | null = null;
let dir: string | null = null;

/** The path of a bundle of src/index.ts (made once per test file). */
export function bundle(): Promise<string> {
  if (!bundled) {
    dir = mkdtempSync(join(tmpdir(), "wasm-attention-hardening-"));
    const outfile = join(dir, "index.mjs");
    bundled = build({
      entryPoints: [join(root, "src/index.ts")],
      outfile,
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      loader: { ".wasm": "binary" },
      logLevel: "silent",
    }).then(() => outfile);
  }
  return bundled;
}

/** Removes the bundle (call in afterAll). */
export function removeBundle(): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
  bundled = null;
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  ms: number;
  stdout: string;
  stderr: string;
  /** The last line of stdout parsed as JSON, if it is JSON. */
  json: Record<string, unknown> | null;
}

/** node [nodeArgs] test/support/<script> <bundle> ...args, killed after timeoutMs. */
export async function runChild(script: string, args: string[], options: { timeoutMs: number; nodeArgs?: string[] }): Promise<ChildResult> {
  const lib = await bundle();
  const t0 = performance.now();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), join(root, "test/support", script), lib, ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((ok) => child.on("close", (c, s) => ok([c, s])));
  clearTimeout(timer);
  const last = stdout.trim().split("\n").pop() ?? "";
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(last) as Record<string, unknown>;
  } catch {
    json = null;
  }
  return { code, signal, timedOut, ms: performance.now() - t0, stdout, stderr, json };
}

/** A one-line account of a child run, for assertion messages. */
export function describeRun(r: ChildResult): string {
  const tail = (s: string) => s.trim().split("\n").slice(-6).join(" | ").slice(0, 1200);
  return `${r.timedOut ? `timed out (killed after ${Math.round(r.ms)} ms)` : `exit ${r.code}${r.signal ? ` (${r.signal})` : ""} after ${Math.round(r.ms)} ms`}; stdout: ${tail(r.stdout)}; stderr: ${tail(r.stderr)}`;
}
