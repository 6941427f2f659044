//! AdamW (Loshchilov & Hutter; PyTorch's update order, in float32 as PyTorch computes it) over
//! every trained tensor of a distillation at once. Weights, gradients and both moments live in
//! four flat buffers so that one step is a few straight loops the compiler turns into SIMD; the
//! finiteness check of the gradients runs before anything is updated, so a diverged step leaves
//! the weights as they were.

/// The optimizer's state: flat buffers and where each tensor sits in them.
pub struct AdamW {
    pub weights: Vec<f32>,
    pub grads: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    /// `(start, end, decayed)` per tensor.
    spans: Vec<(usize, usize, bool)>,
    t: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
}

impl AdamW {
    /// Tensors of `sizes` elements, `decay[i]` != 0 where tensor i takes weight decay; weights
    /// start at zero (the caller copies them in).
    pub fn new(
        sizes: &[u32],
        decay: &[u8],
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    ) -> Result<Self, String> {
        if sizes.len() != decay.len() {
            return Err(format!(
                "adamw: {} tensor sizes but {} decay flags",
                sizes.len(),
                decay.len()
            ));
        }
        let ok = |x: f32| x.is_finite() && x >= 0.0;
        if !(ok(beta1) && beta1 < 1.0 && ok(beta2) && beta2 < 1.0 && ok(eps) && ok(weight_decay)) {
            return Err(format!(
                "adamw: betas must be in [0, 1), eps and weight decay ≥ 0 \
                 (got {beta1}, {beta2}, {eps}, {weight_decay})"
            ));
        }
        let mut spans = Vec::with_capacity(sizes.len());
        let mut end = 0usize;
        for (&n, &d) in sizes.iter().zip(decay) {
            spans.push((end, end + n as usize, d != 0));
            end += n as usize;
        }
        Ok(Self {
            weights: vec![0.0; end],
            grads: vec![0.0; end],
            m: vec![0.0; end],
            v: vec![0.0; end],
            spans,
            t: 0,
            beta1,
            beta2,
            eps,
            weight_decay,
        })
    }

    /// `(start, end)` of tensor `k` in the flat buffers.
    pub fn span(&self, k: usize) -> Option<(usize, usize)> {
        self.spans.get(k).map(|&(s, e, _)| (s, e))
    }

    /// One update from `grads` at learning rate `lr`. Returns false, changing nothing, when a
    /// gradient is not finite.
    pub fn step(&mut self, lr: f64) -> bool {
        if !all_finite(&self.grads) {
            return false;
        }
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - (b1 as f64).powi(self.t as i32);
        let c2 = 1.0 - (b2 as f64).powi(self.t as i32);
        let step_size = (lr / c1) as f32;
        let inv_root2 = (1.0 / c2.sqrt()) as f32;
        let (a1, a2, eps) = (1.0 - b1, 1.0 - b2, self.eps);
        for &(start, end, decayed) in &self.spans {
            let shrink = if decayed {
                (1.0 - lr * self.weight_decay as f64) as f32
            } else {
                1.0
            };
            let w = &mut self.weights[start..end];
            let g = &self.grads[start..end];
            let m = &mut self.m[start..end];
            let v = &mut self.v[start..end];
            for i in 0..w.len() {
                let gi = g[i];
                let mi = b1 * m[i] + a1 * gi;
                let vi = b2 * v[i] + a2 * gi * gi;
                m[i] = mi;
                v[i] = vi;
                w[i] = w[i] * shrink - step_size * mi / (vi.sqrt() * inv_root2 + eps);
            }
        }
        true
    }
}

/// Whether every value is finite: `x · 0` is 0 for finite x and NaN otherwise; eight running
/// sums of it keep the loop free of branches (and vectorised).
fn all_finite(values: &[f32]) -> bool {
    let mut acc = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] += c[j] * 0.0;
        }
    }
    let tail: f32 = rest.iter().map(|x| x * 0.0).sum();
    acc.iter().sum::<f32>() + tail == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_adamw() {
        // torch 2: two parameter groups (decay 0.1 and 0), three steps at lr 0.01, 0.02, 0.005.
        let mut a = AdamW::new(&[3, 2], &[1, 0], 0.9, 0.999, 1e-8, 0.1).unwrap();
        a.weights.copy_from_slice(&[1.0, -0.5, 0.25, 0.3, -0.2]);
        let grads = [
            [0.5, -1.0, 0.0, 2.0, 0.1],
            [-0.2, 0.3, 1e-3, 1.0, -0.1],
            [0.7, 0.7, -0.7, 0.0, 0.5],
        ];
        for (g, lr) in grads.iter().zip([0.01, 0.02, 0.005]) {
            a.grads.copy_from_slice(g);
            assert!(a.step(lr));
        }
        let want = [
            0.976_273_36,
            -0.480_130_9,
            0.237_440_76,
            0.267_753_54,
            -0.211_965_7,
        ];
        for (w, e) in a.weights.iter().zip(want) {
            assert!((w - e).abs() < 1e-6, "{w} against {e}");
        }
        assert_eq!(a.t, 3);
    }

    #[test]
    fn a_non_finite_gradient_changes_nothing() {
        let mut a = AdamW::new(&[9, 4], &[1, 1], 0.9, 0.999, 1e-8, 0.01).unwrap();
        a.weights
            .iter_mut()
            .enumerate()
            .for_each(|(i, w)| *w = i as f32);
        let before = a.weights.clone();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            a.grads.fill(0.5);
            a.grads[12] = bad;
            assert!(!a.step(1e-3));
            assert_eq!(a.weights, before);
            assert_eq!(a.t, 0);
        }
        a.grads.fill(0.5);
        assert!(a.step(1e-3));
        assert_ne!(a.weights, before);
    }

    #[test]
    fn refuses_bad_settings() {
        assert!(AdamW::new(&[1], &[], 0.9, 0.999, 1e-8, 0.0).is_err());
        assert!(AdamW::new(&[1], &[0], 1.0, 0.999, 1e-8, 0.0).is_err());
        assert!(AdamW::new(&[1], &[0], 0.9, 0.999, -1.0, 0.0).is_err());
    }
}
