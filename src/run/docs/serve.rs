//! `lake docs --serve`: the docs folder over HTTP (GET only; `/` is `index.html`; nothing
//! outside the folder is served), until Ctrl-C or SIGTERM.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// Serve `dir` on `addr` (`127.0.0.1:0` picks a free port). `on_listen` gets the URL once the
/// socket is bound; returns when Ctrl-C or SIGTERM arrives.
pub async fn serve(dir: &Path, addr: &str, on_listen: impl FnOnce(&str)) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--serve {addr}: cannot listen there (give a free host:port, e.g. 127.0.0.1:8000)"))?;
    let local = listener.local_addr()?;
    let root = dir.to_path_buf();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let root = root.clone();
        async move { file(&root, &uri).await }
    });
    on_listen(&format!("http://{local}/"));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await
        .context("the docs server failed")?;
    Ok(())
}

async fn file(root: &Path, uri: &Uri) -> Response {
    let Some(path) = resolve(root, uri.path()) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&path))], bytes).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// The file a URL path names under `root`; `None` for a path that would leave it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = url_path.trim_start_matches('/');
    let relative = if relative.is_empty() || relative.ends_with('/') { format!("{relative}index.html") } else { relative.to_string() };
    let mut out = root.to_path_buf();
    for c in Path::new(&relative).components() {
        match c {
            Component::Normal(part) => out.push(part),
            _ => return None,
        }
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}
