//! Makes cargo rebuild the server when the page or the wasm client in `www/` changes, so
//! `rust-embed` embeds the current files (a directory given to `rerun-if-changed` is scanned
//! recursively, new files included).

fn main() {
    println!("cargo:rerun-if-changed=../www");
    println!("cargo:rerun-if-changed=../scenes/default.toml");
    println!("cargo:rerun-if-changed=build.rs");
}
