// Linear attention whose state follows an update rule (ONNX LinearAttention, opset 27): one key/value
// head and the group of query heads that reads it.
//
//   S_t = a_t S_{t-1} + k_t u_t^T          S (dk, dv), row d of S belongs to key dimension d
//   a_t = exp(g_t)                          "gated" rules; a scalar, or diag(exp(g_t)) (dk) per key dimension
//   u_t = beta_t (v_t - a_t S_{t-1}^T k_t)  delta rules; u_t = v_t otherwise
//   o_t = scale S_t^T q_t                   for each query head of the group
//
// Two forms of the same recurrence: linear_recurrent_f32 walks it token by token (decoding), and
// linear_chunked_f32 takes C tokens at a time with matrix products on gemm_f32 (prefill). Within a
// chunk of n tokens starting from S0, with lam_i = g_1 + ... + g_i (the decay's running sum inside the
// chunk) and Gamma_i = exp(lam_i), unrolling the rule gives (Yang et al., "Parallelizing Linear
// Transformers with the Delta Rule over Sequence Length", and Gated DeltaNet's chunked form):
//
//   U = T (diag(beta) V - diag(beta Gamma) K S0)        T = (I + A)^-1,
//   A_ij = beta_i (Gamma_i / Gamma_j) k_i . k_j  for j < i  (the UT transform of the WY representation)
//   O = scale (diag(Gamma) Q S0 + (M o Q K^T) U)         M_ij = Gamma_i / Gamma_j for j <= i, else 0
//   S_n = Gamma_n S0 + Ktilde^T U                        Ktilde_j = (Gamma_n / Gamma_j) k_j
//
// (without a delta rule U = V; without gating Gamma = 1). With a decay per key dimension Gamma_i is
// diag(exp(lam_i)), so Gamma_i / Gamma_j multiplies inside the dot products: those n x n products are
// built from sub-blocks of SUB rows (decayedGram), each factor exp(lam_t - lam_r) exp(lam_r - lam_j)
// taken through a boundary r with j < r <= t, so that for decays <= 0 no factor exceeds 1.
import { Act } from "../src/enums";
import { gemm_f32 } from "./gemm";
import { pack_f32_w, roundUp4, weightRows } from "./pack";
import { exp_f32, exp_f32x4, fma_f32x4 } from "./simd";

const F32: usize = 4;
// rows of the sub-blocks of decayedGram (a decay per key dimension)
const SUB: i32 = 16;

// ---------------------------------------------------------------------------------------------
// The recurrent form

// T tokens, one after another. Rows of q, k, v, out are qRow, kRow, vRow, outRow floats apart; query
// head h of the group (nq heads, maybe 0) starts qHead floats after the first, its output outHead.
//   s:     S (dk, dv), the state: read, then left holding the state after the last token
//   g:     the decay of token t at g + t * gDim floats: gDim 0 (no decay), 1 (one per token) or dk
//   beta:  one float per token (delta rules), else 0
//   work:  linear_recurrent_f32_workspace(dk, dv) bytes
export function linear_recurrent_f32(
  out: usize, outRow: i32, outHead: i32, s: usize,
  q: usize, qRow: i32, qHead: i32, nq: i32, k: usize, kRow: i32, v: usize, vRow: i32,
  g: usize, gDim: i32, beta: usize, work: usize, T: i32, dk: i32, dv: i32, scale: f32,
): void {
  const a = work; // dk: exp(g_t) per row of S
  const u = work + roundUp4(dk) * F32; // dv: what token t writes
  const rowBytes = <usize>dv * F32;
  for (let t = 0; t < T; t++) {
    const kTok = k + <usize>t * <usize>kRow * F32;
    const vTok = v + <usize>t * <usize>vRow * F32;
    // 1. a_t per row of S
    const gt = g + <usize>t * <usize>gDim * F32;
    if (gDim == 0) fill(a, 1, dk);
    else if (gDim == 1) fill(a, exp_f32(load<f32>(gt)), dk);
    else expInto(a, gt, dk);
    // 2. u_t = beta (v_t - sum_d a_d k_d S[d, :]) or v_t
    if (beta) {
      fill(u, 0, dv);
      for (let d = 0; d < dk; d++) axpy(u, load<f32>(a + <usize>d * F32) * load<f32>(kTok + <usize>d * F32), s + <usize>d * rowBytes, dv);
      const b = load<f32>(beta + <usize>t * F32);
      let c = 0;
      for (; c + 4 <= dv; c += 4) {
        const at = <usize>c * F32;
        v128.store(u + at, f32x4.mul(f32x4.splat(b), f32x4.sub(v128.load(vTok + at), v128.load(u + at))));
      }
      for (; c < dv; c++) store<f32>(u + <usize>c * F32, b * (load<f32>(vTok + <usize>c * F32) - load<f32>(u + <usize>c * F32)));
    } else copy(u, vTok, dv);
    // 3. S[d, :] = a_d S[d, :] + k_d u_t, and each head's o_t += scale q_t[d] S[d, :]
    for (let h = 0; h < nq; h++) fill(out + (<usize>h * <usize>outHead + <usize>t * <usize>outRow) * F32, 0, dv);
    for (let d = 0; d < dk; d++) {
      const row = s + <usize>d * rowBytes;
      decayAdd(row, load<f32>(a + <usize>d * F32), load<f32>(kTok + <usize>d * F32), u, dv);
      for (let h = 0; h < nq; h++) {
        const qd = scale * load<f32>(q + (<usize>h * <usize>qHead + <usize>t * <usize>qRow + <usize>d) * F32);
        axpy(out + (<usize>h * <usize>outHead + <usize>t * <usize>outRow) * F32, qd, row, dv);
      }
    }
  }
}

export function linear_recurrent_f32_workspace(dk: i32, dv: i32): usize {
  return (roundUp4(dk) + roundUp4(dv)) * F32;
}

// ---------------------------------------------------------------------------------------------
// The chunked form

// The same recurrence and arguments as linear_recurrent_f32, C tokens at a time (any C >= 1; the last
// chunk may be shorter). work: linear_chunked_f32_workspace(C, dk, dv, gDim) bytes, 16-byte aligned.
export function linear_chunked_f32(
  out: usize, outRow: i32, outHead: i32, s: usize,
  q: usize, qRow: i32, qHead: i32, nq: i32, k: usize, kRow: i32, v: usize, vRow: i32,
  g: usize, gDim: i32, beta: usize, work: usize, T: i32, dk: i32, dv: i32, C: i32, scale: f32,
): void {
  layout(work, C, dk, dv, gDim);
  const perDim = gDim > 1;
  const lam: usize = gDim ? lm : 0;
  for (let c0 = 0; c0 < T; c0 += C) {
    const n = min(C, T - c0);
    // 1. the chunk's keys and values as contiguous rows; lam_i, the decay summed inside the chunk
    const K = rows(kc, k + <usize>c0 * <usize>kRow * F32, kRow, n, dk);
    const V = rows(vc, v + <usize>c0 * <usize>vRow * F32, vRow, n, dv);
    if (gDim) runningSum(lam, g + <usize>c0 * <usize>gDim * F32, n, gDim);
    pack_f32_w(kp, K, dk, n, dk); // K as the right operand of X K^T
    pack_f32_n(sp, s, dv, dk, dv); // S0 as the right operand of X S0
    // 2. U, what the chunk's tokens write (the WY representation of the delta rule); V without one
    let U = V;
    if (beta) {
      const b = beta + <usize>c0 * F32;
      // T = (I + A)^-1, A strictly lower, from K K^T
      if (perDim) decayedGram(gm, K, K, lam, n, dk, false);
      else matmul(gm, K, kp, 0, n, n, dk);
      utInverse(tm, gm, b, perDim ? 0 : lam, n);
      // U = T diag(beta) V + (-T diag(beta Gamma) K) S0
      expRows(xs, V, n, dv, 0, 0, 0, b, 1);
      pack_f32_n(xp, xs, dv, n, dv);
      matmul(um, tm, xp, 0, n, dv, n);
      expRows(xs, K, n, dk, lam, gDim, 0, b, -1);
      pack_f32_n(xp, xs, dk, n, dk);
      matmul(wk, tm, xp, 0, n, dk, n);
      matmul(um, wk, sp, um, n, dv, dk);
      U = um;
    }
    pack_f32_n(up, U, dv, n, dv); // U as the right operand of P U and Ktilde^T U
    // 3. each query head: O = scale diag(Gamma) Q S0 + (scale M o Q K^T) U
    for (let h = 0; h < nq; h++) {
      const Q = rows(qc, q + (<usize>h * <usize>qHead + <usize>c0 * <usize>qRow) * F32, qRow, n, dk);
      if (perDim) decayedGram(pm, Q, K, lam, n, dk, true);
      else matmul(pm, Q, kp, 0, n, n, dk);
      causalScale(pm, perDim ? 0 : lam, scale, n);
      expRows(xs, Q, n, dk, lam, gDim, 0, 0, scale);
      const dst = out + (<usize>h * <usize>outHead + <usize>c0 * <usize>outRow) * F32;
      const O = outRow == dv ? dst : om;
      matmul(O, xs, sp, 0, n, dv, dk);
      matmul(O, pm, up, O, n, dv, n);
      if (O != dst) for (let i = 0; i < n; i++) copy(dst + <usize>i * <usize>outRow * F32, O + <usize>i * <usize>dv * F32, dv);
    }
    // 4. the state after the chunk: S = Gamma_n S0 + Ktilde^T U
    const lamN = lam + <usize>(n - 1) * <usize>gDim * F32; // lam of the chunk's last token
    if (gDim) for (let d = 0; d < dk; d++) scaleRow(s + <usize>d * <usize>dv * F32, exp_f32(load<f32>(lamN + (perDim ? <usize>d * F32 : 0))), dv);
    decayedKeysT(kt, K, lam, gDim, n, dk);
    matmul(s, kt, up, s, dk, dv, n);
  }
}

export function linear_chunked_f32_workspace(C: i32, dk: i32, dv: i32, gDim: i32): usize {
  return layout(0, C, dk, dv, gDim);
}

// The scratch of linear_chunked_f32, laid out in the host's block: byte addresses, 16-byte aligned.
// Module globals, not an object: a kernel allocates nothing (every byte above heap_base is the host's),
// and each instance of the module (one per thread) has globals of its own.
let kc: usize = 0, vc: usize = 0, qc: usize = 0; // the chunk's rows of K (C, dk), V (C, dv), Q (C, dk)
let kp: usize = 0; // K packed as a right operand (C rows of dk)
let sp: usize = 0; // S0 packed (dk rows of dv)
let gm: usize = 0, tm: usize = 0, pm: usize = 0; // K K^T, T = (I + A)^-1, Q K^T: (C, C)
let xs: usize = 0; // (C, max(dk, dv)): an operand scaled by beta, the decay or the scale
let xp: usize = 0; // xs packed (C rows of max(dk, dv))
let um: usize = 0, wk: usize = 0; // U (C, dv), -T diag(beta Gamma) K (C, dk)
let up: usize = 0; // U packed (C rows of dv)
let om: usize = 0; // a head's output rows (C, dv)
let kt: usize = 0; // Ktilde^T (dk, C)
let lm: usize = 0; // lam (C, gDim)
let ys: usize = 0, ysp: usize = 0, blk: usize = 0; // decayedGram: scaled keys (C, dk), packed, a block (SUB, C)
let gw: usize = 0; // gemm_f32's workspace

// sets the globals above for a block at `base`; returns its size in bytes
function layout(base: usize, C: i32, dk: i32, dv: i32, gDim: i32): usize {
  let at = base;
  const dmax = max(dk, dv);
  kc = at; at += roundUp4(C * dk) * F32;
  vc = at; at += roundUp4(C * dv) * F32;
  qc = at; at += roundUp4(C * dk) * F32;
  kp = at; at += weightRows(C) * <usize>dk * F32;
  sp = at; at += weightRows(dv) * <usize>dk * F32;
  gm = at; at += roundUp4(C * C) * F32;
  tm = at; at += roundUp4(C * C) * F32;
  pm = at; at += roundUp4(C * C) * F32;
  xs = at; at += roundUp4(C * dmax) * F32;
  xp = at; at += weightRows(dmax) * <usize>C * F32;
  um = at; at += roundUp4(C * dv) * F32;
  wk = at; at += roundUp4(C * dk) * F32;
  up = at; at += weightRows(dv) * <usize>C * F32;
  om = at; at += roundUp4(C * dv) * F32;
  kt = at; at += roundUp4(C * dk) * F32;
  lm = at; at += roundUp4(C * max(gDim, 1)) * F32;
  if (gDim > 1) {
    ys = at; at += roundUp4(C * dk) * F32;
    ysp = at; at += weightRows(C) * <usize>dk * F32;
    blk = at; at += roundUp4(SUB * C) * F32;
  }
  gw = at; at += 32 * F32;
  return at - base;
}

// ---------------------------------------------------------------------------------------------
// The chunked form's pieces

// out (M, N) = a (M, K) . b (K, N) + residual (M, N), b packed by pack_f32_n; rows contiguous
@inline function matmul(out: usize, a: usize, b: usize, residual: usize, M: i32, N: i32, K: i32): void {
  gemm_f32(out, a, b, 0, residual, gw, M, N, K, Act.None);
}

// dst = src (K, N), rows srcRow floats apart, packed as gemm_f32's right operand for out = a . src:
// group g holds columns 32g..32g+31 as a (K, 32) block, dst + g * K * 32 floats; columns past N
// are zero (pack_f32_w does the same for a matrix given transposed)
function pack_f32_n(dst: usize, src: usize, srcRow: i32, K: i32, N: i32): void {
  const group = <usize>K * 32 * F32;
  for (let r = 0; r < K; r++) {
    const row = src + <usize>r * <usize>srcRow * F32;
    let at = dst + <usize>r * 32 * F32;
    let c = 0;
    for (; c + 32 <= N; c += 32) {
      for (let j: usize = 0; j < 128; j += 16) v128.store(at + j, v128.load(row + <usize>c * F32 + j));
      at += group;
    }
    if (c < N) for (let j = 0; j < 32; j++) store<f32>(at + <usize>j * F32, c + j < N ? load<f32>(row + <usize>(c + j) * F32) : 0);
  }
}

// src's n rows of width floats (srcRow apart) as contiguous rows: src itself when they already are,
// else copied to dst
function rows(dst: usize, src: usize, srcRow: i32, n: i32, width: i32): usize {
  if (srcRow == width) return src;
  for (let i = 0; i < n; i++) copy(dst + <usize>i * <usize>width * F32, src + <usize>i * <usize>srcRow * F32, width);
  return dst;
}

// lam (n, gDim): lam_i = g_0 + ... + g_i, row by row
function runningSum(lam: usize, g: usize, n: i32, gDim: i32): void {
  const row = <usize>gDim * F32;
  copy(lam, g, gDim);
  for (let i = 1; i < n; i++) {
    const prev = lam + <usize>(i - 1) * row;
    const at = lam + <usize>i * row;
    const gi = g + <usize>i * row;
    let d = 0;
    for (; d + 4 <= gDim; d += 4) v128.store(at + <usize>d * F32, f32x4.add(v128.load(prev + <usize>d * F32), v128.load(gi + <usize>d * F32)));
    for (; d < gDim; d++) store<f32>(at + <usize>d * F32, load<f32>(prev + <usize>d * F32) + load<f32>(gi + <usize>d * F32));
  }
}

// dst (n, width) = factor * beta_i * exp(sign * (lam_i - ref)) * src (n, width), src rows contiguous.
// lam (n, lamDim): lamDim 1 scales row i by one factor, lamDim = width scales each element; lam 0:
// no decay; ref (lamDim) 0: none; beta 0: none.
function expRows(dst: usize, src: usize, n: i32, width: i32, lam: usize, lamDim: i32, ref: usize, beta: usize, factor: f32, sign: f32 = 1): void {
  for (let i = 0; i < n; i++) {
    let f = factor;
    if (beta) f *= load<f32>(beta + <usize>i * F32);
    const from = src + <usize>i * <usize>width * F32;
    const to = dst + <usize>i * <usize>width * F32;
    if (lam && lamDim > 1) {
      const l = lam + <usize>i * <usize>lamDim * F32;
      let d = 0;
      for (; d + 4 <= width; d += 4) {
        const at = <usize>d * F32;
        let x = v128.load(l + at);
        if (ref) x = f32x4.sub(x, v128.load(ref + at));
        const e = exp_f32x4(f32x4.mul(x, f32x4.splat(sign)));
        v128.store(to + at, f32x4.mul(f32x4.mul(e, f32x4.splat(f)), v128.load(from + at)));
      }
      for (; d < width; d++) {
        const at = <usize>d * F32;
        const x = load<f32>(l + at) - (ref ? load<f32>(ref + at) : 0);
        store<f32>(to + at, exp_f32(sign * x) * f * load<f32>(from + at));
      }
    } else {
      if (lam) f *= exp_f32(sign * (load<f32>(lam + <usize>i * <usize>lamDim * F32) - (ref ? load<f32>(ref) : 0)));
      let d = 0;
      for (; d + 4 <= width; d += 4) v128.store(to + <usize>d * F32, f32x4.mul(f32x4.splat(f), v128.load(from + <usize>d * F32)));
      for (; d < width; d++) store<f32>(to + <usize>d * F32, f * load<f32>(from + <usize>d * F32));
    }
  }
}

// out (n, n), rows n apart: out_ij = sum_d x_id y_jd exp(lam_id - lam_jd) for j < i (j <= i with diag),
// lam (n, dk) a decay per key dimension; entries above are left as they are. Rows in blocks of SUB:
// against the columns before the block, through the block's first row r as the boundary,
// exp(lam_i - lam_j) = exp(lam_i - lam_r) exp(lam_r - lam_j), a matrix product of scaled copies;
// inside the block, term by term.
function decayedGram(out: usize, x: usize, y: usize, lam: usize, n: i32, dk: i32, diag: bool): void {
  const row = <usize>dk * F32;
  for (let i0 = 0; i0 < n; i0 += SUB) {
    const m = min(SUB, n - i0);
    const ref = lam + <usize>i0 * row;
    if (i0 > 0) {
      expRows(xs, x + <usize>i0 * row, m, dk, lam + <usize>i0 * row, dk, ref, 0, 1); // x_i exp(lam_i - lam_r), i in the block
      expRows(ys, y, i0, dk, lam, dk, ref, 0, 1, -1); // y_j exp(lam_r - lam_j), j < r
      pack_f32_w(ysp, ys, dk, i0, dk);
      matmul(blk, xs, ysp, 0, m, i0, dk);
      for (let i = 0; i < m; i++) copy(out + <usize>(i0 + i) * <usize>n * F32, blk + <usize>i * <usize>i0 * F32, i0);
    }
    for (let i = 0; i < m; i++) {
      const xi = x + <usize>(i0 + i) * row;
      const li = lam + <usize>(i0 + i) * row;
      const end = diag ? i + 1 : i;
      for (let j = 0; j < end; j++) {
        const yj = y + <usize>(i0 + j) * row;
        const lj = lam + <usize>(i0 + j) * row;
        let acc = f32x4.splat(0);
        let d = 0;
        for (; d + 4 <= dk; d += 4) {
          const at = <usize>d * F32;
          const e = exp_f32x4(f32x4.sub(v128.load(li + at), v128.load(lj + at)));
          acc = fma_f32x4(f32x4.mul(v128.load(xi + at), v128.load(yj + at)), e, acc);
        }
        let sum = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
        for (; d < dk; d++) {
          const at = <usize>d * F32;
          sum += load<f32>(xi + at) * load<f32>(yj + at) * exp_f32(load<f32>(li + at) - load<f32>(lj + at));
        }
        store<f32>(out + (<usize>(i0 + i) * <usize>n + <usize>(i0 + j)) * F32, sum);
      }
    }
  }
}

// t (n, n) = (I + A)^-1 with A_ij = beta_i exp(lam_i - lam_j) gm_ij for j < i (lam 0: no factor), by
// forward substitution: row i of T is e_i - sum_{m < i} A_im T_m, and row m is zero past column m.
// n^3 / 6 multiply-adds.
function utInverse(t: usize, gm: usize, beta: usize, lam: usize, n: i32): void {
  const row = <usize>n * F32;
  for (let i = 0; i < n; i++) {
    const ti = t + <usize>i * row;
    fill(ti, 0, n);
    store<f32>(ti + <usize>i * F32, 1);
    const b = load<f32>(beta + <usize>i * F32);
    const li = lam ? load<f32>(lam + <usize>i * F32) : 0;
    for (let m = 0; m < i; m++) {
      let a = b * load<f32>(gm + <usize>i * row + <usize>m * F32);
      if (lam) a *= exp_f32(li - load<f32>(lam + <usize>m * F32));
      axpy(ti, -a, t + <usize>m * row, m + 1);
    }
  }
}

// p (n, n) *= scale exp(lam_i - lam_j) on and below the diagonal (lam 0: no factor); zero above
function causalScale(p: usize, lam: usize, scale: f32, n: i32): void {
  for (let i = 0; i < n; i++) {
    const pi = p + <usize>i * <usize>n * F32;
    if (lam) {
      const li = f32x4.splat(load<f32>(lam + <usize>i * F32));
      let j = 0;
      for (; j + 4 <= i + 1; j += 4) {
        const at = <usize>j * F32;
        const e = exp_f32x4(f32x4.sub(li, v128.load(lam + at)));
        v128.store(pi + at, f32x4.mul(f32x4.mul(e, f32x4.splat(scale)), v128.load(pi + at)));
      }
      for (; j <= i; j++) {
        const at = <usize>j * F32;
        store<f32>(pi + at, scale * exp_f32(f32x4.extract_lane(li, 0) - load<f32>(lam + at)) * load<f32>(pi + at));
      }
    } else scaleRow(pi, scale, i + 1);
    fill(pi + <usize>(i + 1) * F32, 0, n - i - 1);
  }
}

// kt (dk, n): kt_dj = k_jd exp(lam_{n-1} - lam_j) (per key dimension when gDim > 1; lam 0: no factor)
function decayedKeysT(kt: usize, k: usize, lam: usize, gDim: i32, n: i32, dk: i32): void {
  const last = lam + <usize>(n - 1) * <usize>gDim * F32;
  for (let j = 0; j < n; j++) {
    const kj = k + <usize>j * <usize>dk * F32;
    const lj = lam + <usize>j * <usize>gDim * F32;
    const f: f32 = lam && gDim == 1 ? exp_f32(load<f32>(last) - load<f32>(lj)) : 1;
    for (let d = 0; d < dk; d++) {
      let x = load<f32>(kj + <usize>d * F32) * f;
      if (lam && gDim > 1) x *= exp_f32(load<f32>(last + <usize>d * F32) - load<f32>(lj + <usize>d * F32));
      store<f32>(kt + (<usize>d * <usize>n + <usize>j) * F32, x);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Row helpers, SIMD over the row

// y (n) += a * x (n)
@inline function axpy(y: usize, a: f32, x: usize, n: i32): void {
  const va = f32x4.splat(a);
  let c = 0;
  for (; c + 4 <= n; c += 4) {
    const at = <usize>c * F32;
    v128.store(y + at, fma_f32x4(va, v128.load(x + at), v128.load(y + at)));
  }
  for (; c < n; c++) {
    const at = <usize>c * F32;
    store<f32>(y + at, a * load<f32>(x + at) + load<f32>(y + at));
  }
}

// row (n) = a * row + b * u (n)
@inline function decayAdd(row: usize, a: f32, b: f32, u: usize, n: i32): void {
  const va = f32x4.splat(a);
  const vb = f32x4.splat(b);
  let c = 0;
  for (; c + 4 <= n; c += 4) {
    const at = <usize>c * F32;
    v128.store(row + at, fma_f32x4(vb, v128.load(u + at), f32x4.mul(va, v128.load(row + at))));
  }
  for (; c < n; c++) {
    const at = <usize>c * F32;
    store<f32>(row + at, b * load<f32>(u + at) + a * load<f32>(row + at));
  }
}

// row (n) *= a
function scaleRow(row: usize, a: f32, n: i32): void {
  let c = 0;
  for (; c + 4 <= n; c += 4) v128.store(row + <usize>c * F32, f32x4.mul(f32x4.splat(a), v128.load(row + <usize>c * F32)));
  for (; c < n; c++) store<f32>(row + <usize>c * F32, a * load<f32>(row + <usize>c * F32));
}

// dst (n) = exp(src (n))
function expInto(dst: usize, src: usize, n: i32): void {
  let c = 0;
  for (; c + 4 <= n; c += 4) v128.store(dst + <usize>c * F32, exp_f32x4(v128.load(src + <usize>c * F32)));
  for (; c < n; c++) store<f32>(dst + <usize>c * F32, exp_f32(load<f32>(src + <usize>c * F32)));
}

function fill(dst: usize, x: f32, n: i32): void {
  let c = 0;
  for (; c + 4 <= n; c += 4) v128.store(dst + <usize>c * F32, f32x4.splat(x));
  for (; c < n; c++) store<f32>(dst + <usize>c * F32, x);
}

function copy(dst: usize, src: usize, n: i32): void {
  memory.copy(dst, src, <usize>n * F32);
}
