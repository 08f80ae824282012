import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, test } from "vitest";
import * as lib from "../src/index.js";
import { type Stored, decode, fixture } from "./fixtures.js";
import { expectClose } from "./reference.js";

interface Case {
  name: string;
  module: string;
  ctor: Record<string, unknown>;
  prefix: string;
  same?: boolean;
  inputs: Stored[];
  forward: Record<string, unknown>;
  output: Stored;
  weights?: Stored | null;
}

const { cases } = fixture<{ cases: Case[] }>("layers.json");
const TOL = { atol: 1e-5, rtol: 1e-4 };
let dict: lib.StateDict;

beforeAll(async () => {
  await lib.init();
  dict = lib.loadSafetensors(readFileSync(new URL("./fixtures/layers.safetensors", import.meta.url)));
});

const tensorOf = (s: Stored) => ({ data: decode(s), shape: s.shape }) as lib.Tensor;
const isStored = (x: unknown): x is Stored => typeof x === "object" && x !== null && "base64" in x;
const options = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, isStored(v) ? tensorOf(v) : v]));

function run(c: Case): { output: lib.Tensor; weights?: lib.Tensor | null } {
  const inputs = c.inputs.map(tensorOf);
  const fwd = options(c.forward);
  switch (c.module) {
    case "MultiHeadAttention": {
      const m = new lib.MultiHeadAttention(c.ctor as never).loadStateDict(dict, c.prefix);
      const [q, k, v] = c.same ? [inputs[0], inputs[0], inputs[0]] : inputs;
      return m.forward(q, k, v, fwd);
    }
    case "TransformerEncoderLayer":
      return { output: new lib.TransformerEncoderLayer(c.ctor as never).loadStateDict(dict, c.prefix).forward(inputs[0], fwd) };
    case "TransformerDecoderLayer":
      return { output: new lib.TransformerDecoderLayer(c.ctor as never).loadStateDict(dict, c.prefix).forward(inputs[0], inputs[1], fwd) };
    case "TransformerEncoder":
      return { output: new lib.TransformerEncoder(c.ctor as never).loadStateDict(dict, c.prefix).forward(inputs[0], fwd) };
    case "TransformerDecoder":
      return { output: new lib.TransformerDecoder(c.ctor as never).loadStateDict(dict, c.prefix).forward(inputs[0], inputs[1], fwd) };
    case "Transformer": {
      const { layer, encoderLayers, decoderLayers } = c.ctor as { layer: lib.TransformerLayerOptions; encoderLayers: number; decoderLayers: number };
      const encoder = new lib.TransformerEncoder({ layer, numLayers: encoderLayers, norm: true }).loadStateDict(dict, `${c.prefix}encoder.`);
      const decoder = new lib.TransformerDecoder({ layer, numLayers: decoderLayers, norm: true }).loadStateDict(dict, `${c.prefix}decoder.`);
      return { output: decoder.forward(inputs[1], encoder.forward(inputs[0]), fwd) };
    }
  }
  throw new Error(`unknown module ${c.module}`);
}

describe("modules match PyTorch, loaded from one safetensors file", () => {
  for (const c of cases) {
    test(`${c.module}: ${c.name}`, () => {
      const got = run(c);
      expect(got.output.shape).toEqual(c.output.shape);
      expectClose(got.output.data, decode(c.output), c.output.shape, TOL, "output");
      if (c.weights !== undefined) {
        if (c.weights === null) expect(got.weights).toBeNull();
        else {
          expect(got.weights!.shape).toEqual(c.weights.shape);
          expectClose(got.weights!.data, decode(c.weights), c.weights.shape, TOL, "weights");
        }
      }
    });
  }
});
