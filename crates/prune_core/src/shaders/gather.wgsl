// Gather along one axis of a tensor seen as [outer, channels, block_words] u32 words: output word
// w of [outer, kept, block_words] copies its source word. Raw bits, so exact for any dtype whose
// per-channel block is a whole number of words.

struct Params {
    channels: u32,
    kept: u32,
    block_words: u32,
    total_words: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read> indices: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = gid.x + gid.y * nwg.x * 256u;
    if w >= params.total_words {
        return;
    }
    let per_row = params.kept * params.block_words;
    let row = w / per_row;
    let k = (w % per_row) / params.block_words;
    let e = w % params.block_words;
    dst[w] = src[(row * params.channels + indices[k]) * params.block_words + e];
}
