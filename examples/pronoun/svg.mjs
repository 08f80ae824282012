// SVG heatmaps of attention: for each sentence, one panel per layer and head (rows attend to
// columns), then the pointer row: where "it" points, the model's answer.
const CELL = 18;
const LABEL = 90;
const esc = (s) => s.replace(/[<&>]/g, (c) => ({ "<": "&lt;", "&": "&amp;", ">": "&gt;" })[c]);
const shade = (p) => {
  const s = Math.round(255 * (1 - p));
  return `rgb(${s},${s},255)`;
};

// results: [{ sentence, words, it, referent, probs, weights: [{ data, shape: [H, L, L] }] }]
export function attentionSvg(results) {
  const parts = [];
  let y = 10;
  let width = 0;
  for (const r of results) {
    const L = r.words.length;
    const heads = r.weights[0].shape[0];
    const panel = LABEL + L * CELL + 70;
    width = Math.max(width, heads * panel + 20);
    parts.push(`<text x="10" y="${y + 16}" font-size="16" font-weight="bold">"${esc(r.sentence)}": it = ${esc(r.referent)}</text>`);
    y += 30;
    r.weights.forEach((w, layer) => {
      for (let h = 0; h < heads; h++) {
        const x0 = 10 + h * panel;
        parts.push(`<text x="${x0 + LABEL}" y="${y + 12}" font-size="12">layer ${layer + 1}, head ${h + 1}</text>`);
        for (let i = 0; i < L; i++) {
          const yi = y + 20 + i * CELL;
          parts.push(
            `<text x="${x0 + LABEL - 4}" y="${yi + 13}" font-size="11" text-anchor="end"${i === r.it ? ' font-weight="bold"' : ""}>${esc(r.words[i])}</text>`,
          );
          for (let j = 0; j < L; j++) parts.push(cell(x0 + LABEL + j * CELL, yi, w.data[(h * L + i) * L + j], r.words[i], r.words[j]));
        }
        columnLabels(parts, r.words, x0, y + 24 + L * CELL);
      }
      y += L * CELL + 100;
    });
    parts.push(`<text x="${10 + LABEL}" y="${y + 12}" font-size="12">pointer head: where "it" points (the answer)</text>`);
    parts.push(`<text x="${10 + LABEL - 4}" y="${y + 33}" font-size="11" text-anchor="end" font-weight="bold">it</text>`);
    r.probs.forEach((p, j) => parts.push(cell(10 + LABEL + j * CELL, y + 20, p, "it", r.words[j])));
    columnLabels(parts, r.words, 10, y + 24 + CELL);
    y += CELL + 110;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join("\n")}\n</svg>\n`;
}

function cell(x, y, p, from, to) {
  return `<rect x="${x}" y="${y}" width="${CELL - 1}" height="${CELL - 1}" fill="${shade(p)}"><title>${esc(from)} → ${esc(to)}: ${(p * 100).toFixed(1)}%</title></rect>`;
}

function columnLabels(parts, words, x0, y) {
  words.forEach((word, j) => {
    const x = x0 + LABEL + j * CELL + 12;
    parts.push(`<text x="${x}" y="${y}" font-size="11" transform="rotate(60 ${x} ${y})">${esc(word)}</text>`);
  });
}
