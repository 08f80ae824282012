// The code each pool worker runs, as a self-contained function: its source text becomes the
// worker's script (a Blob module worker on the web, Deno and Bun; an eval'd worker_threads
// script on Node), so it must not refer to anything outside itself. The protocol is in threads.ts.

/** @internal */
export function workerMain(): void {
  type Layout = {
    gen: number;
    next: number;
    done: number;
    count: number;
    stop: number;
    failed: number;
    scratchBase: number;
    scratchStride: number;
    scratch: number;
  };
  type Msg = {
    module: WebAssembly.Module;
    memory: WebAssembly.Memory;
    ctrl: SharedArrayBuffer;
    tasks: SharedArrayBuffer;
    id: number;
    names: string[];
    layout: Layout;
    seen: number;
  };
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
    const L = msg.layout; // the control block's slots, as threads.ts lays them out
    let seen = msg.seen;
    for (;;) {
      Atomics.wait(ctrl, L.gen, seen);
      seen = Atomics.load(ctrl, L.gen);
      if (Atomics.load(ctrl, L.stop)) return;
      const gen = seen & 0xffff;
      const count = Atomics.load(ctrl, L.count);
      const scratch = slots[L.scratchBase]! + msg.id * slots[L.scratchStride]!;
      for (;;) {
        // claim a task of this dispatch only: the high half of next is the dispatch it counts
        const next = Atomics.load(ctrl, L.next);
        if (next >>> 16 !== gen || (next & 0xffff) >= count) break;
        if (Atomics.compareExchange(ctrl, L.next, next, next + 1) !== next) continue;
        let at = tasks[next & 0xffff]!;
        const calls = tasks[at++]!;
        try {
          for (let c = 0; c < calls; c++) {
            const fn = tasks[at++]!;
            const n = tasks[at++]!;
            const args = new Array<number>(n);
            for (let a = 0; a < n; a++, at++) args[a] = tasks[at] === L.scratch ? scratch : tasks[at]!;
            fns[fn]!(...args);
          }
        } catch {
          Atomics.store(ctrl, L.failed, seen);
        }
        for (;;) {
          const done = Atomics.load(ctrl, L.done);
          if (done >>> 16 !== gen || Atomics.compareExchange(ctrl, L.done, done, done + 1) === done) break;
        }
        Atomics.notify(ctrl, L.done);
      }
    }
  };
  if (port.on) port.on("message", start);
  else port.addEventListener!("message", (e) => start(e.data));
}
