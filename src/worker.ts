// The code each pool worker runs, as a self-contained function: its source text becomes the
// worker's script (a Blob module worker on the web, Deno and Bun; an eval'd worker_threads
// script on Node), so it must not refer to anything outside itself.

/** @internal */
export function workerMain(): void {
  type Msg = { module: WebAssembly.Module; memory: WebAssembly.Memory; ctrl: SharedArrayBuffer; tasks: SharedArrayBuffer; id: number; names: string[] };
  const nodeRequire = (globalThis as { require?: (m: string) => unknown }).require;
  const port = (nodeRequire ? (nodeRequire("node:worker_threads") as { parentPort: unknown }).parentPort : globalThis) as {
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
    // ctrl: [0] generation, [1] next task, [2] workers done, [3] task count, [4] stop, [5] failures; slots [4], [5]: scratch base, stride
    let generation = 0;
    for (;;) {
      Atomics.wait(ctrl, 0, generation);
      generation = Atomics.load(ctrl, 0);
      if (Atomics.load(ctrl, 4)) return;
      const scratch = slots[4] + msg.id * slots[5];
      const count = Atomics.load(ctrl, 3);
      try {
        for (let i = Atomics.add(ctrl, 1, 1); i < count; i = Atomics.add(ctrl, 1, 1)) {
          let at = tasks[i];
          const calls = tasks[at++];
          for (let c = 0; c < calls; c++) {
            const fn = tasks[at++];
            const n = tasks[at++];
            const args = new Array<number>(n);
            for (let a = 0; a < n; a++, at++) args[a] = tasks[at] === -1 ? scratch : tasks[at];
            fns[fn](...args);
          }
        }
      } catch {
        Atomics.add(ctrl, 5, 1);
      }
      Atomics.add(ctrl, 2, 1);
      Atomics.notify(ctrl, 2);
    }
  };
  if (port.on) port.on("message", start);
  else port.addEventListener!("message", (e) => start(e.data));
}
