//! Git's smart HTTP protocol, server side, for fetches only (executors fetching workspaces):
//! the bodies of `GET <repo>/info/refs?service=git-upload-pack` and
//! `POST <repo>/git-upload-pack`, without any HTTP framework.
//!
//! The caller (the server's router) owns everything HTTP: authentication, mapping the URL to a
//! repository path, gzip-decoding request bodies, the `Content-Type` headers
//! ([`ADVERTISEMENT_CONTENT_TYPE`], [`RESULT_CONTENT_TYPE`]) and `Cache-Control: no-cache`.
//! It passes the client's `Git-Protocol` header through so protocol v2 works.
//!
//! Any commit reachable in the repository may be fetched by id (`uploadpack.allowAnySHA1InWant`),
//! which is how executors fetch exactly the commit a job needs, and partial-clone filters are
//! allowed (`uploadpack.allowFilter`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

use crate::command::GitCommand;
use crate::error::GitError;
use crate::objects::object_format;

/// `Content-Type` of the `info/refs?service=git-upload-pack` response.
pub const ADVERTISEMENT_CONTENT_TYPE: &str = "application/x-git-upload-pack-advertisement";
/// `Content-Type` the client sends with the `git-upload-pack` request.
pub const REQUEST_CONTENT_TYPE: &str = "application/x-git-upload-pack-request";
/// `Content-Type` of the `git-upload-pack` response.
pub const RESULT_CONTENT_TYPE: &str = "application/x-git-upload-pack-result";

/// The full body of the `info/refs?service=git-upload-pack` response for `repository` (a git
/// directory). `git_protocol_header` is the client's `Git-Protocol` header, if any; with
/// `version=2` the body is the protocol v2 capability advertisement (which, like
/// `git http-backend`, carries no `# service=` preamble).
pub async fn advertise_upload_pack(
    repository: &Path,
    git_protocol_header: Option<&str>,
) -> Result<Vec<u8>, GitError> {
    let protocol = sanitized_protocol(git_protocol_header);
    let is_version_2 = protocol.as_deref().is_some_and(|protocol| {
        protocol
            .split(':')
            .any(|parameter| parameter == "version=2")
    });
    // Protocol v2's advertisement lists capabilities, not refs: it is the same for every
    // repository of one object format, so git is asked once and the answer reused.
    let cache_key = is_version_2.then(|| (protocol.clone().unwrap_or_default(), object_format(repository)));
    if let Some(key) = &cache_key
        && let Some(cached) = lock_cache().get(key)
    {
        return Ok(cached.clone());
    }
    let advertisement = upload_pack_command(repository, protocol.as_deref())
        .arg("--advertise-refs")
        .arg(absolute(repository)?)
        .run()
        .await?;
    if let Some(key) = cache_key {
        let mut cache = lock_cache();
        // A client chooses its `Git-Protocol` header: keep the cache small whatever it sends.
        if cache.len() >= 16 {
            cache.clear();
        }
        cache.insert(key, advertisement.clone());
    }
    let mut body = Vec::with_capacity(advertisement.len() + 64);
    if !is_version_2 {
        body.extend_from_slice(&pkt_line(b"# service=git-upload-pack\n"));
        body.extend_from_slice(b"0000");
    }
    body.extend_from_slice(&advertisement);
    Ok(body)
}

/// Runs `git upload-pack --stateless-rpc` for one `POST <repo>/git-upload-pack` request: the
/// (already gzip-decoded) `request_body` is piped to git's stdin while git's stdout is streamed
/// back through the returned reader, so a large pack is never held in memory.
///
/// Dropping the reader kills git, which is what should happen when the client goes away.
pub async fn upload_pack<Body>(
    repository: &Path,
    request_body: Body,
    git_protocol_header: Option<&str>,
) -> Result<UploadPackResponse, GitError>
where
    Body: AsyncRead + Send + Unpin + 'static,
{
    let protocol = sanitized_protocol(git_protocol_header);
    let command = upload_pack_command(repository, protocol.as_deref()).arg(absolute(repository)?);
    let mut child = command.spawn_piped(true)?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(command.unexpected_output("upload-pack started without pipes"));
    };
    let copy_request = tokio::spawn(async move {
        let mut request_body = request_body;
        // An early exit of git (bad request) shows up as a broken pipe here; git's own output
        // tells the client what went wrong, so the copy error is not interesting.
        let _ = tokio::io::copy(&mut request_body, &mut stdin).await;
        let _ = stdin.shutdown().await;
    });
    // Drained so git never blocks on a full stderr pipe; upload-pack reports errors to the
    // client in-band.
    let drain_stderr = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = stderr.read_to_end(&mut sink).await;
    });
    Ok(UploadPackResponse {
        stdout,
        _child: child,
        background_tasks: [copy_request, drain_stderr],
        repository: repository.to_path_buf(),
    })
}

/// The streaming body of a `git-upload-pack` response; read it to the end and send it as is.
#[derive(Debug)]
pub struct UploadPackResponse {
    stdout: ChildStdout,
    // Kept so git is killed when the response is dropped (kill_on_drop).
    _child: Child,
    background_tasks: [JoinHandle<()>; 2],
    repository: PathBuf,
}

impl UploadPackResponse {
    /// The repository being served, for logging.
    pub fn repository(&self) -> &Path {
        &self.repository
    }
}

impl AsyncRead for UploadPackResponse {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(context, buffer)
    }
}

impl Drop for UploadPackResponse {
    fn drop(&mut self) {
        for task in &self.background_tasks {
            task.abort();
        }
    }
}

/// Protocol v2 advertisements already produced, by (`Git-Protocol` header, object format).
type AdvertisementCache = HashMap<(String, &'static str), Vec<u8>>;

fn lock_cache() -> std::sync::MutexGuard<'static, AdvertisementCache> {
    static CACHE: OnceLock<Mutex<AdvertisementCache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn upload_pack_command(repository: &Path, protocol: Option<&str>) -> GitCommand {
    let mut command = GitCommand::in_directory(repository)
        .config("uploadpack.allowAnySHA1InWant", "true")
        .config("uploadpack.allowFilter", "true")
        .args(["upload-pack", "--stateless-rpc", "--strict"]);
    if let Some(protocol) = protocol {
        command = command.env("GIT_PROTOCOL", protocol);
    }
    command
}

fn absolute(repository: &Path) -> Result<PathBuf, GitError> {
    std::path::absolute(repository).map_err(|source| {
        GitError::io(
            "cannot make the repository path absolute",
            repository,
            source,
        )
    })
}

/// Keeps the `Git-Protocol` header only when it has the documented shape
/// (`key[=value]` parameters joined by `:`), so a client cannot smuggle anything odd into git's
/// environment.
fn sanitized_protocol(header: Option<&str>) -> Option<String> {
    let header = header?.trim();
    let well_formed = !header.is_empty()
        && header.len() <= 256
        && header
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"=:._-".contains(&byte));
    well_formed.then(|| header.to_owned())
}

/// Frames `payload` as one pkt-line: four hex digits of total length, then the payload.
pub fn pkt_line(payload: &[u8]) -> Vec<u8> {
    let mut line = format!("{:04x}", payload.len() + 4).into_bytes();
    line.extend_from_slice(payload);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_the_service_line_like_git_http_backend() {
        assert_eq!(
            pkt_line(b"# service=git-upload-pack\n"),
            b"001e# service=git-upload-pack\n"
        );
    }

    #[test]
    fn keeps_only_well_formed_protocol_headers() {
        assert_eq!(
            sanitized_protocol(Some("version=2")).as_deref(),
            Some("version=2")
        );
        assert_eq!(
            sanitized_protocol(Some("version=2:object-format=sha1")).as_deref(),
            Some("version=2:object-format=sha1")
        );
        assert_eq!(sanitized_protocol(Some("version=2\nX: y")), None);
        assert_eq!(sanitized_protocol(Some("")), None);
        assert_eq!(sanitized_protocol(None), None);
    }
}
