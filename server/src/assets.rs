//! The participants' page and the wasm client, embedded in the binary.
//!
//! Everything under `www/` at build time (`index.html`, `style.css`, and `www/pkg/`, the
//! output of `wasm-pack build client-wasm --target web --out-dir ../www/pkg`) is compiled into
//! `pairlab`, so the binary alone can be copied to a machine and run. `server/build.rs` makes
//! cargo re-embed the files whenever something under `www/` changes.
//!
//! When the wasm client was not built, the server still builds and runs, and `/` says so in
//! words, with the command that builds it.

use std::borrow::Cow;

use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../www"]
#[allow_missing = true]
struct Www;

/// The wasm client's JavaScript entry point, relative to `www/`: present when the client was
/// built.
pub const CLIENT_ENTRY: &str = "pkg/pairlab_client.js";

/// The command that builds the client into `www/pkg/` (from the workspace root).
pub const BUILD_CLIENT_COMMAND: &str =
    "wasm-pack build client-wasm --target web --out-dir ../www/pkg";

/// One embedded file, ready to serve.
#[derive(Debug, Clone)]
pub struct Asset {
    /// The file's bytes.
    pub body: Cow<'static, [u8]>,
    /// The `Content-Type` header value.
    pub content_type: Cow<'static, str>,
    /// A strong validator for `ETag` / `If-None-Match`: the file's SHA-256, hex, quoted.
    pub etag: String,
}

/// Whether the wasm client was built into `www/pkg/` when this binary was compiled.
pub fn client_built() -> bool {
    Www::get(CLIENT_ENTRY).is_some()
}

/// The embedded file at `path` (relative to `www/`, no leading slash); `None` when absent.
/// `""` and paths ending in `/` mean their `index.html`.
pub fn get(path: &str) -> Option<Asset> {
    let path = path.trim_start_matches('/');
    let path: Cow<'_, str> = if path.is_empty() || path.ends_with('/') {
        Cow::Owned(format!("{path}index.html"))
    } else {
        Cow::Borrowed(path)
    };
    if path == "index.html" {
        return Some(index());
    }
    let file = Www::get(&path)?;
    Some(Asset {
        etag: etag(&file.metadata.sha256_hash()),
        content_type: content_type(&path),
        body: file.data,
    })
}

/// The page at `/`: `www/index.html`, or, when the client or the page was not built into the
/// binary, a page that says so and how to build it.
pub fn index() -> Asset {
    match Www::get("index.html") {
        Some(file) if client_built() => Asset {
            etag: etag(&file.metadata.sha256_hash()),
            content_type: content_type("index.html"),
            body: file.data,
        },
        _ => {
            let body = not_built_page();
            Asset {
                etag: format!("\"not-built-{}\"", body.len()),
                content_type: content_type("index.html"),
                body: Cow::Owned(body.into_bytes()),
            }
        }
    }
}

fn not_built_page() -> String {
    let missing = if Www::get("index.html").is_none() {
        "The page (www/index.html) and the wasm client (www/pkg/) were not found when this pairlab binary was built."
    } else {
        "The wasm client (www/pkg/pairlab_client.js) was not built when this pairlab binary was built."
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pairlab: client not built</title></head>\n\
         <body data-state=\"error\"><h1>The pairlab client was not built</h1>\n\
         <p id=\"error\">{missing} Participants cannot use this server yet.</p>\n\
         <p>Build the client, then rebuild the server (it embeds the files), from the repository's root folder:</p>\n\
         <pre>{BUILD_CLIENT_COMMAND}\ncargo build --release -p pairlab-server</pre>\n\
         </body></html>\n"
    )
}

/// The `Content-Type` for a file name. The WebAssembly module must be `application/wasm`, or
/// browsers refuse `WebAssembly.instantiateStreaming` (MDN); module scripts are
/// `text/javascript` (RFC 9239).
pub fn content_type(path: &str) -> Cow<'static, str> {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    let known = match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "ts" => "text/plain; charset=utf-8",
        _ => "",
    };
    if !known.is_empty() {
        return Cow::Borrowed(known);
    }
    Cow::Owned(mime_guess_fallback(path).unwrap_or_else(|| "application/octet-stream".to_owned()))
}

fn mime_guess_fallback(path: &str) -> Option<String> {
    // rust-embed records a guessed type for every embedded file (its `mime-guess` feature).
    Www::get(path).map(|f| f.metadata.mimetype().to_owned())
}

fn etag(hash: &[u8; 32]) -> String {
    let mut s = String::with_capacity(66);
    s.push('"');
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("pkg/pairlab_client_bg.wasm"),
            "application/wasm"
        );
        assert_eq!(
            content_type("pkg/pairlab_client.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn index_always_exists_and_says_when_client_is_missing() {
        let page = index();
        assert!(page.content_type.starts_with("text/html"));
        let text = String::from_utf8_lossy(&page.body);
        if client_built() {
            assert!(get(CLIENT_ENTRY).is_some());
        } else {
            assert!(text.contains("was not built"), "{text}");
            assert!(text.contains(BUILD_CLIENT_COMMAND), "{text}");
        }
        assert_eq!(get("").map(|a| a.etag), Some(page.etag.clone()));
        assert_eq!(get("index.html").map(|a| a.etag), Some(page.etag));
    }

    #[test]
    fn missing_files_and_traversal() {
        assert!(get("nope.txt").is_none());
        assert!(get("../Cargo.toml").is_none());
        assert!(get("../../etc/passwd").is_none());
    }
}
