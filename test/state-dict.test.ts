// Module.loadStateDict: strict by default (as torch), floats only, every key checked before any is
// copied; tensors from loadSafetensors go from the file's bytes straight into WebAssembly memory.
import { beforeAll, describe, expect, test } from "vitest";
import {
  ArgumentError,
  type IntegerTensor,
  LayerNorm,
  Linear,
  MultiHeadAttention,
  ShapeError,
  type Tensor,
  TransformerEncoder,
  init,
  loadSafetensors,
  memoryStats,
  tensor,
} from "../src/index.js";
import { freshSeed, rng } from "./reference.js";

beforeAll(() => init());

type Dict = Record<string, Tensor | IntegerTensor>;

// a safetensors file of float32 values stored as `dtype` (F16 / BF16 by rounding the f32 bits
// toward zero, so the file holds exactly what the test compares with), at 8-byte aligned offsets
// unless `skew` shifts the data by that many bytes
function file(
  tensors: Record<string, Tensor>,
  dtype: "F32" | "F16" | "BF16" | "F64",
  skew = 0,
): { bytes: Uint8Array; stored: Record<string, Tensor> } {
  const width = { F32: 4, F16: 2, BF16: 2, F64: 8 }[dtype];
  const header: Record<string, unknown> = {};
  const stored: Record<string, Tensor> = {};
  let at = skew;
  const parts: [number, Uint8Array][] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.data.length;
    const raw = new Uint8Array(n * width);
    const view = new DataView(raw.buffer);
    const back = new Float32Array(n);
    t.data.forEach((x, i) => {
      if (dtype === "F32") view.setFloat32(4 * i, x, true);
      else if (dtype === "F64") view.setFloat64(8 * i, x, true);
      else if (dtype === "BF16") view.setUint16(2 * i, new Uint32Array(Float32Array.of(x).buffer)[0] >>> 16, true);
      else view.setUint16(2 * i, toHalf(x), true);
    });
    if (dtype === "F32" || dtype === "F64") back.set(t.data);
    else if (dtype === "BF16") back.forEach((_, i) => (back[i] = new Float32Array(Uint32Array.of(view.getUint16(2 * i, true) << 16).buffer)[0]));
    else back.forEach((_, i) => (back[i] = fromHalf(view.getUint16(2 * i, true))));
    header[name] = { dtype, shape: t.shape, data_offsets: [at, at + raw.length] };
    parts.push([at, raw]);
    stored[name] = { data: back, shape: t.shape };
    at = Math.ceil((at + raw.length - skew) / 8) * 8 + skew;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const bytes = new Uint8Array(8 + head.length + at);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(head.length), true);
  bytes.set(head, 8);
  for (const [offset, raw] of parts) bytes.set(raw, 8 + head.length + offset);
  return { bytes, stored };
}

// f32 -> f16 bits, rounded toward zero, for |x| < 65504 (the tests use |x| < 4)
function toHalf(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a < 2 ** -14) return sign | Math.floor(a / 2 ** -24); // zero and subnormals
  const e = Math.floor(Math.log2(a));
  const frac = Math.floor((a / 2 ** e - 1) * 1024);
  return sign | ((e + 15) << 10) | frac;
}

function fromHalf(h: number): number {
  const e = (h >> 10) & 0x1f;
  const v = e === 0 ? (h & 0x3ff) * 2 ** -24 : (1 + (h & 0x3ff) / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}

function randomDict(m: { params(): { key: string; shape: readonly number[] }[] }, r: ReturnType<typeof rng>, prefix = ""): Record<string, Tensor> {
  return Object.fromEntries(
    m.params().map((p) => [
      prefix + p.key,
      tensor(
        r.floats(
          p.shape.reduce((a, b) => a * b, 1),
          0.5,
        ),
        p.shape,
      ),
    ]),
  );
}

const x = (r: ReturnType<typeof rng>, shape: number[]) => tensor(r.floats(shape.reduce((a, b) => a * b, 1)), shape);

describe("strict loading (the default)", () => {
  test("keys under the prefix that the module does not use are an ArgumentError listing them", () => {
    const r = rng(freshSeed());
    const lin = new Linear({ inFeatures: 3, outFeatures: 2 });
    const dict = {
      ...randomDict(lin, r, "head."),
      "head.extra": tensor([1], [1]),
      "head.weight_2": tensor([1], [1]),
      "body.weight": tensor([1], [1]),
    };
    expect(() => lin.loadStateDict(dict, "head.")).toThrow(ArgumentError);
    expect(() => lin.loadStateDict(dict, "head.")).toThrow(
      /Linear.loadStateDict: unexpected "head.extra", "head.weight_2" \(pass \{ strict: false \} to ignore keys the module does not use\)/,
    );
    expect(() => lin.forward(x(r, [1, 3]))).toThrow(/has no weights/); // nothing was loaded
    expect(lin.loadStateDict(dict, "head.", { strict: false })).toBe(lin);
    expect(lin.forward(x(r, [1, 3])).shape).toEqual([1, 2]);
    lin.dispose();
  });

  test("missing, misshapen and unexpected keys: one ShapeError naming them all", () => {
    const r = rng(freshSeed());
    const ln = new LayerNorm({ normalizedShape: 4 });
    const dict = { weight: tensor(r.floats(5), [5]), running_mean: tensor(r.floats(4), [4]) };
    expect(() => ln.loadStateDict(dict)).toThrow(ShapeError);
    expect(() => ln.loadStateDict(dict)).toThrow(/"weight" has shape \[5\], expected \[4\]; missing "bias" \[4\]; unexpected "running_mean"/);
    expect(() => ln.loadStateDict(dict, "", { strict: false })).toThrow(/"weight" has shape \[5\], expected \[4\]; missing "bias" \[4\]$/);
  });

  test("a prefix without its trailing dot gets a hint", () => {
    const r = rng(freshSeed());
    const lin = new Linear({ inFeatures: 2, outFeatures: 2 });
    const dict = randomDict(lin, r, "proj.");
    expect(() => lin.loadStateDict(dict, "proj")).toThrow(
      /missing "projweight" \[2, 2\]; missing "projbias" \[2\]; unexpected "proj.weight", "proj.bias" .*; the prefix "proj" does not end with "." but keys start with "proj.": did you mean "proj."\?/,
    );
    expect(() => lin.loadStateDict(dict, "proj", { strict: false })).toThrow(/did you mean "proj."\?/);
  });

  test("a failed load changes nothing: the weights loaded before stay", () => {
    const r = rng(freshSeed());
    const lin = new Linear({ inFeatures: 3, outFeatures: 2 });
    const first = randomDict(lin, r);
    lin.loadStateDict(first);
    const input = x(r, [2, 3]);
    const before = lin.forward(input).data;
    const live = memoryStats().liveBytes;
    expect(() => lin.loadStateDict({ ...randomDict(lin, r), stray: tensor([0], [1]) })).toThrow(/unexpected "stray"/);
    expect(() => lin.loadStateDict({ weight: first.weight, bias: { data: new Int32Array(2), shape: [2], dtype: "I32" } as IntegerTensor })).toThrow(
      ArgumentError,
    );
    expect(lin.forward(input).data).toEqual(before);
    expect(memoryStats().liveBytes).toBe(live);
    lin.dispose();
  });

  test("the torch stacks keep working with prefixes, strict", () => {
    const r = rng(freshSeed());
    const enc = new TransformerEncoder({ layer: { dModel: 8, nhead: 2, dimFeedforward: 16 }, numLayers: 2, norm: true });
    const dict = { ...randomDict(enc, r, "encoder."), "decoder.layers.0.norm1.weight": tensor(r.floats(8), [8]) };
    expect(enc.loadStateDict(dict, "encoder.")).toBe(enc);
    expect(() => enc.loadStateDict(dict)).toThrow(/unexpected "encoder.layers.0.self_attn.in_proj_weight", .*"decoder.layers.0.norm1.weight"/);
    enc.dispose();
  });

  test("keys are the dict's own: nothing is found on its prototype", () => {
    const r = rng(freshSeed());
    const lin = new Linear({ inFeatures: 2, outFeatures: 1 });
    const inherited = Object.create(randomDict(lin, r)) as Dict;
    expect(() => lin.loadStateDict(inherited)).toThrow(/missing "weight" \[1, 2\]; missing "bias" \[1\]/);
  });

  test("bad arguments are named", () => {
    const lin = new Linear({ inFeatures: 2, outFeatures: 1 });
    expect(() => lin.loadStateDict({}, "", { strict: "yes" } as never)).toThrow(/Linear.loadStateDict strict: expected a boolean, got string yes/);
    expect(() => lin.loadStateDict({}, "", { stric: false } as never)).toThrow(/expected only "strict".*, got unknown option "stric"/);
    expect(() => lin.loadStateDict({}, 3 as never)).toThrow(/Linear.loadStateDict prefix: expected a string, got number 3/);
    expect(() => lin.loadStateDict(null as never)).toThrow(/Linear.loadStateDict dict: expected a state dict \(an object of tensors\), got null/);
  });
});

describe("modules take float tensors only", () => {
  test("an integer tensor for a weight is an ArgumentError naming the key and its dtype", () => {
    const header = JSON.stringify({
      weight: { dtype: "I64", shape: [1, 2], data_offsets: [0, 16] },
      bias: { dtype: "F32", shape: [1], data_offsets: [16, 20] },
    });
    const bytes = new Uint8Array(8 + header.length + 20);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(header.length), true);
    bytes.set(new TextEncoder().encode(header), 8);
    const lin = new Linear({ inFeatures: 2, outFeatures: 1 });
    expect(() => lin.loadStateDict(loadSafetensors(bytes))).toThrow(ArgumentError);
    expect(() => lin.loadStateDict(loadSafetensors(bytes))).toThrow(
      /Linear.loadStateDict state dict "weight": expected a float tensor \(F32, F16, BF16 or F64 in a safetensors file\), or for a weight matrix I8 .*, got a tensor of dtype I64/,
    );
    const bool = { weight: { data: new Uint8Array(2), shape: [1, 2], dtype: "BOOL" } as IntegerTensor, bias: tensor([0], [1]) };
    expect(() => lin.loadStateDict(bool)).toThrow(/state dict "weight": expected a float tensor .*, got a tensor of dtype BOOL/);
  });
});

describe("from the file's bytes into WebAssembly memory", () => {
  for (const dtype of ["F32", "F16", "BF16", "F64"] as const) {
    for (const skew of [0, 1]) {
      test(`${dtype}${skew ? " at odd offsets" : ""}: the same outputs as the widened tensors, no JavaScript copy`, () => {
        const r = rng(freshSeed());
        // packed in_proj (three parts of one tensor), a Linear of 67 x 5 (partial tiles), a LayerNorm
        const mha = new MultiHeadAttention({ embedDim: 24, numHeads: 3 });
        const lin = new Linear({ inFeatures: 5, outFeatures: 67 });
        const ln = new LayerNorm({ normalizedShape: 67 });
        const { bytes, stored } = file({ ...randomDict(mha, r, "mha."), ...randomDict(lin, r, "lin."), ...randomDict(ln, r, "ln.") }, dtype, skew);
        const dict = loadSafetensors(bytes);
        const live = memoryStats().liveBytes;
        mha.loadStateDict(dict, "mha.");
        lin.loadStateDict(dict, "lin.");
        ln.loadStateDict(dict, "ln.");
        // the file's tensors were never read into JavaScript arrays
        for (const t of Object.values(dict)) expect(Object.getOwnPropertyDescriptor(t, "data")!.get).toBeTypeOf("function");
        const weights = memoryStats().liveBytes - live;
        const mhaRef = new MultiHeadAttention({ embedDim: 24, numHeads: 3 }).loadStateDict(stored, "mha.", { strict: false });
        const linRef = new Linear({ inFeatures: 5, outFeatures: 67 }).loadStateDict(stored, "lin.", { strict: false });
        const lnRef = new LayerNorm({ normalizedShape: 67 }).loadStateDict(stored, "ln.", { strict: false });
        expect(memoryStats().liveBytes - live - weights).toBe(weights); // the staging blocks were freed
        const q = x(r, [2, 5, 24]);
        expect(mha.forward(q, q, q).output.data).toEqual(mhaRef.forward(q, q, q).output.data);
        const v = x(r, [3, 5]);
        const h = lin.forward(v);
        expect(h.data).toEqual(linRef.forward(v).data);
        expect(ln.forward(h).data).toEqual(lnRef.forward(h).data);
        for (const m of [mha, lin, ln, mhaRef, linRef, lnRef]) m.dispose();
      });
    }
  }

  test("a tensor whose data was replaced after loading the file loads the new data", () => {
    const r = rng(freshSeed());
    const ln = new LayerNorm({ normalizedShape: 3 });
    const { bytes } = file(randomDict(ln, r), "F16");
    const dict = loadSafetensors(bytes);
    (dict.weight as Tensor).data = Float32Array.of(2, 2, 2);
    (dict.bias as Tensor).data = Float32Array.of(1, 1, 1);
    ln.loadStateDict(dict);
    const y = ln.forward(tensor([1, 2, 3], [1, 3]));
    const s = Math.sqrt(1.5); // (x - mean) / std of 1, 2, 3
    [1 - 2 * s, 1, 1 + 2 * s].forEach((want, i) => expect(y.data[i]).toBeCloseTo(want, 4));
    ln.dispose();
  });

  test("a large F16 tensor that grows the memory while it loads (the staged block must survive)", () => {
    const r = rng(freshSeed());
    const E = 512;
    const mha = new MultiHeadAttention({ embedDim: E, numHeads: 8 });
    const { bytes, stored } = file(randomDict(mha, r), "F16");
    const dict = loadSafetensors(bytes);
    const before = memoryStats().bufferBytes;
    mha.loadStateDict(dict);
    expect(memoryStats().bufferBytes).toBeGreaterThan(before);
    const ref = new MultiHeadAttention({ embedDim: E, numHeads: 8 }).loadStateDict(stored);
    const q = x(r, [1, 3, E]);
    expect(mha.forward(q, q, q, { needWeights: false }).output.data).toEqual(ref.forward(q, q, q, { needWeights: false }).output.data);
    mha.dispose();
    ref.dispose();
  });
});

describe("a file whose bytes are transferred after loadSafetensors", () => {
  test("loadStateDict names the key and the cause instead of a raw TypeError; nothing is loaded", () => {
    const r = rng(freshSeed());
    const { bytes } = file({ weight: tensor(r.floats(12, 1), [3, 4]), bias: tensor(r.floats(3, 1), [3]) }, "F32");
    const dict = loadSafetensors(bytes);
    structuredClone(bytes.buffer, { transfer: [bytes.buffer as ArrayBuffer] }); // detaches the caller's buffer
    const live = memoryStats().liveBytes;
    const m = new Linear({ inFeatures: 4, outFeatures: 3 });
    expect(() => m.loadStateDict(dict)).toThrow(ArgumentError);
    expect(() => m.loadStateDict(dict)).toThrow(/state dict "weight": expected the bytes of its file, got a detached buffer/);
    expect(memoryStats().liveBytes).toBe(live);
  });
});

describe("hostile inputs to loading (a review's reproductions)", () => {
  // a safetensors file from entries and data
  const make = (entries: Record<string, unknown>, data: Uint8Array) => {
    const json = new TextEncoder().encode(JSON.stringify(entries));
    const out = new Uint8Array(8 + json.length + data.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    out.set(data, 8 + json.length);
    return out;
  };

  test("loadSafetensors reads the bytes through their own slots: a Uint8Array subclass lying about its length changes nothing", () => {
    const honestFile = make({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, new Uint8Array(new Float32Array([1, 2]).buffer));
    expect(() => loadSafetensors(honestFile)).toThrow(/"a".data_offsets: expected an end within the 8 bytes of data, got \[0, 16\]/);
    class Liar extends Uint8Array {
      override get length() {
        return 1 << 20;
      }
      override get byteLength() {
        return 1 << 20;
      }
    }
    const lying = new Liar(honestFile.length);
    Uint8Array.prototype.set.call(lying, honestFile);
    expect(() => loadSafetensors(lying)).toThrow(/"a".data_offsets: expected an end within the 8 bytes of data, got \[0, 16\]/);
  });

  test("a pre-quantized weight and its scales are read once: getters that change cannot swap what was checked", () => {
    const [N, K] = [4, 8];
    const q = new Int8Array(N * K).fill(1);
    const scales = new Float32Array([1, 2, 3, 4]);
    const x = tensor(new Float32Array(K).fill(1), [1, K]);
    const want = Array.from(
      new Linear({ inFeatures: K, outFeatures: N, bias: false })
        .loadStateDict({ weight: { data: q, shape: [N, K], dtype: "I8" } as IntegerTensor, weight_scale: tensor(scales, [N]) })
        .forward(x).data,
    );
    expect(want).toEqual([8, 16, 24, 32]);
    let reads = 0;
    const s = {
      shape: [N],
      get data() {
        return reads++ === 0 ? scales : new Float32Array([1]);
      },
    };
    const b = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict({
      weight: { data: q, shape: [N, K], dtype: "I8" } as IntegerTensor,
      weight_scale: s as never,
    });
    expect(Array.from(b.forward(x).data)).toEqual(want);
    let qr = 0;
    const w = {
      shape: [N, K],
      dtype: "I8",
      get data() {
        return qr++ === 0 ? q : new Int8Array(N * K).fill(100);
      },
    };
    const c = new Linear({ inFeatures: K, outFeatures: N, bias: false }).loadStateDict({ weight: w as never, weight_scale: tensor(scales, [N]) });
    expect(Array.from(c.forward(x).data)).toEqual(want);
    expect(qr).toBe(1);
  });
});
