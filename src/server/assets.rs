//! The web UI: files compiled into the binary from `assets/` (or, with `--ui-dir`, read
//! from a directory whose paths are canonicalised and must stay inside it). A URL path is
//! never opened on disk otherwise. Unknown non-API paths get `index.html`, so the UI's own
//! router (and single-page apps served with `--ui-dir`) can handle them.

use crate::http::{Method, Response};
use include_dir::{include_dir, Dir, File};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// No inline script or style, nothing from other origins, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the headers every UI response carries.
pub fn security_headers(resp: Response) -> Response {
    resp.with_header("Content-Security-Policy", CSP)
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("Cross-Origin-Opener-Policy", "same-origin")
}

/// Every embedded file, depth first.
fn walk(dir: &'static Dir<'static>, visit: &mut impl FnMut(&'static File<'static>)) {
    for file in dir.files() {
        visit(file);
    }
    for sub in dir.dirs() {
        walk(sub, visit);
    }
}

/// The embedded files' ETags, hashed once.
fn etags() -> &'static HashMap<&'static str, String> {
    static ETAGS: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        let mut map = HashMap::new();
        walk(&EMBEDDED, &mut |file| {
            if let Some(path) = file.path().to_str() {
                map.insert(path, etag_of(file.contents()));
            }
        });
        map
    })
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..20])
}

fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    match mime.type_() {
        mime_guess::mime::TEXT => format!("{mime}; charset=utf-8"),
        _ if mime.subtype() == "javascript" => "text/javascript; charset=utf-8".into(),
        _ => mime.to_string(),
    }
}

/// Serves a UI request (`GET`/`HEAD` of a non-API path).
pub fn serve(
    method: Method,
    path: &str,
    if_none_match: Option<&str>,
    ui_dir: Option<&Path>,
) -> Response {
    if !matches!(method, Method::Get | Method::Head) {
        return security_headers(
            Response::new(405)
                .with_header("Allow", "GET, HEAD")
                .with_header("Content-Type", "text/plain; charset=utf-8")
                .with_body(b"Method not allowed".to_vec()),
        );
    }
    let (name, bytes) = match ui_dir {
        Some(dir) => from_dir(dir, path),
        None => embedded(path),
    };
    let Some(bytes) = bytes else {
        return security_headers(
            Response::new(404)
                .with_header("Content-Type", "text/plain; charset=utf-8")
                .with_body(b"Not found".to_vec()),
        );
    };
    // Embedded files were hashed once; files from --ui-dir may change, so are hashed now.
    let etag = match &bytes {
        Cow::Borrowed(_) => etags().get(name.as_str()).cloned(),
        Cow::Owned(_) => None,
    }
    .unwrap_or_else(|| etag_of(&bytes));
    let base = Response::new(200)
        .with_header("ETag", &etag)
        // Revalidate every time: the ETag makes that a cheap 304.
        .with_header("Cache-Control", "no-cache");
    if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return security_headers(Response {
            status: 304,
            ..base
        });
    }
    // Copied only here, for a GET that sends it: a 304 or a HEAD never copies the file.
    let body = if method == Method::Head {
        Vec::new()
    } else {
        bytes.into_owned()
    };
    security_headers(
        base.with_header("Content-Type", &content_type(&name))
            .with_body(body),
    )
}

/// Exact lookup in the embedded set; anything else falls back to `index.html`, except
/// paths that look like files (a missing `.js` must be a 404, not HTML).
fn embedded(path: &str) -> (String, Option<Cow<'static, [u8]>>) {
    let rel = path.trim_start_matches('/');
    if !rel.is_empty() {
        if let Some(f) = EMBEDDED.get_file(rel) {
            return (rel.to_string(), Some(Cow::Borrowed(f.contents())));
        }
        if looks_like_file(rel) {
            return (rel.to_string(), None);
        }
    }
    let index = EMBEDDED
        .get_file("index.html")
        .map(|f| Cow::Borrowed(f.contents()));
    ("index.html".into(), index)
}

fn looks_like_file(rel: &str) -> bool {
    rel.rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'))
}

/// A file under `dir`, only if its canonical path stays inside `dir`.
fn from_dir(dir: &Path, path: &str) -> (String, Option<Cow<'static, [u8]>>) {
    let Ok(root) = dir.canonicalize() else {
        return (String::new(), None);
    };
    let rel = path.trim_start_matches('/');
    let inside = |candidate: &Path| -> Option<Cow<'static, [u8]>> {
        let real = candidate.canonicalize().ok()?;
        if !real.starts_with(&root) || !real.is_file() {
            return None;
        }
        std::fs::read(real).ok().map(Cow::Owned)
    };
    if !rel.is_empty() && !rel.split('/').any(|seg| seg == "..") {
        if let Some(bytes) = inside(&root.join(rel)) {
            return (rel.to_string(), Some(bytes));
        }
        if looks_like_file(rel) {
            return (rel.to_string(), None);
        }
    }
    ("index.html".into(), inside(&root.join("index.html")))
}

/// Every embedded file path (for tests and the size check).
pub fn embedded_files() -> Vec<(&'static str, usize)> {
    let mut out = Vec::new();
    walk(&EMBEDDED, &mut |f| {
        if let Some(p) = f.path().to_str() {
            out.push((p, f.contents().len()));
        }
    });
    out
}
