//! Compute core of `@prune/vit`: per-channel Lp scores, score reductions, stable selection,
//! raw-byte gather, the data-aware path's linear algebra and distillation's optimizer, exported to
//! JavaScript with wasm-bindgen. `cpu_*` functions run in wasm;
//! `GpuCore` runs the heavy ops through WebGPU (see `gpu.rs` for when it falls back to the CPU).
//! `src/core/mod.ts` wraps both behind one `ComputeCore` interface.

mod cpu;
#[cfg(target_arch = "wasm32")]
mod gpu;
mod linalg;
mod optim;

use cpu::{Layout, Reduce};
use wasm_bindgen::prelude::*;

/// A GPU result as a resolved Promise value (a typed array) or a rejection (an Error).
#[cfg(target_arch = "wasm32")]
fn js<T: Into<JsValue>>(result: Result<T, String>) -> Result<JsValue, JsValue> {
    result.map(Into::into).map_err(|e| JsError::new(&e).into())
}

#[wasm_bindgen]
pub fn cpu_channel_lp_scores_f32(
    data: &[f32],
    dims: &[u32],
    axis: u32,
    p: u32,
) -> Result<Vec<f32>, JsError> {
    let layout = Layout::new(dims, axis, data.len()).map_err(|e| JsError::new(&e))?;
    cpu::channel_lp_scores(data, layout, p, |x| x).map_err(|e| JsError::new(&e))
}

/// `data` holds little-endian float32 bytes at any alignment (a weight's bytes as stored in the
/// model, not first copied into an aligned Float32Array).
#[wasm_bindgen]
pub fn cpu_channel_lp_scores_f32_bytes(
    data: &[u8],
    dims: &[u32],
    axis: u32,
    p: u32,
) -> Result<Vec<f32>, JsError> {
    if data.len() % 4 != 0 {
        return Err(JsError::new(&format!(
            "{} bytes are not whole float32 values",
            data.len()
        )));
    }
    let values: &[[u8; 4]] = bytemuck::cast_slice(data);
    let layout = Layout::new(dims, axis, values.len()).map_err(|e| JsError::new(&e))?;
    cpu::channel_lp_scores(values, layout, p, f32::from_le_bytes).map_err(|e| JsError::new(&e))
}

/// `data` holds IEEE binary16 bit patterns.
#[wasm_bindgen]
pub fn cpu_channel_lp_scores_f16(
    data: &[u16],
    dims: &[u32],
    axis: u32,
    p: u32,
) -> Result<Vec<f32>, JsError> {
    let layout = Layout::new(dims, axis, data.len()).map_err(|e| JsError::new(&e))?;
    {
        let table = cpu::f16_table();
        cpu::channel_lp_scores(data, layout, p, |h| table[h as usize])
    }
    .map_err(|e| JsError::new(&e))
}

/// `flat` holds `count` equally long vectors back to back.
#[wasm_bindgen]
pub fn cpu_aggregate(flat: &[f32], count: u32, reduce: &str) -> Result<Vec<f32>, JsError> {
    Reduce::parse(reduce)
        .and_then(|r| cpu::aggregate(flat, count as usize, r))
        .map_err(|e| JsError::new(&e))
}

#[wasm_bindgen]
pub fn cpu_group_scores(scores: &[f32], groups: u32, reduce: &str) -> Result<Vec<f32>, JsError> {
    Reduce::parse(reduce)
        .and_then(|r| cpu::group_scores(scores, groups as usize, r))
        .map_err(|e| JsError::new(&e))
}

#[wasm_bindgen]
pub fn cpu_select_keep_per_group(
    scores: &[f32],
    groups: u32,
    drop: u32,
) -> Result<Vec<u32>, JsError> {
    cpu::select_keep_per_group(scores, groups as usize, drop as usize).map_err(|e| JsError::new(&e))
}

#[wasm_bindgen]
pub fn cpu_gather_axis(
    bytes: &[u8],
    dims: &[u32],
    element_size: u32,
    axis: u32,
    indices: &[u32],
) -> Result<Vec<u8>, JsError> {
    cpu::gather_axis(bytes, dims, element_size, axis, indices).map_err(|e| JsError::new(&e))
}

/// The reweight compensation's ridge least squares (`linalg::ridge_refit`): the kept rows of a
/// layer's weight refitted from the Gram matrix of its input. `bias` and `mean` (the input's mean
/// over the Gram's positions) come together. `precision`: 32 or 64 (bits of the solve). `removed`
/// (Σ x_Kᵀ·(x_R·W_R), kept × cout) and `removed_mean` (μ_Rᵀ·W_R, with a bias) give the removed
/// inputs' contribution when the Gram and weight hold the kept inputs only. Returns the new kept
/// rows (kept × cout), then with a bias the new bias.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn cpu_ridge_refit(
    gram: &[f32],
    cin: u32,
    count: f64,
    weight: &[f32],
    cout: u32,
    kept: &[u32],
    ridge: f64,
    bias: Option<Vec<f32>>,
    mean: Option<Vec<f64>>,
    precision: u32,
    removed: Option<Vec<f32>>,
    removed_mean: Option<Vec<f64>>,
) -> Result<Vec<f32>, JsError> {
    let bias = match (&bias, &mean) {
        (Some(b), Some(m)) => Some((&b[..], &m[..])),
        (None, None) => None,
        _ => {
            return Err(JsError::new(
                "refit: a bias needs the input's mean, and only it",
            ))
        }
    };
    if removed.is_none() && removed_mean.is_some() {
        return Err(JsError::new(
            "refit: μ_Rᵀ·W_R given without the removed inputs' contribution",
        ));
    }
    let problem = linalg::RefitProblem {
        gram,
        cin: cin as usize,
        count,
        weight,
        cout: cout as usize,
        kept,
        ridge,
        bias,
        removed: removed.as_deref().map(|c| (c, removed_mean.as_deref())),
    };
    match precision {
        32 => linalg::ridge_refit::<f32>(&problem),
        64 => linalg::ridge_refit::<f64>(&problem),
        _ => Err(format!("precision must be 32 or 64, got {precision}")),
    }
    .map_err(|e| JsError::new(&e))
}

/// Xᵀ·X of `rows` × `channels` values (row-major).
#[wasm_bindgen]
pub fn cpu_gram(x: &[f32], rows: u32, channels: u32) -> Result<Vec<f32>, JsError> {
    linalg::gram(x, rows as usize, channels as usize).map_err(|e| JsError::new(&e))
}

/// APMA's dissimilarity per channel (`linalg::dissimilarity`).
#[wasm_bindgen]
pub fn cpu_dissimilarity(
    gram: &[f32],
    channels: u32,
    heads: Option<Vec<i32>>,
) -> Result<Vec<f64>, JsError> {
    linalg::dissimilarity(gram, channels as usize, heads.as_deref()).map_err(|e| JsError::new(&e))
}

/// Distillation's AdamW (`optim::AdamW`): weights, gradients and moments of every trained tensor
/// in wasm memory, one call per step.
#[wasm_bindgen]
pub struct AdamWCore {
    state: optim::AdamW,
}

#[wasm_bindgen]
impl AdamWCore {
    /// Tensors of `sizes` elements; `decay[i]` != 0 where tensor i takes weight decay.
    #[wasm_bindgen(constructor)]
    pub fn new(
        sizes: &[u32],
        decay: &[u8],
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    ) -> Result<AdamWCore, JsError> {
        optim::AdamW::new(sizes, decay, beta1, beta2, eps, weight_decay)
            .map(|state| AdamWCore { state })
            .map_err(|e| JsError::new(&e))
    }

    /// `[start, end)` of tensor `k` in the flat buffers.
    pub fn span(&self, k: u32) -> Result<Vec<u32>, JsError> {
        let (s, e) = self
            .state
            .span(k as usize)
            .ok_or_else(|| JsError::new(&format!("adamw: no tensor {k}")))?;
        Ok(vec![s as u32, e as u32])
    }

    /// A view of the flat weights: valid until the next call into the core (a call may grow
    /// wasm memory, which detaches it). Copy in or out at once.
    pub fn weights_view(&self) -> js_sys::Float32Array {
        // SAFETY: the view is handed to JavaScript, which reads or writes it before calling into
        // wasm again (documented above); nothing in Rust holds a reference to the buffer meanwhile.
        unsafe { js_sys::Float32Array::view(&self.state.weights) }
    }

    /// A view of the flat gradients, under the same terms as `weights_view`.
    pub fn grads_view(&self) -> js_sys::Float32Array {
        // SAFETY: as in `weights_view`.
        unsafe { js_sys::Float32Array::view(&self.state.grads) }
    }

    /// One update from the gradients at learning rate `lr`; false (nothing changed) when a
    /// gradient is not finite.
    pub fn step(&mut self, lr: f64) -> bool {
        self.state.step(lr)
    }
}

/// WebGPU-backed ops. Methods return Promises; run one call at a time per instance (WebGPU error
/// scopes are per device). Score reductions and aggregation are O(channels) and use `cpu_*`.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
pub struct GpuCore {
    gpu: std::rc::Rc<gpu::Gpu>,
}

#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
impl GpuCore {
    /// Rejects when `navigator.gpu` gives no adapter or device. `max_chunk_bytes` caps the bytes
    /// per storage binding below the device limit (for tests).
    pub async fn create(max_chunk_bytes: Option<u32>) -> Result<GpuCore, JsError> {
        let gpu = gpu::Gpu::new(max_chunk_bytes)
            .await
            .map_err(|e| JsError::new(&e))?;
        Ok(GpuCore {
            gpu: std::rc::Rc::new(gpu),
        })
    }

    #[wasm_bindgen(getter)]
    pub fn adapter_name(&self) -> String {
        self.gpu.adapter_name.clone()
    }

    /// Compute dispatches submitted so far (calls that fell back to the CPU add none).
    #[wasm_bindgen(getter)]
    pub fn dispatches(&self) -> u32 {
        self.gpu.dispatches.get()
    }

    /// Resolves to a Float32Array.
    pub fn channel_lp_scores_f32(
        &self,
        data: Vec<f32>,
        dims: Vec<u32>,
        axis: u32,
        p: u32,
    ) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            js(gpu
                .channel_lp_scores(gpu::Values::F32(&data), &dims, axis, p)
                .await
                .map(|v| js_sys::Float32Array::from(&v[..])))
        })
    }

    /// `data` holds IEEE binary16 bit patterns. Resolves to a Float32Array.
    pub fn channel_lp_scores_f16(
        &self,
        data: Vec<u16>,
        dims: Vec<u32>,
        axis: u32,
        p: u32,
    ) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            js(gpu
                .channel_lp_scores(gpu::Values::F16(&data), &dims, axis, p)
                .await
                .map(|v| js_sys::Float32Array::from(&v[..])))
        })
    }

    /// Resolves to a Uint32Array.
    pub fn select_keep_per_group(
        &self,
        scores: Vec<f32>,
        groups: u32,
        drop: u32,
    ) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            js(gpu
                .select_keep_per_group(&scores, groups as usize, drop as usize)
                .await
                .map(|v| js_sys::Uint32Array::from(&v[..])))
        })
    }

    /// Resolves to a Uint8Array.
    pub fn gather_axis(
        &self,
        bytes: Vec<u8>,
        dims: Vec<u32>,
        element_size: u32,
        axis: u32,
        indices: Vec<u32>,
    ) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            js(gpu
                .gather_axis(&bytes, &dims, element_size, axis, &indices)
                .await
                .map(|v| js_sys::Uint8Array::from(&v[..])))
        })
    }

    /// Destroys the device (and with it every buffer). Call `free()` afterwards.
    pub fn destroy(&self) {
        self.gpu.destroy();
    }
}
