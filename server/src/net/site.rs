//! The researcher's own site folder (`[site] dir`, `pairlab serve --site DIR`), served at `/`.
//!
//! Its `index.html` replaces the embedded page; its other files are served beside the
//! embedded ones, which stay reachable where the folder has no file of that name
//! (`/pairlab.js` and `/pkg/*` always come from the binary: `http.rs` asks this module only for
//! other paths). A request is confined to the folder: the URL path is percent-decoded, and a
//! path with a `..`, `.` or empty segment, a backslash or a NUL is not looked up; the file
//! found is resolved (symbolic links followed) and must still lie under the folder's own
//! resolved path, so a link cannot lead out of it. Files are read from disk on each request
//! (the folder may be edited while the server runs), with `Content-Type` by extension
//! (`mime_guess`), `Cache-Control: no-cache`, and an `ETag` from the file's size and
//! modification time, which a matching `If-None-Match` answers with `304`.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use percent_encoding::percent_decode_str;
use warp::http::{header, Response, StatusCode};
use warp::Reply;

/// Why a site folder cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The folder does not exist or cannot be read.
    #[error("the site folder {path} cannot be opened: {source}")]
    Open {
        /// The folder as given.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a folder.
    #[error("the site folder {0} is not a folder")]
    NotADirectory(PathBuf),
}

/// A site folder, checked at start.
#[derive(Debug, Clone)]
pub struct SiteDir {
    /// The folder's resolved path (symbolic links followed).
    root: PathBuf,
}

/// A file of the site folder, read.
struct SiteFile {
    path: PathBuf,
    body: Vec<u8>,
    etag: String,
}

impl SiteDir {
    /// Opens the folder at `dir`.
    ///
    /// # Errors
    /// [`SiteError`] when it does not exist, cannot be read or is not a folder.
    pub fn open(dir: &Path) -> Result<SiteDir, SiteError> {
        let root = std::fs::canonicalize(dir).map_err(|source| SiteError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(SiteError::NotADirectory(dir.to_path_buf()));
        }
        Ok(SiteDir { root })
    }

    /// The folder's resolved path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the folder has an `index.html` (which then replaces the embedded page).
    pub fn has_index(&self) -> bool {
        self.root.join("index.html").is_file()
    }

    /// The file a URL path names, resolved inside the folder; `None` when the path is not one
    /// this folder serves (see the module docs) or no such file exists.
    async fn find(&self, url_path: &str) -> Option<PathBuf> {
        let decoded = percent_decode_str(url_path).decode_utf8().ok()?;
        let relative = decoded.strip_prefix('/').unwrap_or(&decoded);
        let relative = if relative.is_empty() || relative.ends_with('/') {
            format!("{relative}index.html")
        } else {
            relative.to_owned()
        };
        if relative.contains(['\\', '\0']) {
            return None;
        }
        let mut path = self.root.clone();
        for segment in relative.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return None;
            }
            path.push(segment);
        }
        let resolved = tokio::fs::canonicalize(&path).await.ok()?;
        if !resolved.starts_with(&self.root) {
            return None;
        }
        let meta = tokio::fs::metadata(&resolved).await.ok()?;
        meta.is_file().then_some(resolved)
    }

    async fn read(&self, url_path: &str) -> Option<SiteFile> {
        let path = self.find(url_path).await?;
        let meta = tokio::fs::metadata(&path).await.ok()?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let body = tokio::fs::read(&path).await.ok()?;
        let etag = format!("\"{:x}-{modified_ns:x}\"", body.len());
        Some(SiteFile { path, body, etag })
    }

    /// The response for `url_path` from the folder (`200`, or `304` when `if_none_match` lists
    /// the file's tag); `None` when the folder has no such file.
    pub async fn response(
        &self,
        url_path: &str,
        if_none_match: Option<&str>,
    ) -> Option<warp::reply::Response> {
        let file = self.read(url_path).await?;
        Some(file_response(file, if_none_match))
    }
}

/// The `Content-Type` of a site file, by its extension; text types in UTF-8.
pub fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = match mime.essence_str() {
        // RFC 9239: JavaScript is text/javascript.
        "application/javascript" | "application/x-javascript" => "text/javascript",
        other => other,
    };
    if essence.starts_with("text/") {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

fn file_response(file: SiteFile, if_none_match: Option<&str>) -> warp::reply::Response {
    let not_modified = if_none_match.is_some_and(|v| super::http::etag_listed(v, &file.etag));
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, super::http::NO_CACHE)
        .header(header::ETAG, file.etag.as_str());
    let built = if not_modified {
        builder.status(StatusCode::NOT_MODIFIED).body(Vec::new())
    } else {
        builder
            .header(header::CONTENT_TYPE, content_type(&file.path))
            .body(file.body)
    };
    match built {
        Ok(r) => r.into_response(),
        Err(e) => {
            tracing::error!(path = %file.path.display(), "cannot build the response: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type(Path::new("a/index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("game.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.png")), "image/png");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
