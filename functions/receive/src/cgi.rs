//! `git http-backend`, the real git's smart-HTTP server, run as a CGI program.

use crate::error::{ReceiveError, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

/// One CGI request.
pub struct CgiRequest<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// `/APP.git/info/refs`, `/APP.git/git-receive-pack`, …
    pub path_info: String,
    /// The query string, without `?`.
    pub query: String,
    /// Request headers (content type, git protocol, content encoding).
    pub headers: &'a HeaderMap,
    /// The authenticated user.
    pub remote_user: String,
    /// `GIT_PROJECT_ROOT`.
    pub project_root: &'a Path,
    /// The request body, spooled to a file.
    pub body: Option<PathBuf>,
    /// More variables for git and its hooks.
    pub env: Vec<(String, String)>,
}

/// A running backend whose CGI headers have been read.
pub struct CgiResponse {
    /// From the `Status:` header (200 when absent).
    pub status: StatusCode,
    /// The other headers.
    pub headers: HeaderMap,
    /// The body still to read.
    pub body: BufReader<ChildStdout>,
    /// The process, to wait for.
    pub child: Child,
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Starts `git http-backend` and reads its CGI headers.
pub async fn start(req: CgiRequest<'_>) -> Result<CgiResponse> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", req.project_root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", req.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &req.path_info)
        .env("REQUEST_METHOD", req.method)
        .env("QUERY_STRING", &req.query)
        .env("CONTENT_TYPE", header(req.headers, "content-type"))
        .env("REMOTE_USER", &req.remote_user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_PROTOCOL", header(req.headers, "git-protocol"))
        .env(
            "HTTP_CONTENT_ENCODING",
            header(req.headers, "content-encoding"),
        )
        .env("GIT_CONFIG_COUNT", crate::repo::SETTINGS.len().to_string())
        .envs(
            crate::repo::SETTINGS
                .iter()
                .enumerate()
                .flat_map(|(i, (key, value))| {
                    [
                        (format!("GIT_CONFIG_KEY_{i}"), *key),
                        (format!("GIT_CONFIG_VALUE_{i}"), *value),
                    ]
                }),
        )
        .envs(req.env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match &req.body {
        Some(path) => {
            let file = std::fs::File::open(path)?;
            cmd.stdin(file);
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        ReceiveError::Git(format!(
            "git http-backend could not start (is git installed?): {e}"
        ))
    })?;
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(line = %line, "git http-backend");
            }
        });
    }
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ReceiveError::Git("git http-backend has no output".into()))?;
    let mut body = BufReader::new(stdout);
    let (status, headers) = read_headers(&mut body).await?;
    Ok(CgiResponse {
        status,
        headers,
        body,
        child,
    })
}

/// Reads CGI headers up to the blank line.
async fn read_headers<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> Result<(StatusCode, HeaderMap)> {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await?;
        if n == 0 {
            return Err(ReceiveError::Git(
                "git http-backend ended before its headers".into(),
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok((status, headers));
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(n, v);
        }
    }
}

/// Reads the whole remaining body (for small replies).
pub async fn read_all(mut resp: CgiResponse) -> Result<(StatusCode, HeaderMap, Vec<u8>)> {
    let mut body = Vec::new();
    resp.body.read_to_end(&mut body).await?;
    resp.child.wait().await?;
    Ok((resp.status, resp.headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cgi_headers_parse() {
        let raw: &[u8] = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nbody";
        let mut r = BufReader::new(raw);
        let (status, headers) = read_headers(&mut r).await.expect("parse");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["content-type"], "text/plain");
        let mut rest = String::new();
        r.read_to_string(&mut rest).await.expect("rest");
        assert_eq!(rest, "body");
    }
}
