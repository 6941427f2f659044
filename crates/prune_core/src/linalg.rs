//! Dense linear algebra of the data-aware path: a packed, register-blocked matrix product with a
//! wasm SIMD micro-kernel, a blocked Cholesky factorisation and blocked triangular solves built on
//! it, the ridge least squares of the reweight compensation, Gram matrices of activation rows, and
//! APMA's channel dissimilarity from a Gram matrix.
//!
//! Everything is row-major. The product is written once, generic over f32 and f64 (`Real`); its
//! micro-kernel uses 128-bit SIMD when the crate is built with `simd128` (the wasm build), plain
//! loops elsewhere (host tests). A general linear-algebra crate (faer 0.24) ran the same f32
//! product 3.6× slower in wasm than this kernel, so the kernel is the project's own.

use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

/// Rows of A and columns of B per micro-kernel call.
const MR: usize = 4;
/// Depth (shared dimension) of one packed block: A and B panels stay in cache across it.
const KC: usize = 256;
/// Columns of B packed at once.
const NC: usize = 512;
/// Block size of the Cholesky factorisation and the triangular solves.
const NB: usize = 128;

/// f32 or f64, with the micro-kernel for its SIMD width.
pub trait Real:
    Copy
    + PartialOrd
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + 'static
{
    /// Columns per micro-kernel call: two SIMD vectors.
    const NR: usize;
    fn zero() -> Self {
        Self::default()
    }
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;
    fn is_finite(self) -> bool;
    /// `out[r·NR + j] = Σ_p ap[p·MR + r] · bp[p·NR + j]` for r < MR, j < NR: a packed MR × kc
    /// panel of A times a packed kc × NR panel of B.
    ///
    /// # Safety
    /// `ap` holds `kc·MR` values, `bp` `kc·NR`, `out` `MR·NR`.
    unsafe fn kernel(kc: usize, ap: *const Self, bp: *const Self, out: *mut Self);
}

/// The kernel without SIMD (host builds): the same sums in the same order per element.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
unsafe fn kernel_scalar<T: Real>(kc: usize, ap: *const T, bp: *const T, out: *mut T) {
    let nr = T::NR;
    let mut acc = [T::zero(); MR * 8];
    for p in 0..kc {
        for r in 0..MR {
            let a = *ap.add(p * MR + r);
            for j in 0..nr {
                acc[r * nr + j] += a * *bp.add(p * nr + j);
            }
        }
    }
    for (i, v) in acc.iter().take(MR * nr).enumerate() {
        *out.add(i) = *v;
    }
}

impl Real for f32 {
    const NR: usize = 8;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline(always)]
    unsafe fn kernel(kc: usize, ap: *const f32, bp: *const f32, out: *mut f32) {
        use core::arch::wasm32::*;
        let z = f32x4_splat(0.0);
        let (mut c00, mut c01, mut c10, mut c11) = (z, z, z, z);
        let (mut c20, mut c21, mut c30, mut c31) = (z, z, z, z);
        for p in 0..kc {
            let b0 = v128_load(bp.add(p * 8) as *const v128);
            let b1 = v128_load(bp.add(p * 8 + 4) as *const v128);
            let a = ap.add(p * MR);
            let a0 = f32x4_splat(*a);
            let a1 = f32x4_splat(*a.add(1));
            let a2 = f32x4_splat(*a.add(2));
            let a3 = f32x4_splat(*a.add(3));
            c00 = f32x4_add(c00, f32x4_mul(a0, b0));
            c01 = f32x4_add(c01, f32x4_mul(a0, b1));
            c10 = f32x4_add(c10, f32x4_mul(a1, b0));
            c11 = f32x4_add(c11, f32x4_mul(a1, b1));
            c20 = f32x4_add(c20, f32x4_mul(a2, b0));
            c21 = f32x4_add(c21, f32x4_mul(a2, b1));
            c30 = f32x4_add(c30, f32x4_mul(a3, b0));
            c31 = f32x4_add(c31, f32x4_mul(a3, b1));
        }
        let o = out as *mut v128;
        for (i, c) in [c00, c01, c10, c11, c20, c21, c30, c31]
            .into_iter()
            .enumerate()
        {
            v128_store(o.add(i), c);
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    unsafe fn kernel(kc: usize, ap: *const f32, bp: *const f32, out: *mut f32) {
        kernel_scalar(kc, ap, bp, out)
    }
}

impl Real for f64 {
    const NR: usize = 4;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline(always)]
    unsafe fn kernel(kc: usize, ap: *const f64, bp: *const f64, out: *mut f64) {
        use core::arch::wasm32::*;
        let z = f64x2_splat(0.0);
        let (mut c00, mut c01, mut c10, mut c11) = (z, z, z, z);
        let (mut c20, mut c21, mut c30, mut c31) = (z, z, z, z);
        for p in 0..kc {
            let b0 = v128_load(bp.add(p * 4) as *const v128);
            let b1 = v128_load(bp.add(p * 4 + 2) as *const v128);
            let a = ap.add(p * MR);
            let a0 = f64x2_splat(*a);
            let a1 = f64x2_splat(*a.add(1));
            let a2 = f64x2_splat(*a.add(2));
            let a3 = f64x2_splat(*a.add(3));
            c00 = f64x2_add(c00, f64x2_mul(a0, b0));
            c01 = f64x2_add(c01, f64x2_mul(a0, b1));
            c10 = f64x2_add(c10, f64x2_mul(a1, b0));
            c11 = f64x2_add(c11, f64x2_mul(a1, b1));
            c20 = f64x2_add(c20, f64x2_mul(a2, b0));
            c21 = f64x2_add(c21, f64x2_mul(a2, b1));
            c30 = f64x2_add(c30, f64x2_mul(a3, b0));
            c31 = f64x2_add(c31, f64x2_mul(a3, b1));
        }
        let o = out as *mut v128;
        for (i, c) in [c00, c01, c10, c11, c20, c21, c30, c31]
            .into_iter()
            .enumerate()
        {
            v128_store(o.add(i), c);
        }
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    unsafe fn kernel(kc: usize, ap: *const f64, bp: *const f64, out: *mut f64) {
        kernel_scalar(kc, ap, bp, out)
    }
}

/// A matrix operand: `data[row·stride + col]`, or with `transposed` `data[col·stride + row]`.
#[derive(Clone, Copy)]
pub struct Operand<'a, T> {
    pub data: &'a [T],
    pub stride: usize,
    pub transposed: bool,
}

impl<'a, T: Real> Operand<'a, T> {
    pub fn new(data: &'a [T], stride: usize) -> Self {
        Self {
            data,
            stride,
            transposed: false,
        }
    }
    pub fn t(data: &'a [T], stride: usize) -> Self {
        Self {
            data,
            stride,
            transposed: true,
        }
    }
    #[inline(always)]
    fn at(&self, row: usize, col: usize) -> T {
        if self.transposed {
            self.data[col * self.stride + row]
        } else {
            self.data[row * self.stride + col]
        }
    }
}

/// C (m × n, row stride ldc) += alpha · A (m × p) · B (p × n).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Real>(
    m: usize,
    n: usize,
    p: usize,
    a: Operand<T>,
    b: Operand<T>,
    c: &mut [T],
    ldc: usize,
    alpha: T,
) {
    if m == 0 || n == 0 || p == 0 {
        return;
    }
    let nr = T::NR;
    let mut bp = vec![T::zero(); KC * NC.min(n.div_ceil(nr) * nr)];
    let mut ap = [T::zero(); KC * MR];
    let mut out = [T::zero(); MR * 8];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        let strips = nc.div_ceil(nr);
        for pc in (0..p).step_by(KC) {
            let kc = KC.min(p - pc);
            // B's block as strips of NR columns, each kc × NR contiguous, zero-padded.
            for s in 0..strips {
                let panel = &mut bp[s * kc * nr..(s + 1) * kc * nr];
                let cols = nr.min(nc - s * nr);
                for pp in 0..kc {
                    let dst = &mut panel[pp * nr..(pp + 1) * nr];
                    if !b.transposed {
                        let at = (pc + pp) * b.stride + jc + s * nr;
                        dst[..cols].copy_from_slice(&b.data[at..at + cols]);
                    } else {
                        for (j, d) in dst[..cols].iter_mut().enumerate() {
                            *d = b.at(pc + pp, jc + s * nr + j);
                        }
                    }
                    dst[cols..].fill(T::zero());
                }
            }
            for i in (0..m).step_by(MR) {
                let mr = MR.min(m - i);
                for pp in 0..kc {
                    for r in 0..MR {
                        ap[pp * MR + r] = if r < mr {
                            a.at(i + r, pc + pp)
                        } else {
                            T::zero()
                        };
                    }
                }
                for s in 0..strips {
                    // SAFETY: ap holds kc·MR values, the strip kc·NR, out MR·8 ≥ MR·NR.
                    unsafe {
                        T::kernel(
                            kc,
                            ap.as_ptr(),
                            bp.as_ptr().add(s * kc * nr),
                            out.as_mut_ptr(),
                        )
                    };
                    let cols = nr.min(nc - s * nr);
                    for r in 0..mr {
                        let at = (i + r) * ldc + jc + s * nr;
                        for (cv, &o) in c[at..at + cols].iter_mut().zip(&out[r * nr..]) {
                            *cv += alpha * o;
                        }
                    }
                }
            }
        }
    }
}

/// Smallest pivot accepted: a pivot at or below it (a singular or indefinite matrix) is raised
/// to it, as the reference solver did.
const TINY_PIVOT: f64 = 1e-12;

/// Cholesky factor of a symmetric positive definite n × n matrix, in place: the lower triangle
/// becomes L with A = L·Lᵀ (only the lower triangle of A is read; the upper one is left
/// undefined). Right-looking and blocked: each panel of NB columns is factored in a transposed
/// copy (its updates run along contiguous rows), the rest of the matrix is updated by `gemm`.
pub fn cholesky<T: Real>(a: &mut [T], n: usize) -> Result<(), String> {
    let tiny = T::from_f64(TINY_PIVOT);
    let mut pt = vec![T::zero(); NB * n];
    for kb in (0..n).step_by(NB) {
        let b = NB.min(n - kb);
        let t = n - kb; // rows from the panel's first to the last
                        // Panel columns kb..kb+b, rows kb..n, transposed: pt[j·t + i] = a[(kb+i)·n + kb+j].
        for i in 0..t {
            for j in 0..b {
                pt[j * t + i] = a[(kb + i) * n + kb + j];
            }
        }
        for j in 0..b {
            let (done, rest) = pt.split_at_mut(j * t);
            let col = &mut rest[..t];
            for p in 0..j {
                let prev = &done[p * t..(p + 1) * t];
                let f = prev[j];
                if f == T::zero() {
                    continue;
                }
                for (x, &y) in col[j..].iter_mut().zip(&prev[j..]) {
                    *x -= f * y;
                }
            }
            let mut d = col[j];
            if !d.is_finite() {
                return Err(format!("Cholesky: pivot {} is not finite", kb + j));
            }
            if d.partial_cmp(&tiny) != Some(std::cmp::Ordering::Greater) {
                d = tiny;
            }
            let l = d.sqrt();
            col[j] = l;
            let inv = T::from_f64(1.0) / l;
            for x in col[j + 1..].iter_mut() {
                *x = *x * inv;
            }
        }
        for i in 0..t {
            for j in 0..b.min(i + 1) {
                a[(kb + i) * n + kb + j] = pt[j * t + i];
            }
        }
        // Trailing update of the lower triangle: A₂₂ −= P·Pᵀ, P the panel's rows below it,
        // by blocks of NB rows (each up to its diagonal).
        let rest = t - b;
        for r0 in (0..rest).step_by(NB) {
            let rb = NB.min(rest - r0);
            let at = (kb + b + r0) * n + kb + b;
            gemm(
                rb,
                r0 + rb,
                b,
                Operand::t(&pt[b + r0..], t),
                Operand::new(&pt[b..], t),
                &mut a[at..],
                n,
                -T::from_f64(1.0),
            );
        }
    }
    Ok(())
}

/// Solves (L·Lᵀ)·X = B in place (B: n × m), L from [`cholesky`] (its lower triangle, stride n).
pub fn cholesky_solve<T: Real>(l: &[T], n: usize, b: &mut [T], m: usize) {
    let one = T::from_f64(1.0);
    // L·Y = B, top to bottom.
    for ib in (0..n).step_by(NB) {
        let e = (ib + NB).min(n);
        let (done, rest) = b.split_at_mut(ib * m);
        gemm(
            e - ib,
            m,
            ib,
            Operand::new(&l[ib * n..], n),
            Operand::new(done, m),
            rest,
            m,
            -one,
        );
        for i in ib..e {
            let (above, row) = b.split_at_mut(i * m);
            let row = &mut row[..m];
            for p in ib..i {
                let f = l[i * n + p];
                for (x, &y) in row.iter_mut().zip(&above[p * m..(p + 1) * m]) {
                    *x -= f * y;
                }
            }
            let inv = one / l[i * n + i];
            row.iter_mut().for_each(|x| *x = *x * inv);
        }
    }
    // Lᵀ·X = Y, bottom to top (Lᵀ read as L transposed).
    let starts: Vec<usize> = (0..n).step_by(NB).collect();
    for &ib in starts.iter().rev() {
        let e = (ib + NB).min(n);
        let (head, below) = b.split_at_mut(e * m);
        if e < n {
            gemm(
                e - ib,
                m,
                n - e,
                Operand::t(&l[e * n + ib..], n),
                Operand::new(below, m),
                &mut head[ib * m..],
                m,
                -one,
            );
        }
        for i in (ib..e).rev() {
            let (row, after) = head[ib * m..].split_at_mut((i - ib + 1) * m);
            let row = &mut row[(i - ib) * m..];
            for p in i + 1..e {
                let f = l[p * n + i];
                let y = &after[(p - i - 1) * m..(p - i) * m];
                for (x, &y) in row.iter_mut().zip(y) {
                    *x -= f * y;
                }
            }
            let inv = one / l[i * n + i];
            row.iter_mut().for_each(|x| *x = *x * inv);
        }
    }
}

/// The inputs of [`ridge_refit`]: a layer `y = x·W + b` (W: cin × cout) and the Gram matrix
/// Σ xᵀx of its input over `count` positions.
pub struct RefitProblem<'a> {
    pub gram: &'a [f32],
    pub cin: usize,
    pub count: f64,
    pub weight: &'a [f32],
    pub cout: usize,
    pub kept: &'a [u32],
    /// λ = ridge × the mean of diag(E[x_K x_Kᵀ]).
    pub ridge: f64,
    /// With a bias: its values and the mean input over the Gram's positions.
    pub bias: Option<(&'a [f32], &'a [f64])>,
    /// The removed inputs' contribution given instead of read from `gram` and `weight`:
    /// Σ x_Kᵀ·(x_R·W_R) over the positions (kept × cout), and with a bias μ_Rᵀ·W_R (cout). `gram`
    /// and `weight` are then the kept inputs' only, every one of them kept.
    pub removed: Option<(&'a [f32], Option<&'a [f64]>)>,
}

/// [W'; b'] minimising E‖x·W + b − x_K·W' − b'‖² + λ‖W'‖² (the intercept not penalised; without
/// a bias, b' = b and no intercept). With the centred Gram C = E[xxᵀ] − μμᵀ:
/// W' = W_K + (C_KK + λI)⁻¹ (C_KR·W_R − λ·W_K) and b' = b + μ_Rᵀ·W_R − μ_Kᵀ·(W' − W_K),
/// the normal equations of the problem written around W_K (the kept rows), so that the solve
/// only carries the correction. Returns W' (k × cout) followed, with a bias, by b' (cout).
/// With `removed` given, C_KR·W_R and μ_Rᵀ·W_R come from it (the Gram and weight then hold
/// the kept inputs only).
pub fn ridge_refit<T: Real>(p: &RefitProblem) -> Result<Vec<f32>, String> {
    let (cin, cout, k) = (p.cin, p.cout, p.kept.len());
    if p.gram.len() != cin * cin || p.weight.len() != cin * cout {
        return Err(format!(
            "refit: Gram of {} values and weight of {} values do not match {cin} × {cout}",
            p.gram.len(),
            p.weight.len()
        ));
    }
    if p.count.is_nan() || p.count <= 0.0 {
        return Err("refit: the Gram matrix covers no positions".into());
    }
    let mut is_kept = vec![false; cin];
    for &j in p.kept {
        let j = j as usize;
        if j >= cin || is_kept[j] {
            return Err(format!("refit: kept index {j} out of range or repeated"));
        }
        is_kept[j] = true;
    }
    let removed: Vec<usize> = (0..cin).filter(|&j| !is_kept[j]).collect();
    let kept: Vec<usize> = p.kept.iter().map(|&j| j as usize).collect();
    let r = removed.len();
    if let Some((cross, removed_mean)) = p.removed {
        if r > 0 {
            return Err(format!(
                "refit: a given removed contribution needs every input kept ({r} of {cin} are not)"
            ));
        }
        if cross.len() != k * cout {
            return Err(format!(
                "refit: the removed contribution needs {k} × {cout} values, not {}",
                cross.len()
            ));
        }
        if removed_mean.is_some() != p.bias.is_some() {
            return Err("refit: μ_Rᵀ·W_R is given exactly when there is a bias".into());
        }
        if removed_mean.is_some_and(|m| m.len() != cout) {
            return Err(format!("refit: μ_Rᵀ·W_R needs {cout} values"));
        }
    }
    let inv_n = 1.0 / p.count;
    let zeros = vec![0f64; cin];
    let mean = p.bias.map_or(&zeros[..], |(_, m)| m);
    if mean.len() != cin {
        return Err(format!("refit: {} means for {cin} inputs", mean.len()));
    }
    let g = |i: usize, j: usize| p.gram[i * cin + j] as f64 * inv_n - mean[i] * mean[j];
    let diag: f64 = kept
        .iter()
        .map(|&j| p.gram[j * cin + j] as f64 * inv_n)
        .sum();
    let lambda = if k > 0 {
        p.ridge * diag / k as f64
    } else {
        0.0
    };

    let mut a = vec![T::zero(); k * k];
    for (row, &i) in kept.iter().enumerate() {
        for (col, &j) in kept.iter().enumerate().take(row + 1) {
            a[row * k + col] = T::from_f64(g(i, j));
        }
        a[row * k + row] += T::from_f64(lambda);
    }
    let mut c_kr = vec![T::zero(); k * r];
    for (row, &i) in kept.iter().enumerate() {
        for (col, &j) in removed.iter().enumerate() {
            c_kr[row * r + col] = T::from_f64(g(i, j));
        }
    }
    let w_rows = |rows: &[usize]| {
        let mut out = vec![T::zero(); rows.len() * cout];
        for (dst, &i) in out.chunks_exact_mut(cout.max(1)).zip(rows) {
            for (d, &v) in dst.iter_mut().zip(&p.weight[i * cout..(i + 1) * cout]) {
                *d = T::from_f64(v as f64);
            }
        }
        out
    };
    let w_r = w_rows(&removed);
    // Right-hand side −λ·W_K + C_KR·W_R, solved in place into the correction W' − W_K.
    let mut x = w_rows(&kept);
    let neg_lambda = T::from_f64(-lambda);
    x.iter_mut().for_each(|v| *v = *v * neg_lambda);
    match p.removed {
        // C_KR·W_R = E[x_K (x_R W_R)ᵀ] − μ_K (μ_Rᵀ W_R).
        Some((cross, removed_mean)) => {
            for (row, &i) in kept.iter().enumerate() {
                for o in 0..cout {
                    let centre = removed_mean.map_or(0.0, |m| mean[i] * m[o]);
                    let v = cross[row * cout + o] as f64 * inv_n - centre;
                    x[row * cout + o] += T::from_f64(v);
                }
            }
        }
        None => gemm(
            k,
            cout,
            r,
            Operand::new(&c_kr, r),
            Operand::new(&w_r, cout),
            &mut x,
            cout,
            T::from_f64(1.0),
        ),
    }
    drop(c_kr);
    cholesky(&mut a, k)?;
    cholesky_solve(&a, k, &mut x, cout);
    drop(a);

    let mut out = Vec::with_capacity(k * cout + if p.bias.is_some() { cout } else { 0 });
    for (row, &i) in kept.iter().enumerate() {
        for o in 0..cout {
            let v = p.weight[i * cout + o] as f64 + x[row * cout + o].to_f64();
            out.push(v as f32);
        }
    }
    if let Some((b, _)) = p.bias {
        if b.len() != cout {
            return Err(format!(
                "refit: bias of {} values for {cout} outputs",
                b.len()
            ));
        }
        let mut nb: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        for (row, &i) in removed.iter().enumerate() {
            for o in 0..cout {
                nb[o] += mean[i] * w_r[row * cout + o].to_f64();
            }
        }
        if let Some((_, Some(removed_mean))) = p.removed {
            for o in 0..cout {
                nb[o] += removed_mean[o];
            }
        }
        for (row, &i) in kept.iter().enumerate() {
            for o in 0..cout {
                nb[o] -= mean[i] * x[row * cout + o].to_f64();
            }
        }
        out.extend(nb.into_iter().map(|v| v as f32));
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err("refit: the solution is not finite".into());
    }
    Ok(out)
}

/// Xᵀ·X of `rows` rows of `channels` values (row-major), all of it (symmetric).
pub fn gram(x: &[f32], rows: usize, channels: usize) -> Result<Vec<f32>, String> {
    if x.len() != rows * channels {
        return Err(format!(
            "gram: {} values are not {rows} × {channels}",
            x.len()
        ));
    }
    let mut out = vec![0f32; channels * channels];
    gemm(
        channels,
        channels,
        rows,
        Operand::t(x, channels),
        Operand::new(x, channels),
        &mut out,
        channels,
        1.0,
    );
    Ok(out)
}

/// 1 − max |cos(xᵢ, xⱼ)| over the channels j ≠ i of channel i's head (`heads`: a label per
/// channel, equal labels share a head; absent: one head), from a Gram matrix (channels × channels).
pub fn dissimilarity(
    gram: &[f32],
    channels: usize,
    heads: Option<&[i32]>,
) -> Result<Vec<f64>, String> {
    if gram.len() != channels * channels || heads.is_some_and(|h| h.len() != channels) {
        return Err(format!(
            "dissimilarity: Gram of {} values or heads do not match {channels} channels",
            gram.len()
        ));
    }
    let inv: Vec<f64> = (0..channels)
        .map(|i| {
            let d = gram[i * channels + i] as f64;
            if d > 0.0 {
                1.0 / d.sqrt()
            } else {
                0.0
            }
        })
        .collect();
    // Channels of each head together, so that each pair is visited once.
    let mut members: Vec<Vec<usize>> = Vec::new();
    match heads {
        None => members.push((0..channels).collect()),
        Some(h) => {
            let mut by_head = std::collections::BTreeMap::<i32, Vec<usize>>::new();
            for (i, &head) in h.iter().enumerate() {
                by_head.entry(head).or_default().push(i);
            }
            members.extend(by_head.into_values());
        }
    }
    let mut most = vec![0f64; channels];
    for group in &members {
        for (gi, &i) in group.iter().enumerate() {
            let row = &gram[i * channels..(i + 1) * channels];
            let mut best = most[i];
            for &j in &group[gi + 1..] {
                let c = (row[j] as f64).abs() * inv[i] * inv[j];
                if c > best {
                    best = c;
                }
                if c > most[j] {
                    most[j] = c;
                }
            }
            most[i] = best;
        }
    }
    Ok(most.into_iter().map(|m| (1.0 - m).max(0.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f64 / (1u64 << 31) as f64) - 0.5
            })
            .collect()
    }

    #[test]
    fn gemm_matches_the_definition_at_ragged_sizes() {
        for &(m, n, p) in &[(1, 1, 1), (5, 9, 3), (37, 600, 300), (130, 17, 260)] {
            let a = random(m * p, 1);
            let b = random(p * n, 2);
            let mut c = random(m * n, 3);
            let mut want = c.clone();
            for i in 0..m {
                for j in 0..n {
                    for k in 0..p {
                        want[i * n + j] -= 2.0 * a[i * p + k] * b[k * n + j];
                    }
                }
            }
            gemm(
                m,
                n,
                p,
                Operand::new(&a, p),
                Operand::new(&b, n),
                &mut c,
                n,
                -2.0,
            );
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-12, "{m}×{n}×{p}");
            }
            // Transposed operands.
            let at: Vec<f64> = (0..p * m).map(|i| a[(i % m) * p + i / m]).collect();
            let bt: Vec<f64> = (0..n * p).map(|i| b[(i % p) * n + i / p]).collect();
            let mut c2 = vec![0.0; m * n];
            gemm(
                m,
                n,
                p,
                Operand::t(&at, m),
                Operand::t(&bt, p),
                &mut c2,
                n,
                1.0,
            );
            let mut c3 = vec![0.0; m * n];
            gemm(
                m,
                n,
                p,
                Operand::new(&a, p),
                Operand::new(&b, n),
                &mut c3,
                n,
                1.0,
            );
            for (x, y) in c2.iter().zip(&c3) {
                assert!((x - y).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn cholesky_solves_an_spd_system() {
        for &n in &[1usize, 7, 129, 300] {
            let m = 5;
            let x = random(2 * n * n, 4);
            let mut a = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] = (0..2 * n).map(|r| x[r * n + i] * x[r * n + j]).sum::<f64>();
                }
                a[i * n + i] += 0.1;
            }
            let want = random(n * m, 5);
            let mut b = vec![0.0; n * m];
            for i in 0..n {
                for c in 0..m {
                    b[i * m + c] = (0..n).map(|j| a[i * n + j] * want[j * m + c]).sum();
                }
            }
            let mut l = a.clone();
            cholesky(&mut l, n).unwrap();
            cholesky_solve(&l, n, &mut b, m);
            for (x, y) in b.iter().zip(&want) {
                assert!((x - y).abs() < 1e-7, "n = {n}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn dissimilarity_of_duplicates_and_orthogonal_channels() {
        // Channels 0 and 1 equal, 2 orthogonal to both, 3 half-aligned with 2.
        let g = [
            1.0, 1.0, 0.0, 0.0, //
            1.0, 1.0, 0.0, 0.0, //
            0.0, 0.0, 1.0, 0.5, //
            0.0, 0.0, 0.5, 1.0,
        ];
        let d = dissimilarity(&g, 4, None).unwrap();
        assert_eq!(d, vec![0.0, 0.0, 0.5, 0.5]);
        let d = dissimilarity(&g, 4, Some(&[0, 1, 1, 2])).unwrap();
        assert_eq!(d, vec![1.0, 1.0, 1.0, 1.0]);
    }
}
