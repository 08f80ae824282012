// loadSafetensors reads every dtype of the format; float tensors are read from the file's bytes
// when used (or are views of them with { view: true }); the header cannot reach Object.prototype.
import { describe, expect, test } from "vitest";
import { ArgumentError, type IntegerTensor, type Tensor, loadSafetensors } from "../src/index.js";

interface Entry {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

// a safetensors file of named entries laid out in order, each at `align` (after `skew` leading bytes)
function file(entries: Record<string, Entry>, { align = 8, skew = 0 } = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let at = skew;
  for (const [name, e] of Object.entries(entries)) {
    at = Math.ceil((at - skew) / align) * align + skew;
    Object.defineProperty(header, name, { value: { dtype: e.dtype, shape: e.shape, data_offsets: [at, at + e.bytes.length] }, enumerable: true });
    at += e.bytes.length;
  }
  // pad the header so the data starts 8-byte aligned in the file, as safetensors does
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + at);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  at = skew;
  for (const e of Object.values(entries)) {
    at = Math.ceil((at - skew) / align) * align + skew;
    out.set(e.bytes, 8 + head.length + at);
    at += e.bytes.length;
  }
  return out;
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
const f16 = [0x0000, 0x8000, 0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x3555];
const f16Values = [0, -0, 1, -2, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, 65504, Infinity, -Infinity, NaN, 0.333251953125];
const bf16 = [0x0000, 0x8000, 0x3f80, 0xc000, 0x0001, 0x7f7f, 0x7f80, 0xff80, 0x7fc0, 0x3eab];
const bf16Values = [0, -0, 1, -2, 2 ** -133, 0x7f7f0000, Infinity, -Infinity, NaN, 0.333984375].map((x, i) =>
  i === 5 ? new Float32Array(new Uint32Array([0x7f7f0000]).buffer)[0] : x,
);
const f64Values = [0.1, -1 / 3, 1e-40, 1e39, -1e39, 1e-50, -0, NaN, 16777217, 3.4028235677973366e38];

const every: Record<string, Entry> = {
  f64: { dtype: "F64", shape: [2, 5], bytes: bytesOf(Float64Array.from(f64Values)) },
  f32: { dtype: "F32", shape: [3], bytes: bytesOf(Float32Array.from([1.5, -0, 2 ** -149])) },
  f16: { dtype: "F16", shape: [12], bytes: bytesOf(Uint16Array.from(f16)) },
  bf16: { dtype: "BF16", shape: [2, 5], bytes: bytesOf(Uint16Array.from(bf16)) },
  i64: { dtype: "I64", shape: [3], bytes: bytesOf(BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n, 42n])) },
  i32: { dtype: "I32", shape: [3], bytes: bytesOf(Int32Array.from([-(2 ** 31), 2 ** 31 - 1, 7])) },
  i16: { dtype: "I16", shape: [1, 3], bytes: bytesOf(Int16Array.from([-32768, 32767, -1])) },
  i8: { dtype: "I8", shape: [3], bytes: bytesOf(Int8Array.from([-128, 127, 0])) },
  u64: { dtype: "U64", shape: [2], bytes: bytesOf(BigUint64Array.from([2n ** 64n - 1n, 1n])) },
  u32: { dtype: "U32", shape: [2], bytes: bytesOf(Uint32Array.from([2 ** 32 - 1, 3])) },
  u16: { dtype: "U16", shape: [2], bytes: bytesOf(Uint16Array.from([65535, 9])) },
  u8: { dtype: "U8", shape: [3], bytes: Uint8Array.from([0, 255, 17]) },
  bool: { dtype: "BOOL", shape: [2, 2], bytes: Uint8Array.from([1, 0, 0, 1]) },
  scalar: { dtype: "I64", shape: [], bytes: bytesOf(BigInt64Array.from([-5n])) },
  empty: { dtype: "F16", shape: [0, 4], bytes: new Uint8Array(0) },
};

const same = (got: ArrayLike<number>, want: number[]) =>
  want.forEach((w, i) => expect(Object.is(got[i], w) || (Number.isNaN(got[i]) && Number.isNaN(w)), `at [${i}]: got ${got[i]}, want ${w}`).toBe(true));

describe("every dtype", () => {
  const dict = loadSafetensors(file(every));
  const float = (k: string) => dict[k] as Tensor;
  const int = (k: string) => dict[k] as IntegerTensor;

  test("floats become Float32Array tensors: F16 and BF16 exactly, F64 rounded to nearest (Math.fround)", () => {
    for (const k of ["f64", "f32", "f16", "bf16", "empty"]) {
      expect(Object.prototype.toString.call(float(k).data)).toBe("[object Float32Array]");
      expect("dtype" in float(k)).toBe(false);
    }
    same(float("f64").data, f64Values.map(Math.fround));
    expect(float("f64").shape).toEqual([2, 5]);
    same(float("f32").data, [1.5, -0, 2 ** -149]);
    same(float("f16").data, f16Values);
    same(float("bf16").data, bf16Values);
    expect(float("empty").shape).toEqual([0, 4]);
    expect(float("empty").data.length).toBe(0);
  });

  test("F16 NaN payloads and signs survive as bit patterns", () => {
    const halves = [0x7c01, 0xfe00, 0x7fff];
    const t = loadSafetensors(file({ x: { dtype: "F16", shape: [3], bytes: bytesOf(Uint16Array.from(halves)) } })).x as Tensor;
    expect(Array.from(new Uint32Array(t.data.buffer, t.data.byteOffset, 3))).toEqual([0x7f802000, 0xffc00000, 0x7fffe000]);
  });

  test("integers and booleans keep their type and every value, in their own buffer", () => {
    const want: [string, string, unknown[]][] = [
      ["i64", "BigInt64Array", [-(2n ** 63n), 2n ** 63n - 1n, 42n]],
      ["i32", "Int32Array", [-(2 ** 31), 2 ** 31 - 1, 7]],
      ["i16", "Int16Array", [-32768, 32767, -1]],
      ["i8", "Int8Array", [-128, 127, 0]],
      ["u64", "BigUint64Array", [2n ** 64n - 1n, 1n]],
      ["u32", "Uint32Array", [2 ** 32 - 1, 3]],
      ["u16", "Uint16Array", [65535, 9]],
      ["u8", "Uint8Array", [0, 255, 17]],
      ["bool", "Uint8Array", [1, 0, 0, 1]],
      ["scalar", "BigInt64Array", [-5n]],
    ];
    for (const [k, type, values] of want) {
      expect(Object.prototype.toString.call(int(k).data), k).toBe(`[object ${type}]`);
      expect(Array.from(int(k).data as ArrayLike<unknown>), k).toEqual(values);
      expect(int(k).dtype).toBe(k === "scalar" ? "I64" : k.toUpperCase());
      expect(int(k).data.byteOffset).toBe(0);
      expect(int(k).data.buffer.byteLength).toBe(int(k).data.byteLength);
    }
    expect(int("i16").shape).toEqual([1, 3]);
    expect(int("scalar").shape).toEqual([]);
  });

  test("integer tensors at odd offsets are read correctly", () => {
    const d = loadSafetensors(
      file(
        {
          a: { dtype: "U8", shape: [1], bytes: Uint8Array.from([9]) },
          b: { dtype: "I64", shape: [2], bytes: bytesOf(BigInt64Array.from([-3n, 4n])) },
        },
        { align: 1 },
      ),
    );
    expect(Array.from((d.b as IntegerTensor).data as BigInt64Array)).toEqual([-3n, 4n]);
  });

  test("other dtypes are an ArgumentError naming the dtype, the tensor and the supported list", () => {
    for (const dtype of ["F8_E4M3", "F8_E5M2", "C64", "f32", "float32"]) {
      const bytes = file({ weird: { dtype, shape: [1], bytes: new Uint8Array(1) } });
      expect(() => loadSafetensors(bytes)).toThrow(ArgumentError);
      expect(() => loadSafetensors(bytes)).toThrow(
        `"weird".dtype: expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, got "${dtype}"`,
      );
    }
  });
});

describe("float tensors read from the file's bytes", () => {
  const values = Float32Array.from({ length: 7 }, (_, i) => i - 2.5);
  const halves = Uint16Array.from([0x3c00, 0xc000, 0x3800]); // 1, -2, 0.5

  test("by default, data is the tensor's own array, made once when first read", () => {
    const bytes = file({ a: { dtype: "F32", shape: [7], bytes: bytesOf(values) }, h: { dtype: "F16", shape: [3], bytes: bytesOf(halves) } });
    const d = loadSafetensors(bytes);
    const a = d.a as Tensor;
    expect(Object.getOwnPropertyDescriptor(a, "data")!.get).toBeTypeOf("function"); // not read yet
    const data = a.data;
    expect(data.buffer).not.toBe(bytes.buffer);
    expect(Array.from(data)).toEqual(Array.from(values));
    expect(a.data).toBe(data); // once
    expect(Object.getOwnPropertyDescriptor(a, "data")!.value).toBe(data);
    expect(Array.from((d.h as Tensor).data)).toEqual([1, -2, 0.5]);
    expect({ ...(d.h as Tensor) }.data).toBe((d.h as Tensor).data); // spread and JSON see data
    (d.h as Tensor).data = new Float32Array(3);
    expect(Array.from((d.h as Tensor).data)).toEqual([0, 0, 0]);
  });

  test("{ view: true }: aligned F32 tensors are views of the file's buffer, no copy", () => {
    const bytes = file({ a: { dtype: "F32", shape: [7], bytes: bytesOf(values) }, h: { dtype: "F16", shape: [3], bytes: bytesOf(halves) } });
    const a = loadSafetensors(bytes, { view: true }).a as Tensor;
    expect(a.data.buffer).toBe(bytes.buffer);
    expect(Array.from(a.data)).toEqual(Array.from(values));
    // a view aliases the caller's bytes: writing to one shows in the other
    a.data[0] = 42;
    expect(new Float32Array(bytes.buffer, a.data.byteOffset, 1)[0]).toBe(42);
    // of a subarray of a larger buffer too
    const outer = new Uint8Array(bytes.length + 16);
    outer.set(bytes, 16);
    const b = loadSafetensors(outer.subarray(16), { view: true }).a as Tensor;
    expect(b.data.buffer).toBe(outer.buffer);
    expect(b.data[1]).toBe(values[1]);
  });

  test("{ view: true }: F32 at an offset that is not 4-byte aligned is copied", () => {
    const bytes = file({ a: { dtype: "F32", shape: [7], bytes: bytesOf(values) } }, { skew: 1 });
    const a = loadSafetensors(bytes, { view: true }).a as Tensor;
    expect(a.data.buffer).not.toBe(bytes.buffer);
    expect(Array.from(a.data)).toEqual(Array.from(values));
  });

  test("F16, BF16 and F64 at odd offsets widen correctly", () => {
    const d = loadSafetensors(
      file(
        {
          h: { dtype: "F16", shape: [3], bytes: bytesOf(halves) },
          b: { dtype: "BF16", shape: [2], bytes: bytesOf(Uint16Array.from([0x3f80, 0xc040])) },
          f: { dtype: "F64", shape: [2], bytes: bytesOf(Float64Array.from([0.1, -3])) },
        },
        { align: 1, skew: 1 },
      ),
    );
    expect(Array.from((d.h as Tensor).data)).toEqual([1, -2, 0.5]);
    expect(Array.from((d.b as Tensor).data)).toEqual([1, -3]);
    expect(Array.from((d.f as Tensor).data)).toEqual([Math.fround(0.1), -3]);
  });

  test("view is a boolean; unknown options are named", () => {
    const bytes = file({ a: { dtype: "F32", shape: [1], bytes: bytesOf(values.subarray(0, 1)) } });
    expect(() => loadSafetensors(bytes, { view: 1 } as never)).toThrow(/loadSafetensors view: expected a boolean, got number 1/);
    expect(() => loadSafetensors(bytes, { copy: true } as never)).toThrow(/unknown option "copy"/);
  });
});

describe("the header is data, never code", () => {
  const one = (dtype = "F32") => ({ dtype, shape: [1], bytes: bytesOf(Float32Array.from([3])) });

  test('a tensor named "__proto__" is an ordinary key; the result has no prototype to pollute', () => {
    const d = loadSafetensors(file({ ["__proto__"]: one(), constructor: one(), toString: one(), hasOwnProperty: one() }));
    expect(Object.getPrototypeOf(d)).toBeNull();
    expect(Object.keys(d).sort()).toEqual(["__proto__", "constructor", "hasOwnProperty", "toString"]);
    for (const k of Object.keys(d)) expect(Array.from((d[k] as Tensor).data), k).toEqual([3]);
    expect(Object.hasOwn(d, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).shape).toBeUndefined(); // Object.prototype untouched
  });

  test("a missing name is undefined, not something from Object.prototype", () => {
    const d = loadSafetensors(file({ a: one() }));
    expect(d.constructor).toBeUndefined();
    expect(d.toString).toBeUndefined();
  });

  test("empty tensors (begin = end) may share an offset with another tensor", () => {
    const header = {
      e1: { dtype: "F32", shape: [0], data_offsets: [0, 0] },
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      e2: { dtype: "I64", shape: [0, 3], data_offsets: [4, 4] },
      e3: { dtype: "F16", shape: [0], data_offsets: [8, 8] },
    };
    const json = new TextEncoder().encode(JSON.stringify(header));
    const bytes = new Uint8Array(8 + json.length + 8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
    bytes.set(json, 8);
    bytes.set(bytesOf(Float32Array.from([1, 2])), 8 + json.length);
    const d = loadSafetensors(bytes);
    expect(Array.from((d.a as Tensor).data)).toEqual([1, 2]);
    expect((d.e2 as IntegerTensor).shape).toEqual([0, 3]);
    expect((d.e1 as Tensor).data.length).toBe(0);
  });

  test("an overlap past a tensor in between is still found", () => {
    const header = {
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
      c: { dtype: "F32", shape: [1], data_offsets: [12, 16] },
    };
    const json = new TextEncoder().encode(JSON.stringify(header));
    const bytes = new Uint8Array(8 + json.length + 16);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
    bytes.set(json, 8);
    expect(() => loadSafetensors(bytes)).toThrow(/"b".data_offsets: expected bytes of its own, got bytes of "a" too \(the tensors overlap\)/);
  });
});
