//! The participants' page and the wasm client, embedded in the binary, in every content coding
//! the server sends.
//!
//! Everything under `www/` at build time (`index.html`, `style.css`, and `www/pkg/`, the
//! output of `wasm-pack build client-wasm --target web --out-dir ../www/pkg`) is compiled into
//! `pairlab`, so the binary alone can be copied to a machine and run. `server/build.rs`
//! prepares the files (cargo re-runs it whenever something under `www/` changes):
//!
//! - each text or WebAssembly file is also embedded brotli- and gzip-encoded (compressed once,
//!   at build time, at the best settings; an encoding is kept only when it is smaller);
//!   [`Asset::negotiate`] picks the representation a request's `Accept-Encoding` asks for
//!   ([`negotiate`]: br, then gzip, then identity);
//! - every file has a *version*, a content hash ([`Asset::version`]); the page at `/` refers to
//!   the other files with it (`pkg/pairlab_client.js?v=…`), and the HTTP layer serves a request
//!   that names the current version as immutable, everything else (the page itself included)
//!   as `no-cache`, revalidated by `ETag`.
//!
//! Each representation has its own strong `ETag` (the SHA-256 of its bytes), so a cache never
//! mistakes the gzip body for the brotli one.
//!
//! When the wasm client was not built, the server still builds and runs, and `/` says so in
//! words, with the command that builds it.

use std::borrow::Cow;

use rust_embed::{EmbeddedFile, RustEmbed};

/// The files as served without content coding (`index.html` with versioned references).
#[derive(RustEmbed)]
#[folder = "$OUT_DIR/www-identity"]
#[allow_missing = true]
struct Identity;

/// The brotli encodings, at the same paths as in [`Identity`] (only where smaller).
#[derive(RustEmbed)]
#[folder = "$OUT_DIR/www-br"]
#[allow_missing = true]
struct Brotli;

/// The gzip encodings, at the same paths as in [`Identity`] (only where smaller).
#[derive(RustEmbed)]
#[folder = "$OUT_DIR/www-gzip"]
#[allow_missing = true]
struct Gzip;

// `ASSET_VERSIONS: &[(&str, &str)]`, sorted by path: each file's version (see build.rs).
include!(concat!(env!("OUT_DIR"), "/asset_versions.rs"));

/// The wasm client's JavaScript entry point, relative to `www/`: present when the client was
/// built.
pub const CLIENT_ENTRY: &str = "pkg/pairlab_client.js";

/// The command that builds the client into `www/pkg/` (from the workspace root).
pub const BUILD_CLIENT_COMMAND: &str =
    "wasm-pack build client-wasm --target web --out-dir ../www/pkg";

/// A content coding the server can send (RFC 9110 §8.4.1), as named in `Accept-Encoding` and
/// `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCoding {
    /// `br`, Brotli (RFC 7932).
    Brotli,
    /// `gzip` (RFC 1952); `x-gzip` in a request means the same (RFC 9110 §8.4.1.3).
    Gzip,
    /// `identity`: the bytes as they are.
    Identity,
}

impl ContentCoding {
    /// The server's order of preference among codings a request accepts equally: the smallest
    /// body first.
    pub const PREFERENCE: [ContentCoding; 3] = [Self::Brotli, Self::Gzip, Self::Identity];

    /// The coding's token (lowercase).
    pub fn token(self) -> &'static str {
        match self {
            Self::Brotli => "br",
            Self::Gzip => "gzip",
            Self::Identity => "identity",
        }
    }

    /// The `Content-Encoding` header value; `None` for identity (no header is sent).
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            coding => Some(coding.token()),
        }
    }

    /// Whether an `Accept-Encoding` token (already lowercase) names this coding.
    fn is_named(self, token: &str) -> bool {
        token == self.token() || (self == Self::Gzip && token == "x-gzip")
    }
}

/// One way to send a file: its bytes in one content coding.
#[derive(Debug, Clone)]
pub struct Representation {
    /// How `body` is encoded.
    pub coding: ContentCoding,
    /// The bytes on the wire.
    pub body: Cow<'static, [u8]>,
    /// A strong validator for `ETag` / `If-None-Match`: the SHA-256 of `body`, hex, quoted;
    /// so different for each coding of one file.
    pub etag: String,
}

/// One embedded file, ready to serve.
#[derive(Debug, Clone)]
pub struct Asset {
    /// The `Content-Type` header value (the same for every coding).
    pub content_type: Cow<'static, str>,
    /// The file's content hash, as the page writes it in `?v=` (see `server/build.rs`); `None`
    /// for the page itself, which is never served as immutable.
    pub version: Option<&'static str>,
    /// The identity representation first, then each encoding built for the file.
    pub representations: Vec<Representation>,
}

impl Asset {
    /// The representation to send to a request with this `Accept-Encoding` header value (see
    /// [`negotiate`]).
    pub fn negotiate(&self, accept_encoding: Option<&str>) -> &Representation {
        let coding = negotiate(
            accept_encoding,
            self.representations.iter().map(|r| r.coding),
        );
        self.representations
            .iter()
            .find(|r| r.coding == coding)
            .unwrap_or(&self.representations[0])
    }

    /// Whether `version` (a request's `v`) is this file's current version, so the response may
    /// be cached as immutable.
    pub fn is_current_version(&self, version: &str) -> bool {
        self.version == Some(version)
    }
}

/// The content coding to send, from a request's `Accept-Encoding` value and the codings
/// `available` (RFC 9110 §12.5.3):
///
/// - no header: identity (a client that says nothing may not decode anything);
/// - each listed coding has its `q` weight (0 to 1, default 1; `x-gzip` is `gzip`; tokens are
///   case-insensitive); `*` gives its weight to every coding not listed; identity not listed
///   and not covered by `*` is acceptable, as the last resort (the lowest weight above 0);
/// - the available coding with the highest weight above 0 wins, ties going to the smallest
///   body ([`ContentCoding::PREFERENCE`]: br, gzip, identity);
/// - when nothing available is acceptable (`identity;q=0` with no other coding the server
///   has), identity all the same: the RFC lets the server send it rather than an error.
///
/// An element whose weight is not a valid qvalue is ignored.
pub fn negotiate(
    accept_encoding: Option<&str>,
    available: impl IntoIterator<Item = ContentCoding>,
) -> ContentCoding {
    let Some(header) = accept_encoding else {
        return ContentCoding::Identity;
    };
    let listed: Vec<(String, u16)> = header.split(',').filter_map(accept_element).collect();
    let weight = |coding: ContentCoding| -> u16 {
        let named = listed.iter().find(|(token, _)| coding.is_named(token));
        let any = listed.iter().find(|(token, _)| token == "*");
        match (named, any) {
            (Some((_, q)), _) | (None, Some((_, q))) => *q,
            // "Acceptable by default": the last resort, below every listed coding.
            (None, None) if coding == ContentCoding::Identity => 1,
            (None, None) => 0,
        }
    };
    let available: Vec<ContentCoding> = available.into_iter().collect();
    ContentCoding::PREFERENCE
        .into_iter()
        .filter(|c| available.contains(c))
        .map(|c| (c, weight(c)))
        .filter(|&(_, q)| q > 0)
        // max_by_key keeps the last of equals: reverse so that ties go to the preferred one.
        .rev()
        .max_by_key(|&(_, q)| q)
        .map_or(ContentCoding::Identity, |(c, _)| c)
}

/// A qvalue of 1, in thousandths.
const QVALUE_ONE: u16 = 1000;

/// One element of `Accept-Encoding`: its coding token (lowercase) and weight in thousandths;
/// `None` for an empty element or one with an invalid weight.
fn accept_element(element: &str) -> Option<(String, u16)> {
    let mut parts = element.split(';');
    let token = parts.next()?.trim().to_ascii_lowercase();
    if token.is_empty() {
        return None;
    }
    let mut q = QVALUE_ONE;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            q = qvalue(value.trim())?;
        }
    }
    Some((token, q))
}

/// A qvalue (RFC 9110 §12.4.2: `0[.ddd]` or `1[.000]`) in thousandths.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(QVALUE_ONE),
        _ => None,
    }
}

/// Whether the wasm client was built into `www/pkg/` when this binary was compiled.
pub fn client_built() -> bool {
    Identity::get(CLIENT_ENTRY).is_some()
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
    let identity = Identity::get(&path)?;
    Some(Asset {
        content_type: content_type(&path),
        version: version(&path),
        representations: representations(&path, identity),
    })
}

/// The page at `/`: `www/index.html` (its references versioned), or, when the client or the
/// page was not built into the binary, a page that says so and how to build it.
pub fn index() -> Asset {
    match Identity::get("index.html") {
        Some(file) if client_built() => Asset {
            content_type: content_type("index.html"),
            version: None,
            representations: representations("index.html", file),
        },
        _ => {
            let body = not_built_page();
            Asset {
                content_type: content_type("index.html"),
                version: None,
                representations: vec![Representation {
                    coding: ContentCoding::Identity,
                    etag: format!("\"not-built-{}\"", body.len()),
                    body: Cow::Owned(body.into_bytes()),
                }],
            }
        }
    }
}

/// The file at `path` in every coding built for it, identity first.
fn representations(path: &str, identity: EmbeddedFile) -> Vec<Representation> {
    let encoded = [
        (ContentCoding::Brotli, Brotli::get(path)),
        (ContentCoding::Gzip, Gzip::get(path)),
    ];
    std::iter::once((ContentCoding::Identity, Some(identity)))
        .chain(encoded)
        .filter_map(|(coding, file)| {
            file.map(|file| Representation {
                coding,
                etag: etag(&file.metadata.sha256_hash()),
                body: file.data,
            })
        })
        .collect()
}

/// The version build.rs computed for the file at `path`.
fn version(path: &str) -> Option<&'static str> {
    ASSET_VERSIONS
        .binary_search_by_key(&path, |&(p, _)| p)
        .ok()
        .map(|i| ASSET_VERSIONS[i].1)
}

fn not_built_page() -> String {
    let missing = if Identity::get("index.html").is_none() {
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
    Identity::get(path).map(|f| f.metadata.mimetype().to_owned())
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
        assert_eq!(
            content_type("pairlab.js"),
            "text/javascript; charset=utf-8",
            "any www/*.js, the client helper included, is a module script"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn index_always_exists_and_says_when_client_is_missing() {
        let page = index();
        assert!(page.content_type.starts_with("text/html"));
        assert_eq!(page.version, None, "the page is never immutable");
        let identity = &page.representations[0];
        assert_eq!(identity.coding, ContentCoding::Identity);
        let text = String::from_utf8_lossy(&identity.body);
        if client_built() {
            let entry = get(CLIENT_ENTRY).expect("the client entry");
            let version = entry.version.expect("a version");
            assert!(
                text.contains(&format!("'./{CLIENT_ENTRY}?v={version}'")),
                "the page imports the current client: {text}"
            );
        } else {
            assert!(text.contains("was not built"), "{text}");
            assert!(text.contains(BUILD_CLIENT_COMMAND), "{text}");
        }
        let etag = |a: Option<Asset>| a.map(|a| a.representations[0].etag.clone());
        assert_eq!(etag(get("")), Some(identity.etag.clone()));
        assert_eq!(etag(get("index.html")), Some(identity.etag.clone()));
    }

    #[test]
    fn every_coding_has_its_own_etag() {
        for path in ["", "style.css", CLIENT_ENTRY, "pkg/pairlab_client_bg.wasm"] {
            let Some(asset) = get(path) else { continue };
            let mut etags: Vec<&str> = asset
                .representations
                .iter()
                .map(|r| r.etag.as_str())
                .collect();
            etags.sort_unstable();
            etags.dedup();
            assert_eq!(etags.len(), asset.representations.len(), "{path}");
        }
    }

    const ALL: [ContentCoding; 3] = ContentCoding::PREFERENCE;
    use ContentCoding::{Brotli as Br, Gzip as Gz, Identity as Id};

    #[test]
    fn negotiation_prefers_br_then_gzip_then_identity() {
        assert_eq!(negotiate(None, ALL), Id, "no header: identity");
        assert_eq!(negotiate(Some(""), ALL), Id, "empty header: identity only");
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd"), ALL), Br);
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd"), [Gz, Id]), Gz);
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd"), [Id]), Id);
        assert_eq!(negotiate(Some("gzip"), ALL), Gz);
        assert_eq!(negotiate(Some("x-gzip"), ALL), Gz, "x-gzip is gzip");
        assert_eq!(negotiate(Some("BR"), ALL), Br, "tokens ignore case");
        assert_eq!(negotiate(Some("deflate, zstd"), ALL), Id);
        assert_eq!(negotiate(Some(" , br ,"), ALL), Br, "empty elements");
    }

    #[test]
    fn negotiation_weighs_q_values() {
        assert_eq!(negotiate(Some("gzip;q=1.0, br;q=0.5"), ALL), Gz);
        assert_eq!(negotiate(Some("gzip;q=0.5, br;q=0.5"), ALL), Br, "a tie");
        assert_eq!(
            negotiate(Some("gzip;q=0.001"), ALL),
            Gz,
            "identity is the last resort"
        );
        assert_eq!(negotiate(Some("br;q=0, gzip"), ALL), Gz);
        assert_eq!(negotiate(Some("br; Q=0 , gzip;q=0.001"), ALL), Gz);
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0"), ALL), Id);
        assert_eq!(negotiate(Some("br;q=0.2, identity;q=0.9"), ALL), Id);
        assert_eq!(
            negotiate(Some("br;q=0.2, gzip;q=0.3, identity;q=0.1"), ALL),
            Gz
        );
        // Invalid weights: the element is ignored.
        assert_eq!(negotiate(Some("br;q=2, gzip"), ALL), Gz);
        assert_eq!(negotiate(Some("br;q=0.0001, gzip"), ALL), Gz);
        assert_eq!(negotiate(Some("br;q=1.5, gzip"), ALL), Gz);
        assert_eq!(negotiate(Some("br;q=abc"), ALL), Id);
        assert_eq!(negotiate(Some("br;q=1.000"), ALL), Br);
    }

    #[test]
    fn negotiation_with_identity_and_star() {
        assert_eq!(negotiate(Some("*"), ALL), Br, "anything: the smallest");
        assert_eq!(negotiate(Some("br;q=0, *"), ALL), Gz);
        assert_eq!(negotiate(Some("gzip;q=0.5, *;q=0.1"), ALL), Gz);
        assert_eq!(negotiate(Some("*;q=0.5, identity"), ALL), Id);
        assert_eq!(negotiate(Some("identity"), ALL), Id);
        // Nothing acceptable: identity all the same.
        assert_eq!(negotiate(Some("identity;q=0"), [Id]), Id);
        assert_eq!(negotiate(Some("*;q=0"), ALL), Id);
        assert_eq!(negotiate(Some("identity;q=0, gzip"), ALL), Gz);
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1."), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.25"), Some(250));
        assert_eq!(qvalue("0.001"), Some(1));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue("0.0001"), None);
        assert_eq!(qvalue(".5"), None);
        assert_eq!(qvalue("-0"), None);
        assert_eq!(qvalue("0.+1"), None);
    }

    #[test]
    fn missing_files_and_traversal() {
        assert!(get("nope.txt").is_none());
        assert!(get("../Cargo.toml").is_none());
        assert!(get("../../etc/passwd").is_none());
    }
}
