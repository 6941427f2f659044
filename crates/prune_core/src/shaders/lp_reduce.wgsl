// Partial per-channel sums of |x|^p over one chunk of a tensor seen as [outer, channels, inner].
// A "unit" is one channel's run of at most LANES * RUN elements (unit = channel * splits + split).
// LANES invocations share a unit, each summing up to RUN strided elements; a tree reduction over
// the lanes gives partials[unit]; a workgroup handles WG / LANES units. The host adds partials in
// f64. Non-finite inputs raise a flag instead of entering the sums (WGSL lets implementations
// assume no inf/NaN), and the host then redoes the call on the CPU.

struct Params {
    channels: u32,    // channels in this chunk
    inner: u32,       // elements per channel row
    per_channel: u32, // elements of one channel in this chunk (outer rows * inner)
    splits: u32,      // units per channel
    units: u32,       // channels * splits
    is_f16: u32,
    p: u32,
    lanes: u32,       // invocations per unit: a power of two <= WG
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
    let lanes = params.lanes;
    let first_unit = (wid.x + wid.y * nwg.x) * (WG / lanes);
    if first_unit >= params.units {
        return; // the whole workgroup: uniform
    }
    let unit = first_unit + lid / lanes;
    let lane = lid % lanes;
    var sum = 0.0;
    if unit < params.units {
        let channel = unit / params.splits;
        let first = (unit % params.splits) * lanes * RUN;
        for (var r = 0u; r < RUN; r++) {
            let j = first + r * lanes + lane;
            if j >= params.per_channel {
                break;
            }
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
    for (var stride = lanes / 2u; stride > 0u; stride >>= 1u) {
        if lane < stride {
            acc[lid] += acc[lid + stride];
        }
        workgroupBarrier();
    }
    if lane == 0u && unit < params.units {
        partials[unit] = acc[lid];
    }
}
