// Hostile variants of honest tensors, for test/hostile.test.ts. Each variant is a data array, a
// shape or a whole tensor-like object that lies: typed-array subclasses whose length, byteLength or
// byteOffset getters lie, Proxies, a lying Symbol.toStringTag, Symbol.species, shapes and data that
// answer differently on a later read, shape arrays whose elements are getters or whose iteration
// lies. Each comes with its "twins": the honest inputs whose results a library that reads it
// correctly may return (empty when the only right answer is an error).

export type Data = Float32Array | Uint8Array;
export interface Honest {
  data: Data;
  shape: number[];
}

/** Where the variant goes: a tensor argument, or the raw data / shape argument of tensor() and residentTensor(). */
export type Level = "tensor" | "data" | "shape";

export interface Hostile {
  what: string;
  /** The tensor-like (level "tensor"), data (level "data") or shape (level "shape") to pass. */
  value: unknown;
  /** Honest tensors whose results are acceptable; [] when only an error is. */
  twins: Honest[];
}

export interface Family {
  name: string;
  /** How many sub-variants `make` distinguishes by `option % options`. */
  options: number;
  /** The levels it can be used at ("tensor" always works for a family that supports "data" or "shape"). */
  levels: Level[];
  /** Whether it answers honestly for `after` reads and lies afterwards. */
  changes?: boolean;
  /** A fresh hostile value (getters count their reads from here). `after` is how many reads stay honest, for the families that change. */
  make(honest: Honest, option: number, after: number): Hostile;
}

const TAG = Symbol.toStringTag;
const lengthOf = (x: Data) => x.length;

// a getter that answers values[0], values[1], ... and then the last one forever
function sequence(...values: unknown[]): () => unknown {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}

// a copy of `src` as an instance of a subclass of its own type, with getters overridden
function subclassed(src: Data, getters: Record<string, () => unknown>, statics: Record<PropertyKey, unknown> = {}): Data {
  const Base = src.constructor as unknown as new (n: number) => Data;
  const Lying = class extends (Base as unknown as typeof Float32Array) {} as unknown as new (n: number) => Data;
  for (const [key, get] of Object.entries(getters)) Object.defineProperty(Lying.prototype, key, { get, configurable: true });
  for (const key of Reflect.ownKeys(statics)) Object.defineProperty(Lying, key, { get: () => statics[key as string], configurable: true });
  const copy = new Lying(lengthOf(src));
  copy.set(src as never);
  return copy;
}

const withShape = (h: Honest, data: Data): Honest => ({ data, shape: [...h.shape] });

// the honest tensor, and the lie too when it is a shape that fits the data (a library that reads
// the shape once, at another moment or through another path, may fairly answer for it)
function shapeTwins(h: Honest, lie: unknown[]): Honest[] {
  const fitting = lie.every((d) => Number.isInteger(d) && (d as number) >= 0) && lie.reduce((a: number, d) => a * (d as number), 1) === h.data.length;
  return fitting && JSON.stringify(lie) !== JSON.stringify(h.shape) ? [h, { data: h.data, shape: lie as number[] }] : [h];
}
const asTensor = (data: unknown, shape: unknown) => ({ data, shape });

// the shapes a lying shape turns into: bigger, smaller, non-integer, another rank
function lieShape(shape: number[], option: number): unknown[] {
  const r = shape.length;
  const d = Math.floor(option / 9) % r;
  const set = (v: number) => shape.map((x, i) => (i === d ? v : x));
  const lies: unknown[][] = [
    set(shape[d] * 2 + 1),
    set(shape[d] * 16 + 3),
    set(0),
    set(NaN),
    set(-1),
    set(shape[d] + 0.5),
    [1, ...shape],
    r > 1 ? shape.slice(1) : [shape[0], 1],
    r === 3 && shape.join() === "2,3,4" ? [200, 300, 400] : shape.map((x, i) => (i === 0 ? x * 100 : x)),
  ];
  return lies[option % lies.length];
}

// element values for the impostors, in the range of each type
const asBytes = (x: Data) => Uint8Array.from(x, (v) => Math.round(Math.abs(v) * 100) & 0xff);

export const families: Family[] = [
  {
    name: "typed-array subclass whose length getter lies",
    options: 10,
    levels: ["data"],
    make(h, option) {
      const n = h.data.length;
      const lies = [n + 1, n - 1, 0, NaN, 2 * n + 8, 2 ** 32, -1, undefined];
      const what =
        option % 10 < 8 ? `length ${String(lies[option % 10])}` : option % 10 === 8 ? `length ${n} then ${4 * n + 4}` : `length ${n} then 1`;
      const get = option % 10 < 8 ? () => lies[option % 10] : option % 10 === 8 ? sequence(n, 4 * n + 4) : sequence(n, 1);
      return { what: `data: ${what}`, value: subclassed(h.data, { length: get }), twins: [h] };
    },
  },
  {
    name: "typed-array subclass whose byteLength getter lies",
    options: 10,
    levels: ["data"],
    make(h, option) {
      const b = h.data.byteLength;
      const lies = [b - 4, 0, NaN, undefined, b + 64, 1, -16, 2 ** 33];
      const what =
        option % 10 < 8 ? `byteLength ${String(lies[option % 10])}` : option % 10 === 8 ? `byteLength ${b} then 0` : `byteLength ${b} then NaN`;
      const get = option % 10 < 8 ? () => lies[option % 10] : option % 10 === 8 ? sequence(b, 0) : sequence(b, NaN);
      return { what: `data: ${what}`, value: subclassed(h.data, { byteLength: get }), twins: [h] };
    },
  },
  {
    name: "typed-array subclass whose byteOffset getter lies",
    options: 4,
    levels: ["data"],
    make(h, option) {
      const lies = [4, NaN, 2 ** 40, -4];
      return { what: `data: byteOffset ${lies[option % 4]}`, value: subclassed(h.data, { byteOffset: () => lies[option % 4] }), twins: [h] };
    },
  },
  {
    name: "typed-array subclass whose length and byteLength agree with the shape but not with its real elements",
    options: 2,
    levels: ["data"],
    make(h, option) {
      const n = h.data.length;
      const bpe = (h.data.constructor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
      if (option % 2 === 0) {
        // really shorter: only an error is right (when it is really shorter at all)
        const m = Math.floor(n / 2);
        const real = h.data.slice(0, m);
        return {
          what: `data: ${m} real elements claiming ${n}`,
          value: subclassed(real, { length: () => n, byteLength: () => n * bpe }),
          twins: m === n ? [h] : [],
        };
      }
      // really longer: the first n elements, or an error
      const real = new (h.data.constructor as unknown as new (n: number) => Data)(n + 7);
      real.set(h.data as never);
      real.fill(3 as never, n);
      return {
        what: `data: ${n + 7} real elements claiming ${n}`,
        value: subclassed(real, { length: () => n, byteLength: () => n * bpe }),
        twins: [h],
      };
    },
  },
  {
    name: "typed-array subclass with a Symbol.species of another type",
    options: 3,
    levels: ["data"],
    make(h, option) {
      const species = [Uint8Array, Float64Array, Int32Array][option % 3];
      return { what: `data: Symbol.species ${species.name}`, value: subclassed(h.data, {}, { [Symbol.species]: species }), twins: [h] };
    },
  },
  {
    name: "Proxy around the typed array",
    options: 6,
    levels: ["data"],
    make(h, option) {
      const src = h.data.slice();
      const n = src.length;
      const reads = new Map<PropertyKey, number>();
      const forward = (t: Data, p: PropertyKey) => {
        const v = Reflect.get(t, p, t);
        return typeof v === "function" ? v.bind(t) : v;
      };
      const kinds: [string, ProxyHandler<Data>][] = [
        ["no traps", {}],
        ["forwarding every read to the array", { get: forward }],
        [`forwarding, length ${n + 5}`, { get: (t, p) => (p === "length" ? n + 5 : forward(t, p)) }],
        ["forwarding, byteLength NaN", { get: (t, p) => (p === "byteLength" ? NaN : forward(t, p)) }],
        [
          `forwarding, length ${n} then ${3 * n + 9}`,
          { get: (t, p) => (p === "length" ? ((reads.set(p, (reads.get(p) ?? 0) + 1).get(p) as number) === 1 ? n : 3 * n + 9) : forward(t, p)) },
        ],
        [
          "forwarding, each element honest once and 7 afterwards",
          {
            get: (t, p) => {
              if (typeof p === "string" && /^\d+$/.test(p)) {
                const k = (reads.get(p) ?? 0) + 1;
                reads.set(p, k);
                return k === 1 ? t[Number(p)] : 7;
              }
              return forward(t, p);
            },
          },
        ],
      ];
      const [what, handler] = kinds[option % kinds.length];
      return { what: `data: Proxy, ${what}`, value: new Proxy(src, handler), twins: [withShape(h, src)] };
    },
  },
  {
    name: "data of another type with a lying Symbol.toStringTag",
    options: 16,
    levels: ["data"],
    make(h, option) {
      // a float tensor's data claims to be a Float32Array; a mask's, a Uint8Array or a Float32Array
      const float = h.data instanceof Float32Array;
      const claim = float ? "Float32Array" : ["Uint8Array", "Float32Array"][Math.floor(option / 8) % 2];
      const values = Float32Array.from(h.data);
      const tagged = <T extends object>(x: T): T => Object.defineProperty(x, TAG, { value: claim, configurable: true });
      const kinds: [string, () => { value: unknown; elements: ArrayLike<number> }][] = [
        [
          "a Uint8Array",
          () => {
            const u = asBytes(values);
            return { value: tagged(u), elements: u };
          },
        ],
        [
          "an Int16Array",
          () => {
            const u = Int16Array.from(values, (v) => Math.round(v * 1000));
            return { value: tagged(u), elements: u };
          },
        ],
        [
          "a Float64Array",
          () => {
            const u = Float64Array.from(values);
            return { value: tagged(u), elements: u };
          },
        ],
        [
          "an Array",
          () => {
            const u = Array.from(values);
            return { value: tagged(u), elements: u };
          },
        ],
        [
          "a plain object with length and elements",
          () => {
            const u = Array.from(values);
            return { value: tagged({ ...u, length: u.length }), elements: u };
          },
        ],
        [
          "a plain object with length, elements and a lying byteLength",
          () => {
            const u = Array.from(values);
            return { value: tagged({ ...u, length: u.length, byteLength: 4 }), elements: u };
          },
        ],
        [
          "a DataView",
          () => {
            const u = new DataView(values.buffer.slice(0));
            return { value: tagged(u), elements: values };
          },
        ],
        [
          float ? "a Uint8Array of 4n bytes" : "a Float32Array",
          () => {
            if (float) {
              const u = new Uint8Array(values.buffer.slice(0));
              return { value: tagged(u), elements: u };
            }
            const u = Float32Array.from(h.data);
            return { value: tagged(u), elements: u };
          },
        ],
      ];
      const [what, make] = kinds[option % kinds.length];
      const { value, elements } = make();
      // by value, as the type it claims to be; or, where its real type is a tensor type, as what it is
      const twins: Honest[] = [];
      if (elements.length === h.data.length)
        twins.push({ data: claim === "Float32Array" ? Float32Array.from(elements) : Uint8Array.from(elements), shape: [...h.shape] });
      // (a mask may be either: a real Uint8Array is a boolean mask whatever its tag says)
      if ((value instanceof Float32Array || value instanceof Uint8Array) && value.length === h.data.length)
        twins.push({ data: value.slice(), shape: [...h.shape] });
      return { what: `data: ${what} claiming to be a ${claim}`, value, twins };
    },
  },
  {
    name: "shape array whose elements are getters that change",
    changes: true,
    options: 45,
    levels: ["shape"],
    make(h, option, after) {
      const lie = lieShape(h.shape, option);
      const arr = [...h.shape];
      arr.forEach((x, i) => {
        let reads = 0;
        Object.defineProperty(arr, i, { get: () => (++reads <= after ? x : (lie[i] ?? x)), enumerable: true, configurable: true });
      });
      return {
        what: `shape: elements are getters, ${JSON.stringify(h.shape)} for ${after} reads, then ${JSON.stringify(lie)}`,
        value: arr,
        twins: lie.length === h.shape.length ? shapeTwins(h, lie) : [h],
      };
    },
  },
  {
    name: "Array subclass whose iteration and index access disagree",
    options: 18,
    levels: ["shape"],
    make(h, option) {
      const lie = lieShape(h.shape, option >> 1) as number[];
      const [elements, iterated] = option % 2 ? [h.shape, lie] : [lie, h.shape];
      class LyingShape extends Array<number> {
        override [Symbol.iterator]() {
          return iterated[Symbol.iterator]();
        }
        override entries() {
          return iterated.entries();
        }
        override values() {
          return iterated.values();
        }
        override keys() {
          return iterated.keys();
        }
      }
      const arr = new LyingShape();
      arr.push(...elements);
      return { what: `shape: elements ${JSON.stringify(elements)}, iterating as ${JSON.stringify(iterated)}`, value: arr, twins: shapeTwins(h, lie) };
    },
  },
  {
    name: "Proxy around the shape array",
    changes: true,
    options: 9,
    levels: ["shape"],
    make(h, option, after) {
      const lie = lieShape(h.shape, option);
      let reads = 0;
      const value = new Proxy([...h.shape], {
        get: (t, p, recv) => {
          if (p === "length" || (typeof p === "string" && /^\d+$/.test(p))) {
            const source = ++reads <= after * (h.shape.length + 1) ? t : lie;
            return (source as unknown[])[p as never];
          }
          return Reflect.get(t, p, recv);
        },
      });
      return {
        what: `shape: Proxy, honest for ${after * (h.shape.length + 1)} reads, then ${JSON.stringify(lie)}`,
        value,
        twins: shapeTwins(h, lie),
      };
    },
  },
  {
    name: "tensor whose shape getter answers differently on a later read",
    changes: true,
    options: 9,
    levels: ["tensor"],
    make(h, option, after) {
      const lie = lieShape(h.shape, option);
      let reads = 0;
      const value = Object.defineProperty({ data: h.data }, "shape", { get: () => (++reads <= after ? [...h.shape] : [...lie]), enumerable: true });
      return { what: `tensor: shape ${JSON.stringify(h.shape)} for ${after} reads, then ${JSON.stringify(lie)}`, value, twins: shapeTwins(h, lie) };
    },
  },
  {
    name: "tensor whose data getter answers differently on a later read",
    changes: true,
    options: 6,
    levels: ["tensor"],
    make(h, option, after) {
      const n = h.data.length;
      const Ctor = h.data.constructor as unknown as { new (n: number): Data; from(x: ArrayLike<number>): Data };
      const kinds: [string, Data | Float64Array][] = [
        ["half as long", h.data.slice(0, n >> 1)],
        ["longer", Ctor.from([...h.data, 1, 2, 3, 4, 5, 6, 7])],
        ["the same length, other values", Ctor.from(Array.from(h.data, (_, i) => (i % 3) - 1))],
        ["the same length, NaN", Ctor.from(new Array<number>(n).fill(NaN))],
        ["empty", new Ctor(0)],
        ["a Float64Array", Float64Array.from(h.data)],
      ];
      const [what, later] = kinds[option % kinds.length];
      let reads = 0;
      const value = Object.defineProperty({ shape: [...h.shape] }, "data", { get: () => (++reads <= after ? h.data : later), enumerable: true });
      // what it answered first, or (when it fits the shape and is of the right type) what it answered later
      const twins: Honest[] = [h];
      if (later.length === n && later.constructor === h.data.constructor) twins.push({ data: later as Data, shape: [...h.shape] });
      return { what: `tensor: data honest for ${after} reads, then ${what}`, value, twins };
    },
  },
];

/** A hostile variant at a level: data and shape families are wrapped into a tensor for level "tensor". */
export function hostile(family: Family, level: Level, honest: Honest, option: number, after: number): Hostile {
  const v = family.make(honest, option, after);
  if (level !== "tensor" || family.levels.includes("tensor")) return v;
  return { ...v, value: family.levels.includes("data") ? asTensor(v.value, [...honest.shape]) : asTensor(honest.data, v.value) };
}

/** Whether a family can be used at a level. */
export function fits(family: Family, level: Level): boolean {
  return level === "tensor" || family.levels.includes(level);
}
