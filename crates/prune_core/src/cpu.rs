//! CPU implementations of every op. They are the `cpu` backend, the reference the GPU path is
//! tested against, and the GPU path's fallback for inputs it does not take.

/// How score vectors are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
}

impl Reduce {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "sum" => Ok(Self::Sum),
            "mean" => Ok(Self::Mean),
            "max" => Ok(Self::Max),
            _ => Err(format!(
                "unknown reduce {name:?} (expected sum, mean or max)"
            )),
        }
    }

    /// Reduces `values` (non-empty). Sums are accumulated in f64; max propagates NaN.
    fn apply(self, values: impl Iterator<Item = f32>) -> f32 {
        let mut count = 0usize;
        let mut sum = 0f64;
        let mut max = f32::NEG_INFINITY;
        for v in values {
            count += 1;
            sum += v as f64;
            if !max.is_nan() && (v.is_nan() || v > max) {
                max = v;
            }
        }
        match self {
            Self::Sum => sum as f32,
            Self::Mean => (sum / count as f64) as f32,
            Self::Max => max,
        }
    }
}

/// A row-major tensor seen as `[outer, channels, inner]` around one axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl Layout {
    /// Checks `axis` and that `dims` describe exactly `len` elements.
    pub fn new(dims: &[u32], axis: u32, len: usize) -> Result<Self, String> {
        let axis = axis as usize;
        if axis >= dims.len() {
            return Err(format!("axis {axis} out of range for {} dims", dims.len()));
        }
        let product = |ds: &[u32]| {
            ds.iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        };
        let (outer, channels, inner) = match (product(&dims[..axis]), product(&dims[axis + 1..])) {
            (Some(o), Some(i)) => (o, dims[axis] as usize, i),
            _ => return Err("tensor too large".into()),
        };
        let total = outer
            .checked_mul(channels)
            .and_then(|n| n.checked_mul(inner));
        if total != Some(len) {
            return Err(format!("dims {dims:?} do not match {len} elements"));
        }
        Ok(Self {
            outer,
            channels,
            inner,
        })
    }
}

/// Exact IEEE binary16 → binary32 conversion (subnormals, infinities and NaN payloads kept).
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let man = h & 0x3ff;
    let bits = match exp {
        // Zero or subnormal: man · 2^-24 is exact in f32.
        0 => sign | (man as f32 * (1.0 / 16_777_216.0)).to_bits(),
        31 => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Every binary16 value as f32, indexed by its bits (256 KiB, built on first use): a load per
/// element where the scores of float16 weights decode billions of them.
pub fn f16_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(f16_to_f32).collect())
}

/// Per-channel Σ|x|^p over every axis but the channel axis, accumulated in f64.
pub fn channel_lp_scores<T: Copy>(
    data: &[T],
    layout: Layout,
    p: u32,
    decode: impl Fn(T) -> f32,
) -> Result<Vec<f32>, String> {
    if p != 1 && p != 2 {
        return Err(format!("p must be 1 or 2, got {p}"));
    }
    let mut sums = vec![0f64; layout.channels];
    if layout.inner == 1 {
        // The channel axis innermost (a weight's output axis): rows of channels, summed in the
        // same order as below but without a division per element.
        for row in data.chunks_exact(layout.channels.max(1)) {
            if p == 1 {
                for (s, &v) in sums.iter_mut().zip(row) {
                    *s += (decode(v) as f64).abs();
                }
            } else {
                for (s, &v) in sums.iter_mut().zip(row) {
                    let x = decode(v) as f64;
                    *s += x * x;
                }
            }
        }
    } else if layout.inner > 0 {
        for (row, values) in data.chunks_exact(layout.inner).enumerate() {
            let row_sum: f64 = if p == 1 {
                values.iter().map(|&v| (decode(v) as f64).abs()).sum()
            } else {
                values.iter().map(|&v| (decode(v) as f64).powi(2)).sum()
            };
            sums[row % layout.channels] += row_sum;
        }
    }
    Ok(sums.into_iter().map(|s| s as f32).collect())
}

/// Elementwise reduction of `count` equally long vectors stored back to back in `flat`.
pub fn aggregate(flat: &[f32], count: usize, reduce: Reduce) -> Result<Vec<f32>, String> {
    if count == 0 || flat.len() % count != 0 {
        return Err(format!(
            "cannot split {} values into {count} vectors",
            flat.len()
        ));
    }
    let len = flat.len() / count;
    Ok((0..len)
        .map(|j| reduce.apply((0..count).map(|k| flat[k * len + j])))
        .collect())
}

fn group_size(len: usize, groups: usize) -> Result<usize, String> {
    if groups == 0 || len % groups != 0 {
        return Err(format!(
            "{len} scores do not split into {groups} equal groups"
        ));
    }
    Ok(len / groups)
}

/// Reduces each of `groups` contiguous equal groups to one value.
pub fn group_scores(scores: &[f32], groups: usize, reduce: Reduce) -> Result<Vec<f32>, String> {
    let size = group_size(scores.len(), groups)?;
    if size == 0 {
        return Err("groups must not be empty".into());
    }
    Ok(scores
        .chunks_exact(size)
        .map(|g| reduce.apply(g.iter().copied()))
        .collect())
}

/// Maps an f32 to a u32 whose unsigned order is ascending numeric order, with -0 == +0 and every
/// NaN equal to each other and above +inf. The GPU selection shader uses the same mapping.
pub fn sort_key(x: f32) -> u32 {
    if x.is_nan() {
        return u32::MAX;
    }
    let bits = if x == 0.0 { 0 } else { x.to_bits() };
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Checks a per-group selection request; returns the group size.
pub fn check_selection(len: usize, groups: usize, drop: usize) -> Result<usize, String> {
    let size = group_size(len, groups)?;
    if drop > size {
        return Err(format!("cannot drop {drop} of {size} scores per group"));
    }
    Ok(size)
}

/// In each of `groups` contiguous equal groups, drops the `drop` lowest scores (a stable ascending
/// sort decides ties: the lower index goes first) and returns the kept global indices ascending.
pub fn select_keep_per_group(
    scores: &[f32],
    groups: usize,
    drop: usize,
) -> Result<Vec<u32>, String> {
    let size = check_selection(scores.len(), groups, drop)?;
    let mut keep = vec![true; scores.len()];
    let mut order: Vec<usize> = Vec::with_capacity(size);
    for base in (0..scores.len()).step_by(size.max(1)) {
        order.clear();
        order.extend(base..base + size);
        order.sort_by_key(|&i| sort_key(scores[i])); // stable
        for &i in &order[..drop] {
            keep[i] = false;
        }
    }
    Ok(kept_indices(&keep))
}

/// Ascending indices of the set flags.
pub fn kept_indices(flags: &[bool]) -> Vec<u32> {
    flags
        .iter()
        .enumerate()
        .filter(|(_, &k)| k)
        .map(|(i, _)| i as u32)
        .collect()
}

/// Checks a gather request; returns the layout (counted in elements).
pub fn check_gather(
    bytes: usize,
    dims: &[u32],
    element_size: u32,
    axis: u32,
    indices: &[u32],
) -> Result<Layout, String> {
    if element_size == 0 || bytes % element_size as usize != 0 {
        return Err(format!(
            "{bytes} bytes are not whole elements of {element_size} bytes"
        ));
    }
    let layout = Layout::new(dims, axis, bytes / element_size as usize)?;
    if let Some(&bad) = indices.iter().find(|&&i| i as usize >= layout.channels) {
        return Err(format!(
            "index {bad} out of range for axis of size {}",
            layout.channels
        ));
    }
    Ok(layout)
}

/// Gathers `indices` along `axis`, copying raw element bytes.
pub fn gather_axis(
    bytes: &[u8],
    dims: &[u32],
    element_size: u32,
    axis: u32,
    indices: &[u32],
) -> Result<Vec<u8>, String> {
    let layout = check_gather(bytes.len(), dims, element_size, axis, indices)?;
    let block = layout.inner * element_size as usize;
    // Single elements of a weight's innermost axis: fixed-size copies, not a call per element.
    match block {
        2 => return Ok(gather_blocks::<2>(bytes, layout, indices)),
        4 => return Ok(gather_blocks::<4>(bytes, layout, indices)),
        8 => return Ok(gather_blocks::<8>(bytes, layout, indices)),
        _ => {}
    }
    let mut out = Vec::with_capacity(layout.outer * indices.len() * block);
    for o in 0..layout.outer {
        let slice = &bytes[o * layout.channels * block..(o + 1) * layout.channels * block];
        for &k in indices {
            out.extend_from_slice(&slice[k as usize * block..(k as usize + 1) * block]);
        }
    }
    Ok(out)
}

fn gather_blocks<const B: usize>(bytes: &[u8], layout: Layout, indices: &[u32]) -> Vec<u8> {
    let mut out = vec![0u8; layout.outer * indices.len() * B];
    if indices.is_empty() {
        return out;
    }
    let rows_in = bytes.chunks_exact(layout.channels * B);
    for (src, dst) in rows_in.zip(out.chunks_exact_mut(indices.len() * B)) {
        for (d, &k) in dst.chunks_exact_mut(B).zip(indices) {
            let at = k as usize * B;
            d.copy_from_slice(&src[at..at + B]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_decoding() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        let table = f16_table();
        assert!((0..=u16::MAX).all(|h| table[h as usize].to_bits() == f16_to_f32(h).to_bits()));
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn selection_is_stable() {
        let s = [3.0, 1.0, 1.0, 0.0, -0.0, f32::NAN];
        assert_eq!(select_keep_per_group(&s, 1, 3).unwrap(), vec![0, 2, 5]);
        assert_eq!(select_keep_per_group(&s, 2, 1).unwrap(), vec![0, 2, 4, 5]);
    }

    #[test]
    fn lp_and_gather() {
        let data = [1.0f32, -2.0, 3.0, -4.0, 5.0, 6.0];
        let layout = Layout::new(&[2, 3], 1, 6).unwrap();
        assert_eq!(
            channel_lp_scores(&data, layout, 1, |v| v).unwrap(),
            vec![5.0, 7.0, 9.0]
        );
        let bytes: Vec<u8> = (0..6).collect();
        assert_eq!(
            gather_axis(&bytes, &[2, 3], 1, 1, &[2, 0]).unwrap(),
            vec![2, 0, 5, 3]
        );
    }

    #[test]
    fn fixed_size_gather_equals_element_by_element() {
        let bytes: Vec<u8> = (0..96u32).map(|i| (i * 7 % 251) as u8).collect();
        for size in [1usize, 2, 4, 8] {
            let cols = 96 / size / 4;
            let dims = [4u32, cols as u32];
            let idx = [cols as u32 - 1, 0, 2];
            let mut want = vec![];
            for o in 0..4 {
                for &k in &idx {
                    let at = (o * cols + k as usize) * size;
                    want.extend_from_slice(&bytes[at..at + size]);
                }
            }
            assert_eq!(
                gather_axis(&bytes, &dims, size as u32, 1, &idx).unwrap(),
                want
            );
            assert!(gather_axis(&bytes, &dims, size as u32, 1, &[])
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn innermost_channel_scores_equal_the_general_sum() {
        let data: Vec<f32> = (0..60)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0)
            .collect();
        for p in [1, 2] {
            // The sums of the general path when each row holds one element, in the same order.
            let a = channel_lp_scores(&data, Layout::new(&[5, 12], 1, 60).unwrap(), p, |v| v);
            let mut want = vec![0f64; 12];
            for (i, &v) in data.iter().enumerate() {
                want[i % 12] += if p == 1 {
                    (v as f64).abs()
                } else {
                    (v as f64).powi(2)
                };
            }
            let want: Vec<f32> = want.into_iter().map(|s| s as f32).collect();
            assert_eq!(a.unwrap(), want);
        }
    }
}
