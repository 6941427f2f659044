// Partial per-channel sums of |x|^p over one chunk of a tensor seen as [outer, channels, inner].
// Workgroup `g` handles channel g / splits and a run of RUN * WG of that channel's elements; the
// host adds the partials in f64. Non-finite inputs raise a flag instead of entering the sums
// (WGSL lets implementations assume no inf/NaN), and the host then redoes the call on the CPU.

struct Params {
    channels: u32,    // channels in this chunk
    inner: u32,       // elements per channel row
    per_channel: u32, // elements of one channel in this chunk (outer rows * inner)
    splits: u32,      // workgroups per channel
    total_groups: u32,
    is_f16: u32,
    p: u32,
    _pad: u32,
}

const WG: u32 = 256u;
const RUN: u32 = 16u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> words: array<u32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> nonfinite: atomic<u32>;

var<workgroup> acc: array<f32, WG>;

// Exact binary16 -> binary32 bit conversion.
fn f16_to_f32_bits(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let exp = (h >> 10u) & 0x1fu;
    let man = h & 0x3ffu;
    if exp == 0u {
        return sign | bitcast<u32>(f32(man) * 5.9604644775390625e-8); // man * 2^-24, exact
    }
    if exp == 31u {
        return sign | 0x7f800000u | (man << 13u);
    }
    return sign | ((exp + 112u) << 23u) | (man << 13u);
}

fn element_bits(index: u32) -> u32 {
    if params.is_f16 == 1u {
        let word = words[index >> 1u];
        return f16_to_f32_bits((word >> ((index & 1u) * 16u)) & 0xffffu);
    }
    return words[index];
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let group = wid.x + wid.y * nwg.x;
    if group >= params.total_groups {
        return;
    }
    let channel = group / params.splits;
    let first = (group % params.splits) * WG * RUN;
    var sum = 0.0;
    for (var r = 0u; r < RUN; r++) {
        let j = first + r * WG + lid;
        if j < params.per_channel {
            let row = j / params.inner;
            let index = (row * params.channels + channel) * params.inner + j % params.inner;
            let bits = element_bits(index);
            if (bits & 0x7f800000u) == 0x7f800000u {
                atomicOr(&nonfinite, 1u);
            } else {
                let v = abs(bitcast<f32>(bits));
                sum += select(v, v * v, params.p == 2u);
            }
        }
    }
    acc[lid] = sum;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            acc[lid] += acc[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        partials[group] = acc[0];
    }
}
