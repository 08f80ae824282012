// A Cloudflare Worker (run in workerd by test/runtimes.test.ts through miniflare): the binary is
// imported as a module, as workerd requires, and passed to init().
import wasm from "./kernels.wasm";
import * as lib from "./index.js";
import { bits, fixedCase } from "./fixed-case.mjs";

export default {
  async fetch(request) {
    if (new URL(request.url).pathname === "/embedded") {
      // the zero-config path compiles embedded bytes: workerd forbids that
      try {
        await lib.init();
        return new Response("loaded");
      } catch (e) {
        return new Response(`${e.name}: ${e.message}`, { status: 500 });
      }
    }
    await lib.init(wasm);
    return Response.json({ info: lib.runtimeInfo(), bits: bits(fixedCase(lib)) });
  },
};
