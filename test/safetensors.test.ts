import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { ArgumentError, ShapeError, type Tensor, loadSafetensors } from "../src/index.js";
import { type Stored, decode, fixture } from "./fixtures.js";

// a safetensors file from a header object and a data section
function file(
  header: Record<string, unknown>,
  data: Uint8Array,
  { pad = 0, lengthOverride }: { pad?: number; lengthOverride?: bigint } = {},
): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header) + " ".repeat(pad));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const f32bytes = (...xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

describe("loadSafetensors", () => {
  test("F16 and BF16 widen exactly: subnormals, +-0, +-Infinity, NaN (file written by PyTorch)", () => {
    const t = loadSafetensors(readFileSync(new URL("./fixtures/dtypes.safetensors", import.meta.url))) as Record<string, Tensor>;
    const want = fixture<Record<string, Stored>>("dtypes.json");
    expect(t.half.shape).toEqual([3, 4]);
    expect(t.brain.shape).toEqual([15]);
    for (const name of ["half", "brain"]) {
      const w = decode(want[name]);
      t[name].data.forEach((x, i) => expect(Object.is(x, w[i]) || (Number.isNaN(x) && Number.isNaN(w[i]))).toBe(true));
    }
    expect(Object.is(t.half.data[1], -0)).toBe(true);
    expect(t.half.data[6]).toBe(2 ** -24); // the smallest f16 subnormal
    expect(t.scalar.shape).toEqual([]);
    expect(Array.from(t.scalar.data)).toEqual([1.5]);
  });

  test("data in any order, at unaligned offsets, from a Uint8Array with a non-zero byteOffset, metadata skipped", () => {
    const data = new Uint8Array([0, 0, 0, ...f32bytes(3, 4), ...f32bytes(1, 2)]);
    const bytes = file(
      {
        __metadata__: { a: "b" },
        second: { dtype: "F32", shape: [2], data_offsets: [3, 11] },
        first: { dtype: "F32", shape: [1, 2], data_offsets: [11, 19] },
      },
      data,
    );
    const shifted = new Uint8Array(bytes.length + 5);
    shifted.set(bytes, 5);
    for (const input of [bytes, bytes.slice().buffer, shifted.subarray(5)]) {
      const t = loadSafetensors(input) as Record<string, Tensor>;
      expect(Object.keys(t).sort()).toEqual(["first", "second"]);
      expect(Array.from(t.first.data)).toEqual([1, 2]);
      expect(t.first.shape).toEqual([1, 2]);
      expect(Array.from(t.second.data)).toEqual([3, 4]);
    }
  });

  const ok = { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const malformed: [string, () => Uint8Array | ArrayBuffer, typeof ArgumentError, RegExp][] = [
    ["too short", () => new Uint8Array(5), ArgumentError, /loadSafetensors bytes: expected at least the 8 bytes of the header length, got 5 bytes/],
    [
      "header length past the end",
      () => file(ok, f32bytes(1, 2), { lengthOverride: 10_000n }),
      ArgumentError,
      /loadSafetensors header length: expected at most the \d+ bytes after it in the \d+-byte buffer, got 10000/,
    ],
    [
      "header length of 2^64 - 1",
      () => file(ok, f32bytes(1, 2), { lengthOverride: 2n ** 64n - 1n }),
      ArgumentError,
      /header length: expected at most .*, got 1844674407370955\d+/,
    ],
    [
      "invalid JSON",
      () => {
        const b = file(ok, f32bytes(1, 2));
        b[9] = 0x7b;
        b[10] = 0x7b;
        return b;
      },
      ArgumentError,
      /loadSafetensors header: expected valid UTF-8 JSON, got bytes that are not/,
    ],
    [
      "header not an object",
      () => file([1, 2] as never, f32bytes(1, 2)),
      ArgumentError,
      /loadSafetensors header: expected a JSON object, got an Array/,
    ],
    [
      "offsets past the data",
      () => file({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, f32bytes(1, 2)),
      ArgumentError,
      /"a".data_offsets: expected an end within the 8 bytes of data, got \[0, 16\]/,
    ],
    [
      "offsets reversed",
      () => file({ a: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }, f32bytes(1, 2)),
      ArgumentError,
      /"a".data_offsets: expected \[begin, end\] with 0 <= begin <= end, got \[8,4\]/,
    ],
    [
      "overlapping tensors",
      () => file({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, f32bytes(1, 2)),
      ArgumentError,
      /"b".data_offsets: expected bytes of its own, got bytes of "a" too \(the tensors overlap\)/,
    ],
    [
      "shape does not match the bytes",
      () => file({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, f32bytes(1, 2)),
      ShapeError,
      /"a".data_offsets: expected a span of 12 bytes \(shape \[3\] of F32\), got 8 bytes/,
    ],
    [
      "unknown dtype, named with the supported ones",
      () => file({ a: { dtype: "F8_E4M3", shape: [8], data_offsets: [0, 8] } }, f32bytes(1, 2)),
      ArgumentError,
      /"a".dtype: expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, got "F8_E4M3"/,
    ],
    [
      "a dtype named after Object.prototype",
      () => file({ a: { dtype: "constructor", shape: [1], data_offsets: [0, 8] } }, f32bytes(1, 2)),
      ArgumentError,
      /"a".dtype: expected one of .*, got "constructor"/,
    ],
    [
      "a dtype named __proto__",
      () => file({ a: { dtype: "__proto__", shape: [1], data_offsets: [0, 8] } }, f32bytes(1, 2)),
      ArgumentError,
      /"a".dtype: expected one of .*, got "__proto__"/,
    ],
    [
      "a dtype named toString",
      () => file({ a: { dtype: "toString", shape: [1], data_offsets: [0, 8] } }, f32bytes(1, 2)),
      ArgumentError,
      /"a".dtype: expected one of .*, got "toString"/,
    ],
    [
      "bad shape",
      () => file({ a: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, f32bytes(1, 2)),
      ShapeError,
      /"a".shape: expected an array of non-negative integers, got \[-2\]/,
    ],
  ];
  for (const [what, make, cls, message] of malformed) {
    test(`malformed: ${what}`, () => {
      expect(() => loadSafetensors(make())).toThrow(cls);
      expect(() => loadSafetensors(make())).toThrow(message);
    });
  }

  test("not bytes at all is an ArgumentError", () => {
    expect(() => loadSafetensors("abc" as never)).toThrow(/loadSafetensors bytes: expected a Uint8Array or ArrayBuffer, got string abc/);
  });
});
