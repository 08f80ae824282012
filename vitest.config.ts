import { readFileSync } from "node:fs";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [
    {
      // under vitest a .wasm import would be undefined; give it the bytes, as esbuild's binary loader does
      name: "wasm-bytes",
      enforce: "pre",
      load(id) {
        if (!id.endsWith(".wasm")) return null;
        const base64 = readFileSync(id).toString("base64");
        return `export default Uint8Array.from(atob("${base64}"), (c) => c.charCodeAt(0));`;
      },
    },
  ],
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/setup.ts"],
    testTimeout: 60_000,
  },
});
