// `deno run` / `bun` / `node` this file: loads the built package, runs the fixed case, prints JSON.
import * as lib from "../../dist/index.js";
import { bits, fixedCase } from "./fixed-case.mjs";

await lib.init({ deterministic: true });
console.log(JSON.stringify({ info: lib.runtimeInfo(), relaxedSupported: lib.relaxedSimdSupported(), bits: bits(fixedCase(lib)) }));
