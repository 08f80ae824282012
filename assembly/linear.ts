import { FeatureMap } from "../src/enums";
import { exp_f32 } from "./simd";

const F32: usize = 4;

@inline function phi(x: f32, map: i32): f32 {
  if (map == FeatureMap.Relu) return max(x, 0);
  return x > 0 ? x + 1 : exp_f32(x);
}

// Linear attention for one head (Katharopoulos et al., "Transformers are RNNs"):
//   out_i = phi(q_i) S / (phi(q_i) . z + eps), S = sum_j phi(k_j)^T v_j (E, Ev), z = sum_j phi(k_j) (E)
// Non-causal: S and z sum over all Lk keys first. Causal (Lq = Lk): query i uses the sums over j <= i.
// s (E, Ev) and z (E) hold the running state: they start from what is in them (zeros for a fresh
// sequence) and end with every key added, so calls can continue a sequence token by token.
// work: E floats for phi(q_i). Cost O(L * E * Ev); rows of out, q, k, v are outStride, qStride,
// kStride, vStride elements apart (heads inside [B, L, features] rows).
export function linear_attention_f32(
  out: usize, outStride: i32, q: usize, qStride: i32, k: usize, kStride: i32, v: usize, vStride: i32,
  s: usize, z: usize, work: usize, Lq: i32, Lk: i32, E: i32, Ev: i32, causal: bool, map: i32, eps: f32,
): void {
  if (!causal) {
    for (let j = 0; j < Lk; j++) addKey(s, z, k + <usize>j * <usize>kStride * F32, v + <usize>j * <usize>vStride * F32, E, Ev, map);
  }
  for (let i = 0; i < Lq; i++) {
    if (causal) addKey(s, z, k + <usize>i * <usize>kStride * F32, v + <usize>i * <usize>vStride * F32, E, Ev, map);
    readOut(out + <usize>i * <usize>outStride * F32, q + <usize>i * <usize>qStride * F32, s, z, work, E, Ev, map, eps);
  }
}

// s += phi(k)^T v, z += phi(k)
@inline function addKey(s: usize, z: usize, k: usize, v: usize, E: i32, Ev: i32, map: i32): void {
  for (let e = 0; e < E; e++) {
    const f = phi(load<f32>(k + <usize>e * F32), map);
    store<f32>(z + <usize>e * F32, load<f32>(z + <usize>e * F32) + f);
    const fv = f32x4.splat(f);
    const row = s + <usize>e * <usize>Ev * F32;
    let c = 0;
    for (; c + 4 <= Ev; c += 4) {
      const at = <usize>c * F32;
      v128.store(row + at, f32x4.add(v128.load(row + at), f32x4.mul(fv, v128.load(v + at))));
    }
    for (; c < Ev; c++) {
      const at = <usize>c * F32;
      store<f32>(row + at, load<f32>(row + at) + f * load<f32>(v + at));
    }
  }
}

// out (Ev) = phi(q) s / (phi(q) . z + eps)
@inline function readOut(out: usize, q: usize, s: usize, z: usize, fq: usize, E: i32, Ev: i32, map: i32, eps: f32): void {
  let den: f32 = 0;
  for (let e = 0; e < E; e++) {
    const f = phi(load<f32>(q + <usize>e * F32), map);
    store<f32>(fq + <usize>e * F32, f);
    den += f * load<f32>(z + <usize>e * F32);
  }
  den += eps;
  let c = 0;
  for (; c + 4 <= Ev; c += 4) {
    let acc = f32x4.splat(0);
    for (let e = 0; e < E; e++) acc = f32x4.add(acc, f32x4.mul(v128.load32_splat(fq + <usize>e * F32), v128.load(s + (<usize>e * <usize>Ev + <usize>c) * F32)));
    v128.store(out + <usize>c * F32, f32x4.div(acc, f32x4.splat(den)));
  }
  for (; c < Ev; c++) {
    let acc: f32 = 0;
    for (let e = 0; e < E; e++) acc += load<f32>(fq + <usize>e * F32) * load<f32>(s + (<usize>e * <usize>Ev + <usize>c) * F32);
    store<f32>(out + <usize>c * F32, acc / den);
  }
}
