// `deno run` / `bun` / `node` this file [--threads N]: loads the built package, runs the fixed case, prints JSON.
import * as lib from "../../dist/index.js";
import { bits, fixedCase } from "./fixed-case.mjs";

const threads = Number(process.argv[process.argv.indexOf("--threads") + 1]) || 1;
await lib.init({ deterministic: true, threads });
console.log(JSON.stringify({ info: lib.runtimeInfo(), relaxedSupported: lib.relaxedSimdSupported(), bits: bits(fixedCase(lib)) }));
lib.shutdown();
