// The one computation every runtime performs on the built package, so their bits can be compared:
// causal attention with a mask-free GQA layout and a 2-layer encoder, on inputs made from a
// formula (no random generator whose output could differ); then the same encoder with f16, q8 and
// q4 weights, and attention over keys and values stored as f16 and q8 (read in place, and widened).
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
  const dict = weightsOf(lib, encoder);
  encoder.loadStateDict(dict);
  const x = lib.tensor(fixedInputs(3 * 11 * 32, 3), [3, 11, 32]);
  const srcKeyPaddingMask = lib.tensor(
    Uint8Array.from({ length: 33 }, (_, i) => (i % 11 > 8 ? 1 : 0)),
    [3, 11],
  );
  const outputs = [attention.data, encoder.forward(x, { srcKeyPaddingMask }).data];
  for (const weights of ["f16", "q8", "q4"]) {
    encoder.loadStateDict(dict, "", { weights });
    outputs.push(encoder.forward(x, { srcKeyPaddingMask }).data);
  }
  encoder.dispose();
  for (const dtype of ["f16", "q8"]) {
    for (const [Lq, E] of [
      [1, 32],
      [5, 24],
    ]) {
      const [kv, v] = [4, 5].map((salt) => lib.residentTensor([1, 2, 70, E], fixedInputs(2 * 70 * E, salt), { dtype }));
      const query = lib.tensor(fixedInputs(4 * Lq * E, 6), [1, 4, Lq, E]);
      outputs.push(lib.scaledDotProductAttention(query, kv, v, { enableGqa: true }).data);
      kv.dispose();
      v.dispose();
    }
  }
  const out = new Float32Array(outputs.reduce((n, o) => n + o.length, 0));
  let at = 0;
  for (const o of outputs) {
    out.set(o, at);
    at += o.length;
  }
  return out;
}

// the encoder's float32 state dict, from the formula
function weightsOf(lib, encoder) {
  return Object.fromEntries(
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
  );
}

/** the outputs' bits as hex, for exact comparison across runtimes */
export function bits(f32) {
  return Array.from(new Uint32Array(f32.buffer, f32.byteOffset, f32.length), (u) => u.toString(16)).join(",");
}
