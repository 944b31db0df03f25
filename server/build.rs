//! Prepares the page and the wasm client in `www/` for embedding (`server/src/assets.rs`
//! embeds what this writes to `$OUT_DIR`):
//!
//! - `$OUT_DIR/www-identity/`: every file of `www/` as it is, except the WebAssembly client,
//!   without the custom sections only debuggers read (see [`DEBUGGING_SECTIONS`]; wasm-opt
//!   would drop them, but Debian's binaryen is too old to read this module), and
//!   `index.html`, whose references to the other files (`"style.css"`,
//!   `'./pkg/pairlab_client.js'`, …, in quotes) get `?v=<version>` appended, the file's
//!   content hash. The server serves a file requested
//!   with its current version as immutable (cached for a year), so a participant's browser
//!   downloads the client once per build and afterwards revalidates only `index.html`.
//! - `$OUT_DIR/www-br/` and `$OUT_DIR/www-gzip/`: the brotli (quality 11) and gzip (level 9)
//!   encodings of each text or WebAssembly file, at the same relative path, each kept only when
//!   it is smaller than the file itself. Compressing once here, at the best settings, costs
//!   nothing per request.
//! - `$OUT_DIR/asset_versions.rs`: `ASSET_VERSIONS`, each file's path and version, which the
//!   server compares with the `v` of a request.
//!
//! A version is the first [`VERSION_HEX_DIGITS`] lowercase hex digits of the SHA-256 of the
//! file's bytes as served without content coding (after the changes above).
//!
//! Cargo re-runs this whenever something under `www/` changes (a directory given to
//! `rerun-if-changed` is scanned recursively, new files included), so the binary always embeds
//! the current files.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// How many hex digits of the SHA-256 a version keeps (64 bits: collisions between two builds
/// of one file are not a concern).
const VERSION_HEX_DIGITS: usize = 16;

/// File name extensions whose files are worth compressing (text and WebAssembly; images such
/// as PNG are compressed already).
const COMPRESSIBLE: &[&str] = &[
    "html", "htm", "css", "js", "mjs", "wasm", "json", "map", "svg", "txt", "md", "ts", "ico",
];

/// brotli's densest setting (0..=11) and its largest standard window (2^24 bytes).
const BROTLI_QUALITY: i32 = 11;
const BROTLI_LG_WINDOW: i32 = 24;

fn main() {
    println!("cargo:rerun-if-changed=../www");
    println!("cargo:rerun-if-changed=../scenes/default.toml");
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www");
    let files = read_tree(&www);

    // What is served without content coding: the wasm without its debugging sections, the
    // other files as they are, then the page, which names the others' versions.
    let mut served: BTreeMap<String, Vec<u8>> = files
        .into_iter()
        .map(|(path, bytes)| {
            let bytes = if path.ends_with(".wasm") {
                without_debugging_sections(&path, bytes)
            } else {
                bytes
            };
            (path, bytes)
        })
        .collect();
    let versions: BTreeMap<String, String> = served
        .iter()
        .map(|(path, bytes)| (path.clone(), version(bytes)))
        .collect();
    if let Some(page) = served.get_mut("index.html") {
        *page = versioned_references(page, &versions);
    }

    let identity = out_dir.join("www-identity");
    let brotli = out_dir.join("www-br");
    let gzip = out_dir.join("www-gzip");
    for dir in [&identity, &brotli, &gzip] {
        if dir.exists() {
            fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
        }
        create_dir(dir);
    }
    for (path, bytes) in &served {
        write(&identity.join(path), bytes);
        if !compressible(path) {
            continue;
        }
        for (dir, encoded) in [(&brotli, brotli_encode(bytes)), (&gzip, gzip_encode(bytes))] {
            if encoded.len() < bytes.len() {
                write(&dir.join(path), &encoded);
            }
        }
    }

    let mut table = String::from(
        "/// Each embedded file's path (relative to `www/`) and version (written by build.rs).\n\
         const ASSET_VERSIONS: &[(&str, &str)] = &[\n",
    );
    for (path, version) in versions.iter().filter(|(path, _)| *path != "index.html") {
        table.push_str(&format!("    ({path:?}, {version:?}),\n"));
    }
    table.push_str("];\n");
    write(&out_dir.join("asset_versions.rs"), table.as_bytes());
}

/// Every file under `root`, by its path relative to `root` with `/` separators; empty when
/// `root` does not exist (the client was never built: the server says so at `/`).
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .expect("listed under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let bytes =
                fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            files.insert(relative, bytes);
        }
    }
    files
}

/// The version of a file's bytes: see [`VERSION_HEX_DIGITS`].
fn version(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(VERSION_HEX_DIGITS);
    hex
}

/// `index.html` with `?v=<version>` after every quoted reference to another embedded file,
/// written as `"path"` or `"./path"` (either quote).
fn versioned_references(page: &[u8], versions: &BTreeMap<String, String>) -> Vec<u8> {
    let mut text = String::from_utf8(page.to_vec()).expect("www/index.html is UTF-8");
    for (path, version) in versions {
        if path == "index.html" {
            continue;
        }
        for prefix in ["", "./"] {
            for quote in ['"', '\''] {
                let plain = format!("{quote}{prefix}{path}{quote}");
                let versioned = format!("{quote}{prefix}{path}?v={version}{quote}");
                text = text.replace(&plain, &versioned);
            }
        }
    }
    text.into_bytes()
}

/// The custom sections a browser never reads: `name` (function names for debuggers' stack
/// traces, over a quarter of the client's module), `producers` and `target_features` (tool
/// metadata). wasm-opt, when it runs, drops them too.
const DEBUGGING_SECTIONS: &[&str] = &["name", "producers", "target_features"];

/// A WebAssembly module without its [`DEBUGGING_SECTIONS`]. Only the module's top-level layout
/// is read (WebAssembly core specification §5.5: the magic and version, then sections, each an
/// id byte, a LEB128 `u32` size and that many bytes; a custom section, id 0, starts with its
/// name, a LEB128 length and UTF-8). Anything else is kept byte for byte; a file that does not
/// follow that layout is embedded unchanged, with a build warning.
fn without_debugging_sections(path: &str, module: Vec<u8>) -> Vec<u8> {
    match strip_sections(&module, DEBUGGING_SECTIONS) {
        Some(stripped) => stripped,
        None => {
            println!("cargo:warning=www/{path} is not a WebAssembly module as expected; embedded unchanged");
            module
        }
    }
}

/// `module` without its custom sections named in `names`; `None` when it is not laid out as a
/// WebAssembly module.
fn strip_sections(module: &[u8], names: &[&str]) -> Option<Vec<u8>> {
    const HEADER: &[u8] = b"\0asm\x01\0\0\0";
    if !module.starts_with(HEADER) {
        return None;
    }
    let mut out = HEADER.to_vec();
    let mut at = HEADER.len();
    while at < module.len() {
        let id = module[at];
        let (size, content) = leb128_u32(module, at + 1)?;
        let end = content.checked_add(usize::try_from(size).ok()?)?;
        let section = module.get(at..end)?;
        let drop = id == 0 && {
            let (name_len, name_at) = leb128_u32(module, content)?;
            let name =
                module.get(name_at..name_at.checked_add(usize::try_from(name_len).ok()?)?)?;
            names.iter().any(|n| n.as_bytes() == name)
        };
        if !drop {
            out.extend_from_slice(section);
        }
        at = end;
    }
    Some(out)
}

/// The unsigned LEB128 `u32` at `at` and the index after it; `None` when truncated or too long.
fn leb128_u32(bytes: &[u8], at: usize) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let byte = *bytes.get(at + i)?;
        value |= u32::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, at + i + 1));
        }
    }
    None
}

fn compressible(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, ext)| COMPRESSIBLE.contains(&ext.to_ascii_lowercase().as_str()))
}

fn brotli_encode(bytes: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin: BROTLI_LG_WINDOW,
        size_hint: bytes.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).expect("brotli into memory");
    out
}

fn gzip_encode(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

fn create_dir(dir: &Path) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        create_dir(parent);
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
