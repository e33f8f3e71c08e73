//! Outgoing webhooks, as forges send them: a test registers a hook (`url`, `secret`, `kind`)
//! through [`crate::EmulatorHandle::add_webhook`] or `POST /_emulator/hooks`, and every pull
//! request event the emulator performs afterwards (opened, closed, reopened, merged, reviewed,
//! a check run added) is POSTed to it in the format `kind` names: GitHub's, GitLab's, Gitea's or
//! Bitbucket Server's event header and payload, signed with the secret by that forge's scheme.
//!
//! Payloads are realistic but minimal: the fields forges document for those events that a
//! receiver reads (repository path, pull request number, branches, states), not every field.
//! Deliveries go out one at a time in the order the events happened, from one background
//! task, without retries; each is recorded with the status it got, for tests to assert on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::state::{PullRequest, Repository, RepositoryState, State as EmulatorState, timestamp};
use crate::{CheckRun, Review, Shared};

/// Whose format a hook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    Github,
    Gitlab,
    Gitea,
    BitbucketServer,
}

/// A registered receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// `http://HOST:PORT/path` (plain HTTP: the emulator delivers on the loopback only).
    pub url: String,
    pub secret: String,
    pub kind: HookKind,
}

/// One delivery made, for tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub url: String,
    pub kind: HookKind,
    /// The event header's value (`pull_request`, `Merge Request Hook`, `pr:merged`...).
    pub event: String,
    /// The receiver's status code; `None` when it could not be reached.
    pub status: Option<u16>,
}

/// What happened, as a mutation point reports it.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Opened,
    Closed,
    Reopened,
    Merged,
    Reviewed(Review),
    /// A check run was added to this commit.
    CheckRun { sha: String, run: CheckRun },
}

/// A rendered delivery waiting to be sent.
struct Outgoing {
    hook: Hook,
    event: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

/// The hooks, the deliveries made, and the queue to the delivering task.
pub(crate) struct Webhooks {
    hooks: Mutex<Vec<Hook>>,
    deliveries: Mutex<Vec<Delivery>>,
    queue: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    /// Numbers the deliveries' id headers.
    sent: AtomicU64,
}

/// Deliveries kept for [`crate::EmulatorHandle::webhook_deliveries`]; older ones are dropped.
const KEPT_DELIVERIES: usize = 10_000;

impl Webhooks {
    /// The registry and its delivering task, on the current tokio runtime. The task ends when
    /// the emulator (its `Shared`) is dropped.
    pub(crate) fn start() -> (Webhooks, DeliveryTask) {
        let (queue, receiver) = tokio::sync::mpsc::unbounded_channel();
        (Webhooks { hooks: Mutex::new(Vec::new()), deliveries: Mutex::new(Vec::new()), queue, sent: AtomicU64::new(0) }, DeliveryTask { receiver })
    }

    pub(crate) fn add(&self, hook: Hook) {
        self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(hook);
    }

    pub(crate) fn clear(&self) {
        self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The receiving end of the queue; [`DeliveryTask::run`] sends what arrives, in order.
pub(crate) struct DeliveryTask {
    receiver: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
}

impl DeliveryTask {
    pub(crate) async fn run(mut self, shared: std::sync::Weak<Shared>) {
        while let Some(outgoing) = self.receiver.recv().await {
            let status = post(&outgoing).await;
            if let Err(error) = &status {
                tracing::warn!(url = %outgoing.hook.url, %error, "the emulator could not deliver a webhook");
            }
            let Some(shared) = shared.upgrade() else { return };
            let mut deliveries = shared.webhooks.deliveries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if deliveries.len() >= KEPT_DELIVERIES {
                deliveries.remove(0);
            }
            deliveries.push(Delivery { url: outgoing.hook.url.clone(), kind: outgoing.hook.kind, event: outgoing.event.clone(), status: status.ok() });
        }
    }
}

/// Renders `action` on pull request `number` (or, for a check run, on the pull requests whose
/// head is that commit) of `owner/name` for every hook and queues the deliveries. Called with
/// the state locked, right after the mutation; it never takes the state lock itself.
pub(crate) fn announce(shared: &Shared, state: &EmulatorState, owner: &str, name: &str, number: Option<u64>, action: Action) {
    let hooks = shared.webhooks.hooks();
    if hooks.is_empty() {
        return;
    }
    let Some(repository) = state.repository(owner, name) else { return };
    let Some(record) = &repository.repository else { return };
    let pulls: Vec<&PullRequest> = match (&action, number) {
        (Action::CheckRun { sha, .. }, _) => {
            repository.pulls.iter().filter(|pull| crate::git::branch_commit(&record.git_dir, &pull.head).as_deref() == Some(sha.as_str())).collect()
        }
        (_, Some(number)) => repository.pulls.iter().filter(|pull| pull.number == number).collect(),
        (_, None) => Vec::new(),
    };
    for hook in hooks {
        let rendered: Vec<(String, Value)> = match hook.kind {
            HookKind::Github => github(&shared.base_url, repository, record, &pulls, &action),
            HookKind::Gitlab => gitlab(&shared.base_url, repository, record, &pulls, &action),
            HookKind::Gitea => gitea(&shared.base_url, record, &pulls, &action),
            HookKind::BitbucketServer => bitbucket_server(record, &pulls, &action),
        };
        for (event, payload) in rendered {
            let body = serde_json::to_vec(&payload).unwrap_or_default();
            let digest = hex::encode(hmac_sha256(hook.secret.as_bytes(), &body));
            let delivery_id = format!("emulator-{}", shared.webhooks.sent.fetch_add(1, Ordering::Relaxed) + 1);
            let headers = match hook.kind {
                HookKind::Github => vec![("X-GitHub-Event", event.clone()), ("X-GitHub-Delivery", delivery_id), ("X-Hub-Signature-256", format!("sha256={digest}"))],
                HookKind::Gitlab => vec![("X-Gitlab-Event", event.clone()), ("X-Gitlab-Event-UUID", delivery_id), ("X-Gitlab-Token", hook.secret.clone())],
                HookKind::Gitea => vec![("X-Gitea-Event", event.clone()), ("X-Gitea-Delivery", delivery_id), ("X-Gitea-Signature", digest)],
                HookKind::BitbucketServer => vec![("X-Event-Key", event.clone()), ("X-Request-Id", delivery_id), ("X-Hub-Signature", format!("sha256={digest}"))],
            };
            let _ = shared.webhooks.queue.send(Outgoing { hook: hook.clone(), event, headers, body });
        }
    }
}

fn github(base_url: &str, repository: &RepositoryState, record: &Repository, pulls: &[&PullRequest], action: &Action) -> Vec<(String, Value)> {
    let repo = crate::api::repository_json(base_url, record);
    let sender = json!({"login": "emulator"});
    match action {
        Action::CheckRun { sha, run } => {
            let branch = pulls.first().map(|pull| pull.head.clone());
            let numbers: Vec<Value> = pulls.iter().map(|pull| json!({"number": pull.number, "head": {"ref": pull.head, "sha": sha}, "base": {"ref": pull.base}})).collect();
            let action = if run.status == "completed" { "completed" } else { "created" };
            let check_run = json!({
                "name": run.name, "head_sha": sha, "status": run.status, "conclusion": run.conclusion,
                "check_suite": {"head_branch": branch, "head_sha": sha}, "pull_requests": numbers,
            });
            vec![("check_run".to_owned(), json!({"action": action, "check_run": check_run, "repository": repo, "sender": sender}))]
        }
        _ => pulls
            .iter()
            .map(|pull| {
                let pull_request = crate::api::pull_json(base_url, repository, pull);
                match action {
                    Action::Reviewed(review) => {
                        let review = json!({"state": review.state.to_lowercase(), "user": {"login": review.user}, "body": ""});
                        ("pull_request_review".to_owned(), json!({"action": "submitted", "review": review, "pull_request": pull_request, "repository": repo, "sender": sender}))
                    }
                    _ => {
                        // A merge is a `closed` action with `merged: true`, as on GitHub.
                        let verb = match action {
                            Action::Opened => "opened",
                            Action::Reopened => "reopened",
                            _ => "closed",
                        };
                        ("pull_request".to_owned(), json!({"action": verb, "number": pull.number, "pull_request": pull_request, "repository": repo, "sender": sender}))
                    }
                }
            })
            .collect(),
    }
}

fn gitlab(base_url: &str, repository: &RepositoryState, record: &Repository, pulls: &[&PullRequest], action: &Action) -> Vec<(String, Value)> {
    let project = crate::gitlab::project_json(base_url, record);
    let user = json!({"username": "emulator", "name": "Emulator"});
    pulls
        .iter()
        .map(|pull| {
            let merge_request = crate::gitlab::merge_request_json(base_url, repository, pull, false);
            match action {
                Action::CheckRun { sha, .. } => {
                    let runs = repository.checks.get(sha).map(Vec::as_slice).unwrap_or_default();
                    let attributes = json!({"id": pull.id, "ref": pull.head, "tag": false, "sha": sha, "status": crate::gitlab::pipeline_status(runs), "source": "merge_request_event"});
                    ("Pipeline Hook".to_owned(), json!({"object_kind": "pipeline", "object_attributes": attributes, "merge_request": merge_request, "user": user, "project": project}))
                }
                _ => {
                    let verb = match action {
                        Action::Opened => "open",
                        Action::Closed => "close",
                        Action::Reopened => "reopen",
                        Action::Merged => "merge",
                        Action::Reviewed(review) if review.state == "APPROVED" => "approved",
                        Action::Reviewed(_) => "update",
                        Action::CheckRun { .. } => "update",
                    };
                    let mut attributes = merge_request.clone();
                    attributes["action"] = json!(verb);
                    ("Merge Request Hook".to_owned(), json!({"object_kind": "merge_request", "event_type": "merge_request", "user": user, "project": project, "object_attributes": attributes}))
                }
            }
        })
        .collect()
}

fn gitea(base_url: &str, record: &Repository, pulls: &[&PullRequest], action: &Action) -> Vec<(String, Value)> {
    let full_name = format!("{}/{}", record.owner, record.name);
    let repo = json!({"id": record.id, "name": record.name, "full_name": full_name, "owner": {"login": record.owner}, "html_url": format!("{base_url}/{full_name}")});
    let sender = json!({"login": "emulator"});
    if let Action::CheckRun { sha, run } = action {
        let state = match run.conclusion.as_deref() {
            Some("success") => "success",
            Some(_) => "failure",
            None => "pending",
        };
        return vec![("status".to_owned(), json!({"sha": sha, "context": run.name, "state": state, "description": "", "repository": repo, "sender": sender}))];
    }
    pulls
        .iter()
        .map(|pull| {
            let sha = crate::git::branch_commit(&record.git_dir, &pull.head);
            let pull_request = json!({
                "id": pull.id, "number": pull.number, "title": pull.title, "state": if pull.open { "open" } else { "closed" },
                "merged": pull.merged, "merged_at": pull.merged_at, "draft": pull.draft,
                "head": {"ref": pull.head, "sha": sha}, "base": {"ref": pull.base}, "html_url": format!("{base_url}/{full_name}/pulls/{}", pull.number),
            });
            match action {
                Action::Reviewed(review) => {
                    let event = match review.state.as_str() {
                        "APPROVED" => "pull_request_review_approved",
                        "CHANGES_REQUESTED" => "pull_request_review_rejected",
                        _ => "pull_request_review_comment",
                    };
                    (event.to_owned(), json!({"action": "reviewed", "number": pull.number, "pull_request": pull_request, "repository": repo, "sender": sender, "review": {"type": event, "content": ""}}))
                }
                _ => {
                    let verb = match action {
                        Action::Opened => "opened",
                        Action::Reopened => "reopened",
                        _ => "closed",
                    };
                    ("pull_request".to_owned(), json!({"action": verb, "number": pull.number, "pull_request": pull_request, "repository": repo, "sender": sender}))
                }
            }
        })
        .collect()
}

fn bitbucket_server(record: &Repository, pulls: &[&PullRequest], action: &Action) -> Vec<(String, Value)> {
    let event = match action {
        Action::Opened => "pr:opened",
        Action::Closed => "pr:declined",
        Action::Reopened => "pr:opened",
        Action::Merged => "pr:merged",
        Action::Reviewed(review) if review.state == "APPROVED" => "pr:reviewer:approved",
        Action::Reviewed(review) if review.state == "CHANGES_REQUESTED" => "pr:reviewer:needs_work",
        Action::Reviewed(_) => "pr:reviewer:unapproved",
        // Bitbucket Server sends no webhook for build statuses.
        Action::CheckRun { .. } => return Vec::new(),
    };
    let repository = json!({"slug": record.name, "name": record.name, "project": {"key": record.owner, "name": record.owner}});
    pulls
        .iter()
        .map(|pull| {
            let state = if pull.merged {
                "MERGED"
            } else if pull.open {
                "OPEN"
            } else {
                "DECLINED"
            };
            let reference = |branch: &str| {
                json!({"id": format!("refs/heads/{branch}"), "displayId": branch, "latestCommit": crate::git::branch_commit(&record.git_dir, branch), "repository": repository})
            };
            let pull_request = json!({
                "id": pull.number, "version": 0, "title": pull.title, "state": state, "open": pull.open, "closed": !pull.open, "draft": pull.draft,
                "fromRef": reference(&pull.head), "toRef": reference(&pull.base),
            });
            (event.to_owned(), json!({"eventKey": event, "date": timestamp(std::time::SystemTime::now()), "actor": {"name": "emulator"}, "pullRequest": pull_request}))
        })
        .collect()
}

/// HMAC-SHA256 (RFC 2104), written here so the emulator signs independently of the server
/// that verifies.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let inner: [u8; 32] = Sha256::new().chain_update(block_key.map(|byte| byte ^ 0x36)).chain_update(message).finalize().into();
    Sha256::new().chain_update(block_key.map(|byte| byte ^ 0x5c)).chain_update(inner).finalize().into()
}

/// One plain-HTTP/1.1 POST; the receiver's status code.
async fn post(outgoing: &Outgoing) -> Result<u16, String> {
    let rest = outgoing.hook.url.strip_prefix("http://").ok_or_else(|| format!("{} is not an http:// URL", outgoing.hook.url))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await.map_err(|error| error.to_string())?;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: flotilla-codehost-emulator\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            outgoing.body.len()
        );
        for (name, value) in &outgoing.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|error| error.to_string())?;
        stream.write_all(&outgoing.body).await.map_err(|error| error.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|error| error.to_string())?;
        let text = String::from_utf8_lossy(&response);
        text.split_whitespace().nth(1).and_then(|code| code.parse::<u16>().ok()).ok_or_else(|| format!("not an HTTP answer: {}", text.chars().take(80).collect::<String>()))
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await.map_err(|_| "no answer within 10 seconds".to_owned())?
}

/// `POST /_emulator/hooks` with a [`Hook`]: deliver events to it from now on.
pub(crate) async fn admin_add(axum::extract::State(shared): axum::extract::State<std::sync::Arc<Shared>>, body: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    match serde_json::from_slice::<Hook>(&body) {
        Ok(hook) if hook.url.starts_with("http://") => {
            shared.webhooks.add(hook);
            axum::http::StatusCode::CREATED.into_response()
        }
        Ok(hook) => (axum::http::StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"message": format!("{} is not an http:// URL", hook.url)}))).into_response(),
        Err(error) => (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"message": error.to_string()}))).into_response(),
    }
}

/// `DELETE /_emulator/hooks`: deliver to nobody.
pub(crate) async fn admin_clear(axum::extract::State(shared): axum::extract::State<std::sync::Arc<Shared>>) -> axum::http::StatusCode {
    shared.webhooks.clear();
    axum::http::StatusCode::NO_CONTENT
}

/// `GET /_emulator/hooks/deliveries`: every delivery made, oldest first.
pub(crate) async fn admin_deliveries(axum::extract::State(shared): axum::extract::State<std::sync::Arc<Shared>>) -> axum::Json<Vec<Delivery>> {
    axum::Json(shared.webhooks.deliveries())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_and_githubs_example() {
        assert_eq!(hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert_eq!(hex::encode(hmac_sha256(b"It's a Secret to Everybody", b"Hello, World!")), "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    }

    /// A receiver on the loopback that answers 204 and keeps each request's path, headers and
    /// body.
    async fn receiver() -> (String, std::sync::Arc<Mutex<Vec<(String, axum::http::HeaderMap, Vec<u8>)>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let received = std::sync::Arc::new(Mutex::new(Vec::new()));
        let keep = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                let (head_end, length) = loop {
                    let read = stream.read(&mut buffer).await.expect("read");
                    request.extend_from_slice(&buffer[..read]);
                    if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length = head.lines().find_map(|line| line.strip_prefix("content-length: ")).and_then(|value| value.trim().parse::<usize>().ok()).unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while request.len() < head_end + length {
                    let read = stream.read(&mut buffer).await.expect("read");
                    request.extend_from_slice(&buffer[..read]);
                }
                let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
                let mut lines = head.lines();
                let path = lines.next().and_then(|line| line.split_whitespace().nth(1)).unwrap_or_default().to_owned();
                let mut headers = axum::http::HeaderMap::new();
                for line in lines {
                    if let Some((name, value)) = line.split_once(": ")
                        && let (Ok(name), Ok(value)) = (axum::http::HeaderName::from_bytes(name.as_bytes()), axum::http::HeaderValue::from_str(value))
                    {
                        headers.insert(name, value);
                    }
                }
                keep.lock().expect("lock").push((path, headers, request[head_end..head_end + length].to_vec()));
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
            }
        });
        (format!("http://{address}"), received)
    }

    #[tokio::test]
    async fn every_kind_delivers_events_the_server_verifies_and_reads() {
        use flotilla_server::forge_webhooks::{ForgeKind, Notification, event_name, parse, verify};
        let (url, received) = receiver().await;
        let emulator = crate::Emulator::start(crate::EmulatorConfig::default()).await.expect("emulator");
        emulator.create_repository(crate::NewRepository::new("acme", "app")).await.expect("repository");
        let git_dir = emulator.shared.lock().repository("acme", "app").and_then(|repository| repository.repository.clone()).expect("created").git_dir;
        crate::git::run_git(&git_dir, &["branch", "feature", "main"], None).await.expect("branch");
        {
            let mut state = emulator.shared.lock();
            let now = timestamp(std::time::SystemTime::now());
            let pull = PullRequest {
                id: 100, number: 1, node_id: "PR_100".into(), open: true, draft: false, merged: false, merged_at: None,
                title: "Fix".into(), body: String::new(), head: "feature".into(), base: "main".into(), created_at: now.clone(), updated_at: now,
            };
            state.repository_mut("acme", "app").expect("repository").pulls.push(pull);
        }
        let secret = "a-secret-for-the-tests-0001";
        let kinds = [(HookKind::Github, ForgeKind::GitHub), (HookKind::Gitlab, ForgeKind::GitLab), (HookKind::Gitea, ForgeKind::Gitea), (HookKind::BitbucketServer, ForgeKind::BitbucketServer)];
        for (kind, _) in kinds {
            emulator.add_webhook(Hook { url: format!("{url}/{}", serde_json::to_value(kind).expect("name").as_str().expect("text")), secret: secret.into(), kind });
        }
        emulator.add_review("acme", "app", 1, Review { user: "reviewer".into(), state: "APPROVED".into() }).expect("review");
        emulator.merge_pull_request("acme", "app", 1).expect("merge");
        emulator.add_check_run("acme", "app", "feature", CheckRun { name: "ci".into(), status: "completed".into(), conclusion: Some("success".into()) }).expect("check");
        // Three events each, but Bitbucket Server announces no build status.
        let expected = 11;
        for _ in 0..100 {
            if emulator.webhook_deliveries().len() >= expected {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let deliveries = emulator.webhook_deliveries();
        assert_eq!(deliveries.len(), expected, "{deliveries:?}");
        assert!(deliveries.iter().all(|delivery| delivery.status == Some(204)), "{deliveries:?}");
        let received = received.lock().expect("lock").clone();
        assert_eq!(received.len(), expected);
        let mut events = Vec::new();
        for (path, headers, body) in &received {
            let (_, forge) = kinds.iter().find(|(kind, _)| path.ends_with(serde_json::to_value(kind).expect("name").as_str().expect("text"))).expect("a hook's path");
            assert_eq!(verify(*forge, headers, body, secret.as_bytes()), Ok(()), "{path}");
            assert!(verify(*forge, headers, body, b"another secret of some length").is_err(), "{path}");
            let event = event_name(*forge, headers).expect("an event header");
            match parse(*forge, &event, body).expect("the server reads it") {
                Notification::Changed(changed) => {
                    assert_eq!(changed.repository, "acme/app", "{path} {event}");
                    assert!(changed.concerns(Some(1), Some("refs/heads/feature")), "{path} {event}: {changed:?}");
                    assert!(!changed.concerns(Some(2), Some("refs/heads/other")) || changed.numbers.is_empty() && changed.branches.is_empty(), "{path} {event}: {changed:?}");
                }
                other => panic!("{path} {event}: {other:?}"),
            }
            events.push(format!("{path}:{event}").replace(&url, ""));
        }
        events.sort();
        assert_eq!(
            events,
            [
                "/bitbucket-server:pr:merged", "/bitbucket-server:pr:reviewer:approved",
                "/gitea:pull_request", "/gitea:pull_request_review_approved", "/gitea:status",
                "/github:check_run", "/github:pull_request", "/github:pull_request_review",
                "/gitlab:Merge Request Hook", "/gitlab:Merge Request Hook", "/gitlab:Pipeline Hook",
            ]
        );
    }

    #[test]
    fn hook_kinds_are_named_as_code_host_kinds() {
        for (kind, name) in [(HookKind::Github, "github"), (HookKind::Gitlab, "gitlab"), (HookKind::Gitea, "gitea"), (HookKind::BitbucketServer, "bitbucket-server")] {
            assert_eq!(serde_json::to_value(kind).expect("serialize"), json!(name));
        }
    }
}
