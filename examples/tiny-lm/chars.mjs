// The tiny LM's tokenizer: one character a token, ids in the order of vocab.json.

/** ids of `text`; a character the model never saw is an error naming it */
export function encode(vocab, text) {
  return Int32Array.from(text, (c) => {
    const id = vocab.indexOf(c);
    if (id < 0) throw new Error(`the tiny LM knows no ${JSON.stringify(c)}; it knows: ${vocab.join("")}`);
    return id;
  });
}

export const decode = (vocab, ids) => Array.from(ids, (id) => vocab[id]).join("");

/**
 * The next characters after `prompt`, one at a time, from a cache that keeps the past: a prefill,
 * then one forward of one token per character (greedy: the likeliest character each time).
 */
export function* continuation(model, vocab, prompt, maxNewTokens) {
  const cache = model.createCache();
  try {
    let logits = model.forward(encode(vocab, prompt), { cache, lastOnly: true });
    for (let n = 0; n < maxNewTokens; n++) {
      const next = argmax(logits.data);
      yield vocab[next];
      logits = model.forward(Int32Array.of(next), { cache, lastOnly: true });
    }
  } finally {
    cache.dispose();
  }
}

function argmax(xs) {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}
