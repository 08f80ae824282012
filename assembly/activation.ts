import { Act } from "../src/enums";
import { exp_f32x4 } from "./simd";

// Activations fused into the matrix product's store; `act` is an Act (src/enums.ts, shared with the host).
@inline export function activate_f32x4(x: v128, act: i32): v128 {
  if (act == Act.Relu) return f32x4.max(x, f32x4.splat(0));
  if (act == Act.Gelu) return gelu_f32x4(x);
  if (act == Act.GeluTanh) return gelu_tanh_f32x4(x);
  if (act == Act.Silu) return silu_f32x4(x);
  return x;
}

// x * sigmoid(x) = x / (1 + e^-x); below x = -88 exp_f32x4 clamps e^-x at e^88, and the quotient is within 1e-36 of 0
@inline function silu_f32x4(x: v128): v128 {
  return f32x4.div(x, f32x4.add(f32x4.splat(1), exp_f32x4(f32x4.neg(x))));
}

// x * Phi(x) with Phi(x) = erfc(-x/sqrt2)/2, erfc(z) = poly(t) e^(-z^2), t = 1/(1 + p z) for z >= 0
// (Abramowitz & Stegun 7.1.26, |error of erf| <= 1.5e-7). Phi is taken from erfc on the side
// where it is small, so there is no cancellation: the result's error is at most ~1e-7 * |x|.
@inline function gelu_f32x4(x: v128): v128 {
  const z = f32x4.mul(f32x4.abs(x), f32x4.splat(0.70710678));
  const t = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.3275911), z)));
  let p = f32x4.splat(1.061405429);
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-1.453152027));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(1.421413741));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-0.284496736));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(0.254829592));
  p = f32x4.mul(p, t);
  const halfErfc = f32x4.mul(f32x4.splat(0.5), f32x4.mul(p, exp_f32x4(f32x4.neg(f32x4.mul(z, z)))));
  // x < 0: Phi = erfc(z)/2; x >= 0: Phi = 1 - erfc(z)/2
  const phi = v128.bitselect(halfErfc, f32x4.sub(f32x4.splat(1), halfErfc), f32x4.lt(x, f32x4.splat(0)));
  return f32x4.mul(x, phi);
}

// x/2 * (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), written as x / (1 + e^(-2u)): no cancellation
@inline function gelu_tanh_f32x4(x: v128): v128 {
  const x3 = f32x4.mul(f32x4.mul(x, x), x);
  const u = f32x4.mul(f32x4.splat(0.7978845608), f32x4.add(x, f32x4.mul(f32x4.splat(0.044715), x3)));
  const e = exp_f32x4(f32x4.mul(u, f32x4.splat(-2)));
  return f32x4.div(x, f32x4.add(f32x4.splat(1), e));
}
