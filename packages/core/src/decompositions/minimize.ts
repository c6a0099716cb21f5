/**
 * Bounded scalar minimisation by Brent's method (golden-section steps with parabolic interpolation
 * when it behaves; R. P. Brent, "Algorithms for Minimization without Derivatives", 1973, ch. 5) --
 * the same algorithm as scipy's minimize_scalar(method='bounded'). xatol is absolute in x.
 */
export function minimizeBounded(
  f: (x: number) => number,
  lower: number,
  upper: number,
  opts: { xatol?: number; maxIterations?: number } = {},
): { x: number; fx: number; iterations: number } {
  const xatol = opts.xatol ?? 1e-10;
  const maxIterations = opts.maxIterations ?? 500;
  const golden = 0.5 * (3 - Math.sqrt(5));
  const sqrtEps = Math.sqrt(2.2e-16);
  let a = lower;
  let b = upper;
  let v = a + golden * (b - a);
  let w = v;
  let x = v;
  let e = 0;
  let d = 0;
  let fx = f(x);
  let fv = fx;
  let fw = fx;
  let iterations = 0;
  for (; iterations < maxIterations; iterations++) {
    const xm = 0.5 * (a + b);
    const tol1 = sqrtEps * Math.abs(x) + xatol / 3;
    const tol2 = 2 * tol1;
    if (Math.abs(x - xm) <= tol2 - 0.5 * (b - a)) break;
    let golden_step = true;
    if (Math.abs(e) > tol1) {
      // Parabola through (v, fv), (w, fw), (x, fx).
      let r = (x - w) * (fx - fv);
      let q = (x - v) * (fx - fw);
      let p = (x - v) * q - (x - w) * r;
      q = 2 * (q - r);
      if (q > 0) p = -p;
      q = Math.abs(q);
      r = e;
      e = d;
      if (Math.abs(p) < Math.abs(0.5 * q * r) && p > q * (a - x) && p < q * (b - x)) {
        d = p / q;
        const u = x + d;
        if (u - a < tol2 || b - u < tol2) d = xm >= x ? tol1 : -tol1;
        golden_step = false;
      }
    }
    if (golden_step) {
      e = x >= xm ? a - x : b - x;
      d = golden * e;
    }
    const u = Math.abs(d) >= tol1 ? x + d : x + (d >= 0 ? tol1 : -tol1);
    const fu = f(u);
    if (fu <= fx) {
      if (u >= x) a = x;
      else b = x;
      v = w;
      fv = fw;
      w = x;
      fw = fx;
      x = u;
      fx = fu;
    } else {
      if (u < x) a = u;
      else b = u;
      if (fu <= fw || w === x) {
        v = w;
        fv = fw;
        w = u;
        fw = fu;
      } else if (fu <= fv || v === x || v === w) {
        v = u;
        fv = fu;
      }
    }
  }
  return { x, fx, iterations };
}
