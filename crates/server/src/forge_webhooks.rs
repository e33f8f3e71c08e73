//! Incoming code host webhooks, the pure part: checking that a delivery comes from the forge
//! (its signature, by each forge's own scheme) and reading which pull requests it is about.
//! No IO, no clock: [`crate::incoming_webhooks`] does the HTTP and the syncing.
//!
//! How each forge proves a delivery is its own, with the secret shared when the webhook was
//! configured on it (`flotilla codehost webhook set`):
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, event in
//!   `X-GitHub-Event`.
//! - GitLab: `X-Gitlab-Token: <secret>` (the secret itself, no signature), event in
//!   `X-Gitlab-Event`.
//! - Gitea and Forgejo: `X-Gitea-Signature: <hex HMAC-SHA256>` without a prefix (Forgejo also
//!   sends `X-Forgejo-Signature`), event in `X-Gitea-Event` (`X-Forgejo-Event`).
//! - Bitbucket Server: `X-Hub-Signature: sha256=<hex HMAC-SHA256>`, event key in `X-Event-Key`.
//!
//! Every comparison of a secret or signature takes the same time wherever the first difference
//! is, so a caller cannot guess one byte at a time from response times.

use axum::http::HeaderMap;
use flotilla_store::CodeHostKind;
use serde_json::Value;

/// The largest delivery accepted, as GitHub caps its payloads (25 MiB).
pub const MAX_BODY_BYTES: usize = 25 << 20;

/// Whose conventions a delivery follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForgeKind {
    GitHub,
    GitLab,
    Gitea,
    BitbucketServer,
}

impl ForgeKind {
    /// The forge behind a code host connection; `None` for plain git hosts, which send no
    /// webhooks.
    pub fn of(kind: CodeHostKind) -> Option<ForgeKind> {
        match kind {
            CodeHostKind::Github => Some(ForgeKind::GitHub),
            CodeHostKind::Gitlab => Some(ForgeKind::GitLab),
            CodeHostKind::Gitea => Some(ForgeKind::Gitea),
            CodeHostKind::BitbucketServer => Some(ForgeKind::BitbucketServer),
            CodeHostKind::GitDirectory | CodeHostKind::GitUrls => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "GitHub",
            ForgeKind::GitLab => "GitLab",
            ForgeKind::Gitea => "Gitea",
            ForgeKind::BitbucketServer => "Bitbucket Server",
        }
    }

    /// The headers that may carry the proof, in the order they are looked for.
    fn proof_headers(self) -> &'static [&'static str] {
        match self {
            ForgeKind::GitHub => &["X-Hub-Signature-256"],
            ForgeKind::GitLab => &["X-Gitlab-Token"],
            ForgeKind::Gitea => &["X-Gitea-Signature", "X-Forgejo-Signature"],
            ForgeKind::BitbucketServer => &["X-Hub-Signature"],
        }
    }

    /// The headers that may name the event, in the order they are looked for.
    fn event_headers(self) -> &'static [&'static str] {
        match self {
            ForgeKind::GitHub => &["X-GitHub-Event"],
            ForgeKind::GitLab => &["X-Gitlab-Event"],
            ForgeKind::Gitea => &["X-Gitea-Event", "X-Forgejo-Event"],
            ForgeKind::BitbucketServer => &["X-Event-Key"],
        }
    }
}

/// Why a delivery is not accepted as the forge's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the delivery has no {header} header: give the webhook on {forge} the secret set with `flotilla codehost webhook set` (and check that the code host connection is of {forge}'s kind)")]
    Missing { header: &'static str, forge: &'static str },
    #[error("the {header} header is not {expected}: check that the webhook on {forge} sends {forge}'s own format")]
    Malformed { header: &'static str, forge: &'static str, expected: &'static str },
    #[error("the {header} header does not match this code host's webhook secret: the secret configured on {forge} differs from the one set with `flotilla codehost webhook set`, or the body was changed on the way")]
    Mismatch { header: &'static str, forge: &'static str },
}

/// Checks that `body` was sent by the forge that shares `secret` with us.
pub fn verify(kind: ForgeKind, headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<(), VerifyError> {
    let forge = kind.name();
    let found = kind.proof_headers().iter().find_map(|header| headers.get(*header).map(|value| (*header, value)));
    let Some((header, value)) = found else {
        return Err(VerifyError::Missing { header: kind.proof_headers()[0], forge });
    };
    if kind == ForgeKind::GitLab {
        // GitLab sends the secret itself.
        return if constant_time_equal(value.as_bytes(), secret) { Ok(()) } else { Err(VerifyError::Mismatch { header, forge }) };
    }
    let (prefix, expected) = match kind {
        ForgeKind::Gitea => ("", "64 hexadecimal digits (HMAC-SHA256)"),
        _ => ("sha256=", "sha256=<64 hexadecimal digits> (HMAC-SHA256)"),
    };
    let malformed = || VerifyError::Malformed { header, forge, expected };
    let text = value.to_str().map_err(|_| malformed())?.trim();
    let digits = text.strip_prefix(prefix).ok_or_else(malformed)?;
    let sent: [u8; 32] = hex::decode(digits).ok().and_then(|bytes| bytes.try_into().ok()).ok_or_else(malformed)?;
    let computed = crate::webhooks::hmac_sha256(secret, body);
    if constant_time_equal(&sent, &computed) { Ok(()) } else { Err(VerifyError::Mismatch { header, forge }) }
}

/// Equality whose time depends only on the lengths, never on where the bytes differ.
pub fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

/// The event a delivery names, from the forge's event header.
pub fn event_name(kind: ForgeKind, headers: &HeaderMap) -> Option<String> {
    kind.event_headers().iter().find_map(|header| headers.get(*header)).and_then(|value| value.to_str().ok()).map(|event| event.trim().to_owned())
}

/// What a delivery means for Flotilla.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// The forge checking that the hook answers.
    Ping,
    /// An event that changes nothing Flotilla tracks (pushes, issues, comments...).
    Ignored { event: String },
    /// Something changed on pull requests of a repository: re-read the matching ones.
    Changed(Changed),
}

/// Which pull requests of which repository an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub event: String,
    /// The repository's path on the forge: `owner/name` (`group/subgroup/name` on GitLab,
    /// `PROJECT/slug` on Bitbucket Server).
    pub repository: String,
    /// Pull request numbers named by the event.
    pub numbers: Vec<u64>,
    /// Branches named by the event (a check or pipeline names its commit's branch).
    pub branches: Vec<String>,
}

impl Changed {
    /// Whether a changeset with this pull request number and head branch is concerned. An event
    /// that names neither numbers nor branches (a Gitea commit status names only its commit)
    /// concerns every changeset of the repository.
    pub fn concerns(&self, number: Option<u64>, head_branch: Option<&str>) -> bool {
        if self.numbers.is_empty() && self.branches.is_empty() {
            return true;
        }
        let branch = head_branch.map(|branch| branch.trim_start_matches("refs/heads/"));
        number.is_some_and(|number| self.numbers.contains(&number)) || branch.is_some_and(|branch| self.branches.iter().any(|named| named == branch))
    }
}

/// Why a verified delivery's body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the {event} payload is not JSON ({reason}): set the webhook's content type on the forge to application/json")]
    NotJson { event: String, reason: String },
    #[error("the {event} payload has no {field}; is the webhook of the code host connection's kind?")]
    Missing { event: String, field: &'static str },
}

/// Reads a verified delivery: which repository and pull requests it is about, or that it can be
/// ignored. Events that are ignored are not parsed at all.
pub fn parse(kind: ForgeKind, event: &str, body: &[u8]) -> Result<Notification, PayloadError> {
    match kind {
        ForgeKind::GitHub => parse_github(event, body),
        ForgeKind::GitLab => parse_gitlab(event, body),
        ForgeKind::Gitea => parse_gitea(event, body),
        ForgeKind::BitbucketServer => parse_bitbucket_server(event, body),
    }
}

fn json(event: &str, body: &[u8]) -> Result<Value, PayloadError> {
    serde_json::from_slice::<Value>(body).map_err(|error| PayloadError::NotJson { event: event.to_owned(), reason: error.to_string() })
}

fn text(payload: &Value, pointer: &'static str, event: &str) -> Result<String, PayloadError> {
    payload
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| PayloadError::Missing { event: event.to_owned(), field: field_name(pointer) })
}

fn number(payload: &Value, pointer: &'static str, event: &str) -> Result<u64, PayloadError> {
    payload.pointer(pointer).and_then(Value::as_u64).ok_or_else(|| PayloadError::Missing { event: event.to_owned(), field: field_name(pointer) })
}

/// `/pull_request/number` → `pull_request.number`, as forges' documentation names fields.
fn field_name(pointer: &'static str) -> &'static str {
    match pointer {
        "/repository/full_name" => "repository.full_name",
        "/pull_request/number" => "pull_request.number",
        "/project/path_with_namespace" => "project.path_with_namespace",
        "/object_attributes/iid" => "object_attributes.iid",
        "/pullRequest/id" => "pullRequest.id",
        "/pullRequest/toRef/repository/slug" => "pullRequest.toRef.repository.slug",
        "/pullRequest/toRef/repository/project/key" => "pullRequest.toRef.repository.project.key",
        _ => pointer,
    }
}

/// The `number` of each object in the array at `pointer`.
fn numbers_in(payload: &Value, pointer: &str) -> Vec<u64> {
    payload.pointer(pointer).and_then(Value::as_array).map(|items| items.iter().filter_map(|item| item.get("number").and_then(Value::as_u64)).collect()).unwrap_or_default()
}

fn branch_at(payload: &Value, pointer: &str) -> Vec<String> {
    payload.pointer(pointer).and_then(Value::as_str).filter(|branch| !branch.is_empty()).map(|branch| vec![branch.trim_start_matches("refs/heads/").to_owned()]).unwrap_or_default()
}

fn ignored(event: &str) -> Result<Notification, PayloadError> {
    Ok(Notification::Ignored { event: event.to_owned() })
}

/// GitHub: `pull_request` and `pull_request_review` name their pull request; `check_suite`
/// and `check_run` their pull requests (empty for forks) and head branch; `status` the
/// branches holding its commit.
fn parse_github(event: &str, body: &[u8]) -> Result<Notification, PayloadError> {
    let changed = |payload: &Value, numbers, branches| -> Result<Notification, PayloadError> {
        Ok(Notification::Changed(Changed { event: event.to_owned(), repository: text(payload, "/repository/full_name", event)?, numbers, branches }))
    };
    match event {
        "ping" => Ok(Notification::Ping),
        "pull_request" | "pull_request_review" => {
            let payload = json(event, body)?;
            let pull = number(&payload, "/pull_request/number", event)?;
            changed(&payload, vec![pull], Vec::new())
        }
        "check_suite" => {
            let payload = json(event, body)?;
            changed(&payload, numbers_in(&payload, "/check_suite/pull_requests"), branch_at(&payload, "/check_suite/head_branch"))
        }
        "check_run" => {
            let payload = json(event, body)?;
            changed(&payload, numbers_in(&payload, "/check_run/pull_requests"), branch_at(&payload, "/check_run/check_suite/head_branch"))
        }
        "status" => {
            let payload = json(event, body)?;
            let branches = payload
                .get("branches")
                .and_then(Value::as_array)
                .map(|branches| branches.iter().filter_map(|branch| branch.get("name").and_then(Value::as_str)).map(str::to_owned).collect())
                .unwrap_or_default();
            changed(&payload, Vec::new(), branches)
        }
        _ => ignored(event),
    }
}

/// GitLab: a `Merge Request Hook` (opened, merged, closed, approved...) names its merge
/// request's `iid`; a `Pipeline Hook` its branch and, for merge request pipelines, the merge
/// request.
fn parse_gitlab(event: &str, body: &[u8]) -> Result<Notification, PayloadError> {
    match event {
        "Merge Request Hook" => {
            let payload = json(event, body)?;
            let iid = number(&payload, "/object_attributes/iid", event)?;
            Ok(Notification::Changed(Changed { event: event.to_owned(), repository: text(&payload, "/project/path_with_namespace", event)?, numbers: vec![iid], branches: Vec::new() }))
        }
        "Pipeline Hook" => {
            let payload = json(event, body)?;
            let numbers: Vec<u64> = payload.pointer("/merge_request/iid").and_then(Value::as_u64).into_iter().collect();
            let is_tag = payload.pointer("/object_attributes/tag").and_then(Value::as_bool).unwrap_or(false);
            let branches = if is_tag { Vec::new() } else { branch_at(&payload, "/object_attributes/ref") };
            if numbers.is_empty() && branches.is_empty() {
                // A tag's pipeline belongs to no merge request.
                return ignored(event);
            }
            Ok(Notification::Changed(Changed { event: event.to_owned(), repository: text(&payload, "/project/path_with_namespace", event)?, numbers, branches }))
        }
        _ => ignored(event),
    }
}

/// Gitea and Forgejo: every pull request event (`pull_request`, `pull_request_sync`,
/// `pull_request_review_approved`, `pull_request_review_rejected`...) carries the pull request
/// and its `number`; a commit `status` names only its commit.
fn parse_gitea(event: &str, body: &[u8]) -> Result<Notification, PayloadError> {
    let is_pull_request_event = matches!(event, "pull_request" | "pull_request_sync") || event.starts_with("pull_request_review");
    if is_pull_request_event {
        let payload = json(event, body)?;
        let pull = payload
            .pointer("/pull_request/number")
            .and_then(Value::as_u64)
            .or_else(|| payload.get("number").and_then(Value::as_u64))
            .ok_or_else(|| PayloadError::Missing { event: event.to_owned(), field: "pull_request.number" })?;
        return Ok(Notification::Changed(Changed { event: event.to_owned(), repository: text(&payload, "/repository/full_name", event)?, numbers: vec![pull], branches: Vec::new() }));
    }
    if event == "status" {
        let payload = json(event, body)?;
        return Ok(Notification::Changed(Changed { event: event.to_owned(), repository: text(&payload, "/repository/full_name", event)?, numbers: Vec::new(), branches: Vec::new() }));
    }
    ignored(event)
}

/// Bitbucket Server: `pr:*` events (opened, merged, declined, reviewer approved...) carry the
/// pull request, its target repository and project; `diagnostics:ping` is the "Test
/// connection" button.
fn parse_bitbucket_server(event: &str, body: &[u8]) -> Result<Notification, PayloadError> {
    if event == "diagnostics:ping" {
        return Ok(Notification::Ping);
    }
    if !event.starts_with("pr:") || event.starts_with("pr:comment:") {
        return ignored(event);
    }
    let payload = json(event, body)?;
    let id = number(&payload, "/pullRequest/id", event)?;
    let project = text(&payload, "/pullRequest/toRef/repository/project/key", event)?;
    let slug = text(&payload, "/pullRequest/toRef/repository/slug", event)?;
    Ok(Notification::Changed(Changed { event: event.to_owned(), repository: format!("{project}/{slug}"), numbers: vec![id], branches: Vec::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &[u8] = b"It's a Secret to Everybody";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
        hex::encode(crate::webhooks::hmac_sha256(secret, body))
    }

    #[test]
    fn githubs_documented_example_signature_verifies() {
        // From GitHub's "Validating webhook deliveries": this secret and payload give this digest.
        let body = b"Hello, World!";
        let signed = headers(&[("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")]);
        assert_eq!(verify(ForgeKind::GitHub, &signed, body, SECRET), Ok(()));
    }

    #[test]
    fn each_forge_accepts_its_own_signature_and_refuses_others() {
        let body = br#"{"action":"closed","number":1}"#;
        let digest = hmac_hex(SECRET, body);
        let with_prefix = format!("sha256={digest}");
        let cases: &[(ForgeKind, &[(&'static str, &str)])] = &[
            (ForgeKind::GitHub, &[("X-Hub-Signature-256", &with_prefix)]),
            (ForgeKind::GitLab, &[("X-Gitlab-Token", "It's a Secret to Everybody")]),
            (ForgeKind::Gitea, &[("X-Gitea-Signature", &digest)]),
            (ForgeKind::Gitea, &[("X-Forgejo-Signature", &digest)]),
            (ForgeKind::BitbucketServer, &[("X-Hub-Signature", &with_prefix)]),
        ];
        for (kind, pairs) in cases {
            let signed = headers(pairs);
            assert_eq!(verify(*kind, &signed, body, SECRET), Ok(()), "{kind:?} {pairs:?}");
            // The wrong secret.
            assert!(matches!(verify(*kind, &signed, body, b"another secret"), Err(VerifyError::Mismatch { .. })), "{kind:?} wrong secret");
            if *kind != ForgeKind::GitLab {
                // A tampered body and a truncated one.
                assert!(matches!(verify(*kind, &signed, br#"{"action":"closed","number":2}"#, SECRET), Err(VerifyError::Mismatch { .. })), "{kind:?} tampered");
                assert!(matches!(verify(*kind, &signed, &body[..body.len() - 1], SECRET), Err(VerifyError::Mismatch { .. })), "{kind:?} truncated");
            }
            // No proof at all.
            assert!(matches!(verify(*kind, &HeaderMap::new(), body, SECRET), Err(VerifyError::Missing { .. })), "{kind:?} unsigned");
        }
        // GitHub's header on a GitLab connection is no proof.
        assert!(matches!(verify(ForgeKind::GitLab, &headers(&[("X-Hub-Signature-256", &with_prefix)]), body, SECRET), Err(VerifyError::Missing { header: "X-Gitlab-Token", .. })));
    }

    #[test]
    fn malformed_signatures_say_what_was_expected() {
        let body = b"{}";
        let digest = hmac_hex(SECRET, body);
        for (kind, header, value) in [
            (ForgeKind::GitHub, "X-Hub-Signature-256", digest.clone()),
            (ForgeKind::GitHub, "X-Hub-Signature-256", format!("sha1={digest}")),
            (ForgeKind::GitHub, "X-Hub-Signature-256", "sha256=zz".to_owned()),
            (ForgeKind::GitHub, "X-Hub-Signature-256", format!("sha256={}", &digest[..62])),
            (ForgeKind::Gitea, "X-Gitea-Signature", format!("sha256={digest}")),
            (ForgeKind::BitbucketServer, "X-Hub-Signature", digest.clone()),
        ] {
            let error = verify(kind, &headers(&[(header, &value)]), body, SECRET).expect_err("malformed");
            assert!(matches!(error, VerifyError::Malformed { .. }), "{kind:?} {value}: {error:?}");
            assert!(error.to_string().contains(header), "{error}");
        }
        // Upper-case hex digits are the same signature.
        assert_eq!(verify(ForgeKind::Gitea, &headers(&[("X-Gitea-Signature", &digest.to_uppercase())]), body, SECRET), Ok(()));
    }

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(constant_time_equal(b"abc", b"abc"));
        assert!(!constant_time_equal(b"abc", b"abd"));
        assert!(!constant_time_equal(b"abc", b"abcd"));
        assert!(constant_time_equal(b"", b""));
    }

    #[test]
    fn events_are_read_from_each_forges_header() {
        assert_eq!(event_name(ForgeKind::GitHub, &headers(&[("X-GitHub-Event", "pull_request")])).as_deref(), Some("pull_request"));
        assert_eq!(event_name(ForgeKind::GitLab, &headers(&[("X-Gitlab-Event", "Merge Request Hook")])).as_deref(), Some("Merge Request Hook"));
        assert_eq!(event_name(ForgeKind::Gitea, &headers(&[("X-Forgejo-Event", "pull_request")])).as_deref(), Some("pull_request"));
        assert_eq!(event_name(ForgeKind::BitbucketServer, &headers(&[("X-Event-Key", "pr:merged")])).as_deref(), Some("pr:merged"));
        assert_eq!(event_name(ForgeKind::GitHub, &headers(&[("X-Gitlab-Event", "Merge Request Hook")])), None);
    }

    fn changed(event: &str, repository: &str, numbers: &[u64], branches: &[&str]) -> Notification {
        Notification::Changed(Changed {
            event: event.to_owned(),
            repository: repository.to_owned(),
            numbers: numbers.to_vec(),
            branches: branches.iter().map(|branch| (*branch).to_owned()).collect(),
        })
    }

    fn check(kind: ForgeKind, event: &str, body: &str, expected: Notification) {
        assert_eq!(parse(kind, event, body.as_bytes()), Ok(expected), "{kind:?} {event}: {body}");
    }

    #[test]
    fn github_payloads_name_their_repository_and_pull_requests() {
        check(ForgeKind::GitHub, "ping", r#"{"zen": "Design for failure.", "hook_id": 1}"#, Notification::Ping);
        check(
            ForgeKind::GitHub,
            "pull_request",
            r#"{"action": "closed", "number": 5, "pull_request": {"number": 5, "state": "closed", "merged": true, "head": {"ref": "batch/readme-fix", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"}}, "repository": {"id": 1296269, "name": "app", "full_name": "acme/app", "owner": {"login": "acme"}}, "sender": {"login": "octocat"}}"#,
            changed("pull_request", "acme/app", &[5], &[]),
        );
        check(
            ForgeKind::GitHub,
            "pull_request_review",
            r#"{"action": "submitted", "review": {"id": 80, "state": "approved", "user": {"login": "reviewer"}}, "pull_request": {"number": 2}, "repository": {"full_name": "acme/web"}}"#,
            changed("pull_request_review", "acme/web", &[2], &[]),
        );
        check(
            ForgeKind::GitHub,
            "check_suite",
            r#"{"action": "completed", "check_suite": {"id": 118578147, "head_branch": "batch/readme-fix", "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "status": "completed", "conclusion": "success", "pull_requests": [{"number": 3, "head": {"ref": "batch/readme-fix"}}]}, "repository": {"full_name": "acme/app"}}"#,
            changed("check_suite", "acme/app", &[3], &["batch/readme-fix"]),
        );
        check(
            ForgeKind::GitHub,
            "check_run",
            r#"{"action": "completed", "check_run": {"id": 128620228, "name": "ci", "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "status": "completed", "conclusion": "failure", "check_suite": {"id": 118578147, "head_branch": "batch/x"}, "pull_requests": []}, "repository": {"full_name": "acme/app"}}"#,
            changed("check_run", "acme/app", &[], &["batch/x"]),
        );
        check(
            ForgeKind::GitHub,
            "status",
            r#"{"id": 1, "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "state": "success", "context": "ci/jenkins", "branches": [{"name": "batch/x", "commit": {"sha": "ec26c3e"}}, {"name": "main"}], "repository": {"full_name": "acme/app"}}"#,
            changed("status", "acme/app", &[], &["batch/x", "main"]),
        );
        check(ForgeKind::GitHub, "push", "not even JSON", Notification::Ignored { event: "push".to_owned() });
        check(ForgeKind::GitHub, "issues", "{}", Notification::Ignored { event: "issues".to_owned() });
    }

    #[test]
    fn gitlab_payloads_name_their_project_and_merge_requests() {
        check(
            ForgeKind::GitLab,
            "Merge Request Hook",
            r#"{"object_kind": "merge_request", "event_type": "merge_request", "user": {"username": "root"}, "project": {"id": 1, "name": "app", "path_with_namespace": "acme/app", "web_url": "https://gitlab.example/acme/app"}, "object_attributes": {"id": 99, "iid": 1, "state": "merged", "action": "merge", "source_branch": "batch/readme-fix", "target_branch": "main"}}"#,
            changed("Merge Request Hook", "acme/app", &[1], &[]),
        );
        check(
            ForgeKind::GitLab,
            "Merge Request Hook",
            r#"{"object_kind": "merge_request", "project": {"path_with_namespace": "acme/sub/app"}, "object_attributes": {"iid": 4, "action": "approved"}}"#,
            changed("Merge Request Hook", "acme/sub/app", &[4], &[]),
        );
        check(
            ForgeKind::GitLab,
            "Pipeline Hook",
            r#"{"object_kind": "pipeline", "object_attributes": {"id": 31, "ref": "batch/readme-fix", "tag": false, "sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2", "status": "success"}, "merge_request": {"id": 1, "iid": 1, "title": "Fix"}, "project": {"path_with_namespace": "acme/app"}}"#,
            changed("Pipeline Hook", "acme/app", &[1], &["batch/readme-fix"]),
        );
        check(
            ForgeKind::GitLab,
            "Pipeline Hook",
            r#"{"object_kind": "pipeline", "object_attributes": {"ref": "v1.0", "tag": true, "status": "success"}, "merge_request": null, "project": {"path_with_namespace": "acme/app"}}"#,
            Notification::Ignored { event: "Pipeline Hook".to_owned() },
        );
        check(ForgeKind::GitLab, "Push Hook", "{}", Notification::Ignored { event: "Push Hook".to_owned() });
    }

    #[test]
    fn gitea_payloads_name_their_repository_and_pull_request() {
        check(
            ForgeKind::Gitea,
            "pull_request",
            r#"{"action": "closed", "number": 3, "pull_request": {"id": 12, "number": 3, "state": "closed", "merged": true, "head": {"ref": "batch/x"}}, "repository": {"id": 2, "name": "app", "full_name": "acme/app"}, "sender": {"login": "gitea"}}"#,
            changed("pull_request", "acme/app", &[3], &[]),
        );
        check(
            ForgeKind::Gitea,
            "pull_request_review_approved",
            r#"{"action": "reviewed", "number": 3, "pull_request": {"number": 3}, "repository": {"full_name": "acme/app"}, "review": {"type": "pull_request_review_approved", "content": "LGTM"}}"#,
            changed("pull_request_review_approved", "acme/app", &[3], &[]),
        );
        check(
            ForgeKind::Gitea,
            "status",
            r#"{"sha": "9b8e5f5b4c1a8d8c6f3f7e2a1b0c9d8e7f6a5b4c", "context": "ci", "state": "success", "repository": {"full_name": "acme/app"}}"#,
            changed("status", "acme/app", &[], &[]),
        );
        check(ForgeKind::Gitea, "pull_request_label", "{}", Notification::Ignored { event: "pull_request_label".to_owned() });
    }

    #[test]
    fn bitbucket_server_payloads_name_project_slug_and_pull_request() {
        check(ForgeKind::BitbucketServer, "diagnostics:ping", r#"{"test": true}"#, Notification::Ping);
        let merged = r#"{"eventKey": "pr:merged", "date": "2017-09-19T11:16:17+1000", "actor": {"name": "admin"}, "pullRequest": {"id": 9, "version": 2, "title": "Fix", "state": "MERGED", "open": false, "closed": true, "fromRef": {"id": "refs/heads/batch/x", "repository": {"slug": "app", "project": {"key": "ACME"}}}, "toRef": {"id": "refs/heads/main", "displayId": "main", "repository": {"slug": "app", "name": "App", "project": {"key": "ACME", "name": "Acme"}}}}}"#;
        check(ForgeKind::BitbucketServer, "pr:merged", merged, changed("pr:merged", "ACME/app", &[9], &[]));
        check(ForgeKind::BitbucketServer, "pr:reviewer:approved", merged, changed("pr:reviewer:approved", "ACME/app", &[9], &[]));
        check(ForgeKind::BitbucketServer, "pr:comment:added", merged, Notification::Ignored { event: "pr:comment:added".to_owned() });
        check(ForgeKind::BitbucketServer, "repo:refs_changed", "{}", Notification::Ignored { event: "repo:refs_changed".to_owned() });
    }

    #[test]
    fn truncated_and_incomplete_payloads_are_errors_not_panics() {
        let full = r#"{"action": "closed", "pull_request": {"number": 5}, "repository": {"full_name": "acme/app"}}"#;
        for cut in [0, 1, 20, full.len() - 1] {
            assert!(matches!(parse(ForgeKind::GitHub, "pull_request", &full.as_bytes()[..cut]), Err(PayloadError::NotJson { .. })), "cut at {cut}");
        }
        assert_eq!(
            parse(ForgeKind::GitHub, "pull_request", br#"{"pull_request": {"number": 5}}"#),
            Err(PayloadError::Missing { event: "pull_request".to_owned(), field: "repository.full_name" })
        );
        assert_eq!(
            parse(ForgeKind::GitHub, "pull_request", br#"{"pull_request": {"number": "5"}, "repository": {"full_name": "acme/app"}}"#),
            Err(PayloadError::Missing { event: "pull_request".to_owned(), field: "pull_request.number" })
        );
        assert!(matches!(parse(ForgeKind::GitLab, "Merge Request Hook", br#"{"project": {}}"#), Err(PayloadError::Missing { .. })));
        assert!(matches!(parse(ForgeKind::Gitea, "pull_request", br#"{"repository": {"full_name": "a/b"}}"#), Err(PayloadError::Missing { .. })));
        assert!(matches!(parse(ForgeKind::BitbucketServer, "pr:merged", br#"{"pullRequest": {"id": 1}}"#), Err(PayloadError::Missing { .. })));
        assert!(matches!(parse(ForgeKind::GitHub, "status", b"[1, 2"), Err(PayloadError::NotJson { .. })));
        assert!(matches!(parse(ForgeKind::GitHub, "check_run", b"[]"), Err(PayloadError::Missing { .. })));
    }

    #[test]
    fn an_event_concerns_its_numbers_and_branches_or_else_the_whole_repository() {
        let by_number = Changed { event: "pull_request".into(), repository: "acme/app".into(), numbers: vec![5], branches: Vec::new() };
        assert!(by_number.concerns(Some(5), Some("refs/heads/x")));
        assert!(!by_number.concerns(Some(6), Some("refs/heads/x")));
        assert!(!by_number.concerns(None, None));
        let by_branch = Changed { event: "check_run".into(), repository: "acme/app".into(), numbers: Vec::new(), branches: vec!["batch/x".into()] };
        assert!(by_branch.concerns(Some(1), Some("refs/heads/batch/x")));
        assert!(by_branch.concerns(Some(1), Some("batch/x")));
        assert!(!by_branch.concerns(Some(1), Some("refs/heads/batch/y")));
        let whole = Changed { event: "status".into(), repository: "acme/app".into(), numbers: Vec::new(), branches: Vec::new() };
        assert!(whole.concerns(Some(1), None));
    }
}
