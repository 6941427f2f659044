//! WebGPU path (wgpu's WebGPU backend, i.e. `navigator.gpu`). One tensor per call; every buffer
//! lives only for the call.
//!
//! Limits and fallbacks (each documented where it happens):
//! - Every storage binding stays within `chunk_bytes` = min(maxStorageBufferBindingSize,
//!   maxBufferSize) of the device (or a smaller test override): tensors are cut into chunks of
//!   whole rows; a call whose single row does not fit runs on the CPU instead.
//! - Channel scores: non-finite inputs run on the CPU (WGSL may assume finite floats).
//! - Selection: O(n · group size) integer comparisons; above `MAX_SELECT_COMPARISONS` (2^28) the
//!   O(n log n) CPU sort is used.
//! - Gather moves u32 words: element sizes whose per-channel block is not a whole number of
//!   words (e.g. f16 or u8 along the last axis with an odd count) run on the CPU.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use crate::cpu::{self, Layout};

/// Elements one invocation of `lp_reduce.wgsl` sums sequentially (RUN there).
const LP_RUN: usize = 16;
/// Invocations per workgroup in every shader.
const WORKGROUP: usize = 256;
/// WebGPU's guaranteed maxComputeWorkgroupsPerDimension.
const MAX_GROUPS_PER_DIM: usize = 65_535;
/// Cap on the O(n · group size) comparisons of one GPU selection; larger ones use the CPU sort.
const MAX_SELECT_COMPARISONS: u64 = 1 << 28;
/// Input bytes per submission (see `batches`).
const BATCH_BYTES: usize = 256 << 20;

/// Tensor values for the channel scores: f32 values or f16 bit patterns.
pub enum Values<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F16(v) => v.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Values::F32(v) => bytemuck::cast_slice(v),
            Values::F16(v) => bytemuck::cast_slice(v),
        }
    }

    fn element_size(&self) -> usize {
        match self {
            Values::F32(_) => 4,
            Values::F16(_) => 2,
        }
    }

    pub fn cpu_scores(&self, layout: Layout, p: u32) -> Result<Vec<f32>, String> {
        match self {
            Values::F32(v) => cpu::channel_lp_scores(v, layout, p, |x| x),
            Values::F16(v) => {
                let table = cpu::f16_table();
                cpu::channel_lp_scores(v, layout, p, |h| table[h as usize])
            }
        }
    }
}

struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    lp: Kernel,
    select: Kernel,
    gather: Kernel,
    chunk_bytes: usize,
    pub adapter_name: String,
    /// Compute dispatches submitted so far (tests use it to see the GPU did the work).
    pub dispatches: Cell<u32>,
}

impl Gpu {
    /// Requests an adapter and device. `max_chunk_bytes` lowers the per-binding size (tests use
    /// it to exercise chunking on small tensors).
    pub async fn new(max_chunk_bytes: Option<u32>) -> Result<Gpu, String> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::BROWSER_WEBGPU,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .map_err(|e| format!("no WebGPU adapter available ({e})"))?;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("prune_core"),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("WebGPU device request failed ({e})"))?;
        let device_max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        // Keep 4 bytes of headroom for padding an odd f16 chunk up to whole words.
        let mut chunk_bytes = (device_max.min(u32::MAX as u64) as usize - 4) & !3;
        if let Some(max) = max_chunk_bytes {
            chunk_bytes = chunk_bytes.min(max as usize & !3).max(4);
        }
        let kernel = |source: &str| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            Kernel { pipeline, layout }
        };
        Ok(Gpu {
            lp: kernel(include_str!("shaders/lp_reduce.wgsl")),
            select: kernel(include_str!("shaders/select_rank.wgsl")),
            gather: kernel(include_str!("shaders/gather.wgsl")),
            adapter_name: adapter.get_info().name,
            chunk_bytes,
            dispatches: Cell::new(0),
            device,
            queue,
        })
    }

    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// Per-channel Σ|x|^p. Chunks are whole `[rows, channels, inner]` blocks when one outer row
    /// fits a binding, else `[1, some channels, inner]` blocks of one row; if a single channel
    /// row is larger than a binding, the call runs on the CPU.
    pub async fn channel_lp_scores(
        &self,
        values: Values<'_>,
        dims: &[u32],
        axis: u32,
        p: u32,
    ) -> Result<Vec<f32>, String> {
        let layout = Layout::new(dims, axis, values.len())?;
        let Layout {
            outer,
            channels,
            inner,
        } = layout;
        let size = values.element_size();
        if (p != 1 && p != 2) || values.len() == 0 || inner * size > self.chunk_bytes {
            return values.cpu_scores(layout, p);
        }
        let slice_bytes = channels * inner * size;
        // (first row, row count, first channel, channel count)
        let mut chunks = Vec::new();
        if slice_bytes <= self.chunk_bytes {
            let rows = self.chunk_bytes / slice_bytes;
            for o in (0..outer).step_by(rows) {
                chunks.push((o, rows.min(outer - o), 0, channels));
            }
        } else {
            let span = self.chunk_bytes / (inner * size);
            for o in 0..outer {
                for c in (0..channels).step_by(span) {
                    chunks.push((o, 1, c, span.min(channels - c)));
                }
            }
        }
        let bytes = values.bytes();
        let mut sums = vec![0f64; channels];
        for batch in batches(&chunks, |&(_, rows, _, count)| rows * count * inner * size) {
            let mut run = Batch::new(self);
            let flag = self.upload(
                &[0; 4],
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            );
            for &(o, rows, c0, count) in batch {
                let start = (o * channels + c0) * inner * size;
                let len = rows * count * inner * size;
                let per_channel = rows * inner;
                let (lanes, splits) = lp_split(per_channel);
                let units = count * splits;
                let params = [
                    count,
                    inner,
                    per_channel,
                    splits,
                    units,
                    (size == 2) as usize,
                    p as usize,
                    lanes,
                ];
                let input = self.upload(&bytes[start..start + len], wgpu::BufferUsages::STORAGE);
                let partials = self.output(units * 4);
                run.dispatch(
                    &self.lp,
                    &params,
                    &[&input, &partials, &flag],
                    units.div_ceil(WORKGROUP / lanes),
                );
                run.read(&partials);
            }
            run.read(&flag);
            let mut out = run.finish().await?;
            if out.pop().is_some_and(|flag| flag != [0; 4]) {
                return values.cpu_scores(layout, p); // inf/NaN present
            }
            for (&(_, rows, c0, _), partials) in batch.iter().zip(&out) {
                let (_, splits) = lp_split(rows * inner);
                for (g, &v) in bytemuck::cast_slice::<u8, f32>(partials).iter().enumerate() {
                    sums[c0 + g / splits] += v as f64;
                }
            }
        }
        Ok(sums.into_iter().map(|s| s as f32).collect())
    }

    /// Stable per-group selection by rank counting (see `select_rank.wgsl`).
    pub async fn select_keep_per_group(
        &self,
        scores: &[f32],
        groups: usize,
        drop: usize,
    ) -> Result<Vec<u32>, String> {
        let size = cpu::check_selection(scores.len(), groups, drop)?;
        let comparisons = scores.len() as u64 * size as u64;
        if drop == 0
            || drop == size
            || scores.len() * 4 > self.chunk_bytes
            || comparisons > MAX_SELECT_COMPARISONS
        {
            return cpu::select_keep_per_group(scores, groups, drop);
        }
        let mut run = Batch::new(self);
        let input = self.upload(bytemuck::cast_slice(scores), wgpu::BufferUsages::STORAGE);
        let keep = self.output(scores.len() * 4);
        let params = [scores.len(), size, drop, 0];
        run.dispatch(
            &self.select,
            &params,
            &[&input, &keep],
            scores.len().div_ceil(WORKGROUP),
        );
        run.read(&keep);
        let out = run.finish().await?;
        let flags: Vec<bool> = bytemuck::cast_slice::<u8, u32>(&out[0])
            .iter()
            .map(|&k| k != 0)
            .collect();
        Ok(cpu::kept_indices(&flags))
    }

    /// Gather on u32 words, chunked by whole outer rows. Runs on the CPU when a channel block is
    /// not a whole number of words or one outer row (input or output) exceeds a binding.
    pub async fn gather_axis(
        &self,
        bytes: &[u8],
        dims: &[u32],
        element_size: u32,
        axis: u32,
        indices: &[u32],
    ) -> Result<Vec<u8>, String> {
        let layout = cpu::check_gather(bytes.len(), dims, element_size, axis, indices)?;
        let block = layout.inner * element_size as usize;
        let in_row = layout.channels * block;
        let out_row = indices.len() * block;
        let row_bytes = in_row.max(out_row);
        if block % 4 != 0
            || row_bytes == 0
            || layout.outer == 0
            || row_bytes > self.chunk_bytes
            || indices.len() * 4 > self.chunk_bytes
        {
            return cpu::gather_axis(bytes, dims, element_size, axis, indices);
        }
        let rows_per_chunk = self.chunk_bytes / row_bytes;
        let chunks: Vec<(usize, usize)> = (0..layout.outer)
            .step_by(rows_per_chunk)
            .map(|o| (o, rows_per_chunk.min(layout.outer - o)))
            .collect();
        let mut result = Vec::with_capacity(layout.outer * out_row);
        for batch in batches(&chunks, |&(_, rows)| rows * row_bytes) {
            let mut run = Batch::new(self);
            let index_buffer =
                self.upload(bytemuck::cast_slice(indices), wgpu::BufferUsages::STORAGE);
            for &(o, rows) in batch {
                let input = self.upload(
                    &bytes[o * in_row..(o + rows) * in_row],
                    wgpu::BufferUsages::STORAGE,
                );
                let words = rows * out_row / 4;
                let output = self.output(words * 4);
                let params = [layout.channels, indices.len(), block / 4, words];
                run.dispatch(
                    &self.gather,
                    &params,
                    &[&input, &output, &index_buffer],
                    words.div_ceil(WORKGROUP),
                );
                run.read(&output);
            }
            for out in run.finish().await? {
                result.extend_from_slice(&out);
            }
        }
        Ok(result)
    }

    /// A storage buffer holding `bytes`, zero-padded to whole words.
    fn upload(&self, bytes: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let body = bytes.len() & !3;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.len().next_multiple_of(4).max(4) as u64,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if body > 0 {
            self.queue.write_buffer(&buffer, 0, &bytes[..body]);
        }
        if body < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - body].copy_from_slice(&bytes[body..]);
            self.queue.write_buffer(&buffer, body as u64, &tail);
        }
        buffer
    }

    fn output(&self, bytes: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.max(4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }
}

/// Invocations per channel unit (a power of two, at most a workgroup) and units per channel for
/// `lp_reduce.wgsl`: short channels share a workgroup instead of leaving most of it idle.
fn lp_split(per_channel: usize) -> (usize, usize) {
    let lanes = per_channel
        .div_ceil(LP_RUN)
        .next_power_of_two()
        .min(WORKGROUP);
    (lanes, per_channel.div_ceil(lanes * LP_RUN))
}

/// Splits chunks into consecutive batches of at most `BATCH_BYTES` input (at least one chunk
/// each): a batch is one submission and one read-back, so GPU memory stays bounded while small
/// chunks do not each pay a map round trip.
fn batches<T>(chunks: &[T], bytes: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut total) = (0, 0);
    for (i, chunk) in chunks.iter().enumerate() {
        if i > start && total + bytes(chunk) > BATCH_BYTES {
            out.push(&chunks[start..i]);
            (start, total) = (i, 0);
        }
        total += bytes(chunk);
    }
    if start < chunks.len() {
        out.push(&chunks[start..]);
    }
    out
}

/// One command submission: dispatches, then a single mapped read-back of every `read` buffer.
/// GPU validation and out-of-memory errors inside it reject the call.
struct Batch<'a> {
    gpu: &'a Gpu,
    encoder: wgpu::CommandEncoder,
    reads: Vec<wgpu::Buffer>,
    validation: wgpu::ErrorScopeGuard,
    memory: wgpu::ErrorScopeGuard,
}

impl<'a> Batch<'a> {
    fn new(gpu: &'a Gpu) -> Self {
        let validation = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let encoder = gpu.device.create_command_encoder(&Default::default());
        Batch {
            gpu,
            encoder,
            reads: Vec::new(),
            validation,
            memory,
        }
    }

    /// Binds `buffers` after the uniform `params` (bindings 1..) and dispatches `workgroups`
    /// workgroups, folded into 2D above the per-dimension limit (the shaders rebuild the index).
    fn dispatch(
        &mut self,
        kernel: &Kernel,
        params: &[usize],
        buffers: &[&wgpu::Buffer],
        workgroups: usize,
    ) {
        let params: Vec<u32> = params.iter().map(|&v| v as u32).collect();
        let uniform = self
            .gpu
            .upload(bytemuck::cast_slice(&params), wgpu::BufferUsages::UNIFORM);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, buffer) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: buffer.as_entire_binding(),
            });
        }
        let bind_group = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &kernel.layout,
                entries: &entries,
            });
        let mut pass = self.encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        self.gpu.dispatches.set(self.gpu.dispatches.get() + 1);
        let x = workgroups.clamp(1, MAX_GROUPS_PER_DIM);
        pass.dispatch_workgroups(x as u32, workgroups.div_ceil(x).max(1) as u32, 1);
    }

    fn read(&mut self, buffer: &wgpu::Buffer) {
        self.reads.push(buffer.clone());
    }

    /// Submits and returns the contents of the `read` buffers, in order.
    async fn finish(mut self) -> Result<Vec<Vec<u8>>, String> {
        let total: u64 = self.reads.iter().map(|b| b.size()).sum();
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: total.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut offset = 0;
        for buffer in &self.reads {
            self.encoder
                .copy_buffer_to_buffer(buffer, 0, &staging, offset, buffer.size());
            offset += buffer.size();
        }
        self.gpu.queue.submit([self.encoder.finish()]);
        let memory_error = self.memory.pop().await;
        let validation_error = self.validation.pop().await;
        if let Some(e) = memory_error.or(validation_error) {
            return Err(format!("WebGPU error: {e}"));
        }
        let data = read(&staging).await?;
        let mut offset = 0;
        Ok(self
            .reads
            .iter()
            .map(|b| {
                let part = data[offset..offset + b.size() as usize].to_vec();
                offset += b.size() as usize;
                part
            })
            .collect())
    }
}

/// Maps a MAP_READ buffer and copies its contents out.
async fn read(buffer: &wgpu::Buffer) -> Result<Vec<u8>, String> {
    let mut resolve = None;
    let promise = js_sys::Promise::new(&mut |res, _| resolve = Some(res));
    let resolve = resolve.ok_or("Promise executor did not run")?;
    let mapped = Rc::new(Cell::new(false));
    let flag = mapped.clone();
    buffer
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |result| {
            flag.set(result.is_ok());
            let _ = resolve.call0(&JsValue::UNDEFINED);
        });
    JsFuture::from(promise)
        .await
        .map_err(|e| format!("{e:?}"))?;
    if !mapped.get() {
        return Err("mapping a GPU buffer for reading failed".into());
    }
    let data = buffer
        .slice(..)
        .get_mapped_range()
        .map_err(|e| e.to_string())?
        .to_vec();
    buffer.unmap();
    Ok(data)
}
