// A minimal ONNX model writer (protobuf by hand), so the benchmark builds its onnxruntime-web
// models at run time with no Python and nothing large committed. Field numbers are onnx.proto's.

// protobuf bytes as a list of pieces (small fields gathered, big tensors kept as they are), so a
// model of hundreds of megabytes is copied once, at the end
class Writer {
  parts = [];
  small = [];
  length = 0;
  byte(b) {
    this.small.push(b);
    this.length++;
  }
  piece(bytes) {
    if (this.small.length) this.parts.push(Uint8Array.from(this.small));
    this.small = [];
    this.parts.push(bytes);
    this.length += bytes.length;
  }
  varint(n) {
    let v = BigInt.asUintN(64, BigInt(n));
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v) b |= 0x80;
      this.byte(b);
    } while (v);
    return this;
  }
  tag(field, wire) {
    return this.varint((field << 3) | wire);
  }
  int(field, n) {
    return this.tag(field, 0).varint(n);
  }
  float(field, x) {
    this.tag(field, 5);
    for (const b of new Uint8Array(new Float32Array([x]).buffer)) this.byte(b);
    return this;
  }
  raw(field, bytes) {
    this.tag(field, 2).varint(bytes.length);
    this.piece(bytes);
    return this;
  }
  str(field, s) {
    return this.raw(field, new TextEncoder().encode(s));
  }
  msg(field, build) {
    const w = new Writer();
    build(w);
    this.tag(field, 2).varint(w.length);
    for (const part of w.pieces()) this.piece(part);
    return this;
  }
  pieces() {
    return this.small.length ? [...this.parts, Uint8Array.from(this.small)] : this.parts;
  }
  bytes() {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const part of this.pieces()) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}

const FLOAT = 1;
const UINT8 = 2;
const INT8 = 3;
const INT32 = 6;
const INT64 = 7;
// an initializer's type name -> its TensorProto data type and typed array
const TYPES = {
  float: [FLOAT, Float32Array],
  uint8: [UINT8, Uint8Array],
  int8: [INT8, Int8Array],
  int32: [INT32, Int32Array],
  int64: [INT64, BigInt64Array],
};

// dims: numbers or strings (symbolic); type: a TYPES name (default float)
function valueInfo(w, name, dims, type = "float") {
  w.str(1, name).msg(2, (t) =>
    t.msg(1, (tt) =>
      tt.int(1, TYPES[type][0]).msg(2, (s) => dims.forEach((d) => s.msg(1, (dim) => (typeof d === "number" ? dim.int(1, d) : dim.str(2, d))))),
    ),
  );
}

function attribute(w, name, value) {
  w.str(1, name);
  if (Array.isArray(value)) {
    value.forEach((v) => w.int(8, v));
    w.int(20, 7); // INTS
  } else if (Number.isInteger(value))
    w.int(3, value).int(20, 2); // INT
  else w.float(2, value).int(20, 1); // FLOAT
}

/**
 * model({ inputs: [[name, dims, type?]], outputs: [[name, dims, type?]], nodes: [{ op, inputs, outputs, attrs?, domain? }],
 *         initializers: [[name, dims, Float32Array | Int8Array | Uint8Array | number[], "int64" | "int8" | "uint8"?]] }) -> Uint8Array of an ONNX model (opset 17 + com.microsoft 1)
 */
export function model({ inputs, outputs, nodes, initializers = [] }) {
  const w = new Writer();
  w.int(1, 8); // ir_version
  w.str(2, "wasm-attention bench");
  w.msg(8, (o) => o.str(1, "").int(2, 17));
  w.msg(8, (o) => o.str(1, "com.microsoft").int(2, 1));
  w.msg(7, (g) => {
    nodes.forEach((n, i) =>
      g.msg(1, (nw) => {
        n.inputs.forEach((x) => nw.str(1, x));
        n.outputs.forEach((x) => nw.str(2, x));
        nw.str(3, `${n.op}_${i}`).str(4, n.op);
        if (n.domain) nw.str(7, n.domain);
        for (const [k, v] of Object.entries(n.attrs ?? {})) nw.msg(5, (a) => attribute(a, k, v));
      }),
    );
    g.str(2, "bench");
    for (const [name, dims, data, type = "float"] of initializers) {
      const [code, Typed] = TYPES[type];
      const raw = data instanceof Typed ? data : Typed.from(data, type === "int64" ? BigInt : Number);
      g.msg(5, (t) => {
        dims.forEach((d) => t.int(1, d));
        t.int(2, code)
          .str(8, name)
          .raw(9, new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
      });
    }
    inputs.forEach(([name, dims, type]) => g.msg(11, (v) => valueInfo(v, name, dims, type)));
    outputs.forEach(([name, dims, type]) => g.msg(12, (v) => valueInfo(v, name, dims, type)));
  });
  return w.bytes();
}
