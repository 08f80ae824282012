// The one computation every runtime performs on the built package, so their bits can be compared:
// causal attention with a mask-free GQA layout and a 2-layer encoder, on inputs made from a
// formula (no random generator whose output could differ).
export function fixedInputs(n, salt) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.fround(Math.sin((i + 1) * 0.7123 + salt) * 0.9);
  return a;
}

/** Float32Array of the outputs, concatenated */
export function fixedCase(lib) {
  const q = lib.tensor(fixedInputs(2 * 4 * 37 * 24, 1), [2, 4, 37, 24]);
  const k = lib.tensor(fixedInputs(2 * 2 * 70 * 24, 2), [2, 2, 70, 24]);
  const attention = lib.scaledDotProductAttention(q, k, k, { isCausal: true, causalAlignment: "bottom-right", enableGqa: true });
  const encoder = new lib.TransformerEncoder({ layer: { dModel: 32, nhead: 4, dimFeedforward: 64, activation: "gelu" }, numLayers: 2, norm: true });
  encoder.loadStateDict(
    Object.fromEntries(
      encoder.params().map((p, i) => [
        p.key,
        lib.tensor(
          fixedInputs(
            p.shape.reduce((x, y) => x * y, 1),
            10 + i,
          ).map((x) => x * 0.3),
          p.shape,
        ),
      ]),
    ),
  );
  const x = lib.tensor(fixedInputs(3 * 11 * 32, 3), [3, 11, 32]);
  const y = encoder.forward(x, {
    srcKeyPaddingMask: lib.tensor(
      Uint8Array.from({ length: 33 }, (_, i) => (i % 11 > 8 ? 1 : 0)),
      [3, 11],
    ),
  });
  encoder.dispose();
  const out = new Float32Array(attention.data.length + y.data.length);
  out.set(attention.data);
  out.set(y.data, attention.data.length);
  return out;
}

/** the outputs' bits as hex, for exact comparison across runtimes */
export function bits(f32) {
  return Array.from(new Uint32Array(f32.buffer, f32.byteOffset, f32.length), (u) => u.toString(16)).join(",");
}
