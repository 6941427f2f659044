// Stable selection: score i is kept when fewer than `drop` scores of its group come before it in
// a stable ascending sort, i.e. rank(i) = #{j in group : key_j < key_i or (key_j == key_i and
// j < i)} >= drop. Integer keys only, so the answer is bit-identical to the CPU sort.

struct Params {
    len: u32,
    group_size: u32,
    drop: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> scores: array<u32>; // f32 bit patterns
@group(0) @binding(2) var<storage, read_write> keep: array<u32>;

// Same mapping as cpu::sort_key: unsigned order = numeric order, -0 == +0, NaN above +inf.
fn sort_key(bits: u32) -> u32 {
    if (bits & 0x7fffffffu) > 0x7f800000u {
        return 0xffffffffu;
    }
    var b = bits;
    if b == 0x80000000u {
        b = 0u;
    }
    if (b & 0x80000000u) != 0u {
        return ~b;
    }
    return b | 0x80000000u;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= params.len {
        return;
    }
    let key = sort_key(scores[i]);
    let base = (i / params.group_size) * params.group_size;
    var rank = 0u;
    for (var j = base; j < base + params.group_size; j++) {
        let other = sort_key(scores[j]);
        rank += select(0u, 1u, other < key || (other == key && j < i));
    }
    keep[i] = select(0u, 1u, rank >= params.drop);
}
