#!/usr/bin/env bash
# Builds crates/prune_core to wasm32 and writes the wasm-bindgen output to src/core/wasm/.
#   bash scripts/build_wasm.sh          rebuild src/core/wasm/
#   bash scripts/build_wasm.sh --check  rebuild into a temp dir; fail if it differs from src/core/wasm/
# Toolchain: Debian rustc-web (/usr/bin/rustc + rust-web-src, std built with -Zbuild-std),
# wasm-ld (lld), wasm-bindgen CLI of exactly the crate's wasm-bindgen version, binaryen wasm-opt.
# Without that toolchain --check prints "wasm check skipped: ..." and exits 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/crates/prune_core"
DEST="$ROOT/src/core/wasm"
RUSTC_BIN="${PRUNE_VIT_RUSTC:-/usr/bin/rustc}"
CARGO_BIN="${PRUNE_VIT_CARGO:-/usr/bin/cargo}"
BINDGEN_VERSION="$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' "$CRATE/Cargo.toml")"

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

missing=()
[[ -x "$RUSTC_BIN" ]] || missing+=("$RUSTC_BIN")
[[ -x "$CARGO_BIN" ]] || missing+=("$CARGO_BIN")
if [[ -x "$RUSTC_BIN" ]]; then
  SYSROOT="$("$RUSTC_BIN" --print sysroot)"
  [[ -d "$SYSROOT/lib/rustlib/src/rust/library/std" ]] || missing+=("rust std sources (rust-web-src) for -Zbuild-std")
fi
command -v wasm-ld >/dev/null || missing+=("wasm-ld (lld)")
command -v wasm-opt >/dev/null || missing+=("wasm-opt (binaryen)")
if ! command -v wasm-bindgen >/dev/null; then
  missing+=("wasm-bindgen $BINDGEN_VERSION (cargo install wasm-bindgen-cli --version $BINDGEN_VERSION)")
elif [[ "$(wasm-bindgen --version)" != "wasm-bindgen $BINDGEN_VERSION" ]]; then
  missing+=("wasm-bindgen $BINDGEN_VERSION (found: $(wasm-bindgen --version))")
fi
if ((${#missing[@]})); then
  if ((check)); then
    echo "wasm check skipped: missing $(IFS=';'; echo "${missing[*]}")"
    exit 0
  fi
  echo "cannot build wasm, missing: $(IFS=';'; echo "${missing[*]}")" >&2
  exit 1
fi

# Panic locations embed source paths: map every machine path to a neutral prefix.
# reference-types is off so wasm-bindgen keeps JS objects in a JS-side heap instead of an externref
# table: binaryen 108 (Debian's wasm-opt) re-points the exported externref table at the funcref
# table, which breaks loading. simd128 (fixed-width SIMD, in every engine since 2021) is on for the
# linear algebra's micro-kernel.
CARGO_DIR="${CARGO_HOME:-$HOME/.cargo}"
flags=(
  "-Ctarget-feature=-reference-types,+simd128"
  "--remap-path-prefix=$CARGO_DIR/registry/src=/cargo/registry"
  "--remap-path-prefix=$CARGO_DIR/git/checkouts=/cargo/git"
  "--remap-path-prefix=$SYSROOT/lib/rustlib/src/rust=/rustc"
  "--remap-path-prefix=$CRATE=/prune_core"
)
CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; echo "${flags[*]}")"
export CARGO_ENCODED_RUSTFLAGS
export RUSTC="$RUSTC_BIN" RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld
unset RUSTFLAGS

(cd "$CRATE" && "$CARGO_BIN" build --locked --release --target wasm32-unknown-unknown \
  -Zbuild-std=std,panic_abort)

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
wasm-bindgen --target bundler --out-dir "$out" --out-name prune_core \
  "$CRATE/target/wasm32-unknown-unknown/release/prune_core.wasm"
wasm-opt -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-multivalue --enable-simd \
  "$out/prune_core_bg.wasm" -o "$out/prune_core_bg.wasm"

leaks="$(grep -a -l -E "$HOME|$ROOT|$CARGO_DIR|/usr/lib/rustlib" "$out"/* || true)"
if [[ -n "$leaks" ]]; then
  echo "machine paths leaked into: $leaks" >&2
  exit 1
fi

if ((check)); then
  if diff -r "$out" "$DEST" >/dev/null 2>&1; then
    echo "wasm check ok: src/core/wasm/ matches a fresh build"
    exit 0
  fi
  echo "wasm check FAILED: src/core/wasm/ differs from a fresh build of crates/prune_core;" \
    "run: deno task build:wasm" >&2
  diff -rq "$out" "$DEST" >&2 || true
  exit 1
fi
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$out"/* "$DEST"/
ls -l "$DEST"
