// The code each pool worker runs, as a self-contained function: its source text becomes the
// worker's script (a Blob module worker on the web, Deno and Bun; an eval'd worker_threads
// script on Node), so it must not refer to anything outside itself. The protocol is in threads.ts.

/** @internal */
export function workerMain(): void {
  type Msg = { module: WebAssembly.Module; memory: WebAssembly.Memory; ctrl: SharedArrayBuffer; tasks: SharedArrayBuffer; id: number; names: string[]; seen: number };
  const webWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope === "function";
  // on Node (an eval'd worker script) both are globals; read as properties so that bundlers leave them alone
  const node = globalThis as { process?: { getBuiltinModule?: (m: string) => unknown }; require?: (m: string) => unknown };
  const nodeRequire = webWorker ? undefined : (node.process?.getBuiltinModule ?? node.require);
  const port = (webWorker ? globalThis : (nodeRequire!("node:worker_threads") as { parentPort: unknown }).parentPort) as {
    postMessage(x: unknown): void;
    addEventListener?(t: string, f: (e: { data: Msg }) => void): void;
    on?(t: string, f: (d: Msg) => void): void;
  };
  const start = (msg: Msg) => {
    const instance = new WebAssembly.Instance(msg.module, { env: { memory: msg.memory } });
    const fns = msg.names.map((n) => instance.exports[n] as (...a: number[]) => void);
    const ctrl = new Int32Array(msg.ctrl);
    const slots = new Float64Array(msg.ctrl);
    const tasks = new Float64Array(msg.tasks);
    port.postMessage({ ready: msg.id });
    let seen = msg.seen;
    for (;;) {
      Atomics.wait(ctrl, 0, seen);
      seen = Atomics.load(ctrl, 0);
      if (Atomics.load(ctrl, 4)) return;
      const gen = seen & 0xffff;
      const count = Atomics.load(ctrl, 3);
      const scratch = slots[4] + msg.id * slots[5];
      for (;;) {
        // claim a task of this dispatch only: the high half of NEXT is the dispatch it counts
        const next = Atomics.load(ctrl, 1);
        if (next >>> 16 !== gen || (next & 0xffff) >= count) break;
        if (Atomics.compareExchange(ctrl, 1, next, next + 1) !== next) continue;
        let at = tasks[next & 0xffff];
        const calls = tasks[at++];
        try {
          for (let c = 0; c < calls; c++) {
            const fn = tasks[at++];
            const n = tasks[at++];
            const args = new Array<number>(n);
            for (let a = 0; a < n; a++, at++) args[a] = tasks[at] === Number.MIN_SAFE_INTEGER ? scratch : tasks[at]; // SCRATCH in threads.ts
            fns[fn](...args);
          }
        } catch {
          Atomics.store(ctrl, 5, seen);
        }
        for (;;) {
          const done = Atomics.load(ctrl, 2);
          if (done >>> 16 !== gen || Atomics.compareExchange(ctrl, 2, done, done + 1) === done) break;
        }
        Atomics.notify(ctrl, 2);
      }
    }
  };
  if (port.on) port.on("message", start);
  else port.addEventListener!("message", (e) => start(e.data));
}
