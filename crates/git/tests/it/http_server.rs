//! A minimal HTTP/1.1 server for tests: serves `GET /<name>/info/refs?service=git-upload-pack`
//! and `POST /<name>/git-upload-pack` from a map of repositories using the crate's smart-HTTP
//! functions, one request per connection. It stands in for the axum routes of the real server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub struct TestGitServer {
    pub base_url: String,
    pub stats: Arc<ServerStats>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct ServerStats {
    /// Bytes of `git-upload-pack` responses (packs and negotiation) sent so far.
    pub upload_pack_bytes: AtomicU64,
    pub requests: AtomicU64,
}

impl Drop for TestGitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestGitServer {
    /// Serves `repositories` (name → git directory). With `required_authorization`, requests
    /// must carry exactly that `Authorization` header.
    pub async fn start(
        repositories: HashMap<String, PathBuf>,
        required_authorization: Option<String>,
    ) -> TestGitServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let address = listener.local_addr().expect("local address");
        let stats = Arc::new(ServerStats::default());
        let shared = Arc::new((repositories, required_authorization, stats.clone()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let (repositories, required_authorization, stats) = &*shared;
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    if let Err(error) = serve(
                        stream,
                        repositories,
                        required_authorization.as_deref(),
                        stats,
                    )
                    .await
                    {
                        eprintln!("test git server: {error}");
                    }
                });
            }
        });
        TestGitServer {
            base_url: format!("http://{address}"),
            stats,
            task,
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base_url)
    }
}

async fn serve(
    stream: TcpStream,
    repositories: &HashMap<String, PathBuf>,
    required_authorization: Option<&str>,
    stats: &ServerStats,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();

    if let Some(required) = required_authorization
        && headers.get("authorization").map(String::as_str) != Some(required)
    {
        let response = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        reader.get_mut().write_all(response.as_bytes()).await?;
        return Ok(());
    }
    let protocol = headers.get("git-protocol").cloned();
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    if method == "GET"
        && query == "service=git-upload-pack"
        && let Some(repository) = path
            .strip_suffix("/info/refs")
            .and_then(|name| repositories.get(name.trim_start_matches('/')))
    {
        let body = flotilla_git::advertise_upload_pack(repository, protocol.as_deref())
            .await
            .map_err(std::io::Error::other)?;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nCache-Control: no-cache\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            flotilla_git::ADVERTISEMENT_CONTENT_TYPE,
            body.len()
        );
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        return Ok(());
    }
    if method == "POST"
        && let Some(repository) = path
            .strip_suffix("/git-upload-pack")
            .and_then(|name| repositories.get(name.trim_start_matches('/')))
    {
        if headers
            .get("expect")
            .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"))
        {
            reader
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let mut body = read_body(&mut reader, &headers).await?;
        if headers
            .get("content-encoding")
            .is_some_and(|value| value == "gzip")
        {
            body = gunzip(body).await?;
        }
        let mut response =
            flotilla_git::upload_pack(repository, std::io::Cursor::new(body), protocol.as_deref())
                .await
                .map_err(std::io::Error::other)?;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
            flotilla_git::RESULT_CONTENT_TYPE
        );
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        let copied = tokio::io::copy(&mut response, stream).await?;
        stats.upload_pack_bytes.fetch_add(copied, Ordering::Relaxed);
        stream.shutdown().await?;
        return Ok(());
    }
    reader
        .get_mut()
        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
}

async fn read_body(
    reader: &mut BufReader<TcpStream>,
    headers: &HashMap<String, String>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).await?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    body.resize(length, 0);
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Decodes a gzip request body with the system's `gzip`, to keep test dependencies small.
async fn gunzip(body: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut child = tokio::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child.wait_with_output().await?;
    let _ = writer.await;
    Ok(output.stdout)
}
