//! Conformance tests for the plain records (accounts, tokens, secrets, repositories, batch
//! specs, resolution jobs, step cache, changesets, audit log), run against both backends.

mod common;

use flotilla_store::*;
use serde_json::json;

fn new_user(username: &str) -> NewUser {
    NewUser {
        username: username.to_owned(),
        display_name: String::new(),
        email: format!("{username}@example.com"),
        password_hash: Some(String::from("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")),
        site_admin: false,
    }
}

fn new_org(name: &str) -> NewOrg {
    NewOrg {
        name: name.to_owned(),
        display_name: name.to_owned(),
        members_can_administer_batch_changes: true,
    }
}

async fn usernames_and_org_names_share_one_namespace(store: Store) {
    let alice = store
        .create_user(&new_user("alice"), 1)
        .await
        .expect("user");
    assert!(matches!(
        store.create_user(&new_user("alice"), 1).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.create_user(&new_user("ALICE"), 1).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.create_org(&new_org("Alice"), 1).await,
        Err(StoreError::Conflict { .. })
    ));
    let org = store.create_org(&new_org("acme"), 1).await.expect("org");
    assert!(matches!(
        store.create_user(&new_user("acme"), 1).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.create_org(&new_org("acme"), 1).await,
        Err(StoreError::Conflict { .. })
    ));

    store
        .set_org_member(org.id, alice.id, OrgRole::Member, 2)
        .await
        .expect("member");
    store
        .set_org_member(org.id, alice.id, OrgRole::Admin, 3)
        .await
        .expect("promote");
    assert_eq!(
        store.get_org_role(org.id, alice.id).await.expect("role"),
        Some(OrgRole::Admin)
    );
    assert_eq!(
        store.list_org_members(org.id).await.expect("members").len(),
        1
    );
    assert_eq!(
        store.list_user_orgs(alice.id).await.expect("orgs")[0].org_id,
        org.id
    );
    assert!(
        store
            .remove_org_member(org.id, alice.id)
            .await
            .expect("remove")
    );
    assert_eq!(
        store.get_org_role(org.id, alice.id).await.expect("role"),
        None
    );
    assert_eq!(
        store
            .get_user_by_username("alice")
            .await
            .expect("get")
            .map(|user| user.id),
        Some(alice.id)
    );
    assert_eq!(
        store
            .get_org_by_name("acme")
            .await
            .expect("get")
            .map(|org| org.id),
        Some(org.id)
    );
    assert!(matches!(
        store.get_user(UserId(999)).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn orgs_list_and_change_their_setting(store: Store) {
    let acme = store.create_org(&new_org("acme"), 1).await.expect("org");
    let globex = store.create_org(&new_org("globex"), 1).await.expect("org");
    let all = store.list_orgs(None, 10).await.expect("list");
    assert_eq!(
        all.iter().map(|org| org.name.as_str()).collect::<Vec<_>>(),
        ["acme", "globex"]
    );
    let after_first = store.list_orgs(Some(acme.id), 10).await.expect("list");
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].id, globex.id);
    let changed = store
        .set_org_members_can_administer(acme.id, false)
        .await
        .expect("update");
    assert!(!changed.members_can_administer_batch_changes);
    assert!(
        !store
            .get_org(acme.id)
            .await
            .expect("get")
            .members_can_administer_batch_changes
    );
    assert!(matches!(
        store.set_org_members_can_administer(OrgId(999), true).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn session_tokens_expire(store: Store) {
    let alice = store
        .create_user(&new_user("alice"), 1)
        .await
        .expect("user");
    let session = store
        .create_expiring_access_token(alice.id, "session", TokenScope::User, "web", Some(100), 10)
        .await
        .expect("session");
    assert_eq!(session.expires_at, Some(100));
    assert!(
        store
            .lookup_access_token("session", 99)
            .await
            .expect("lookup")
            .is_some()
    );
    assert!(
        store
            .lookup_access_token("session", 100)
            .await
            .expect("lookup")
            .is_none(),
        "a session stops working when it expires"
    );
    let lasting = store
        .create_access_token(alice.id, "lasting", TokenScope::User, "cli", 10)
        .await
        .expect("token");
    assert_eq!(lasting.expires_at, None);
    assert!(
        store
            .lookup_access_token("lasting", i64::MAX - 1)
            .await
            .expect("lookup")
            .is_some()
    );
}

async fn code_host_restrictions_are_replaced(store: Store) {
    let host = store
        .create_code_host(
            &NewCodeHost {
                kind: CodeHostKind::GitDirectory,
                name: "local".to_owned(),
                url: "/srv".to_owned(),
                config: json!({}),
                credential_ciphertext: None,
                credential_nonce: None,
                credential_username: None,
                restricted_to: None,
            },
            1,
        )
        .await
        .expect("code host");
    let restriction = json!({ "users": [1], "orgs": [2] });
    let restricted = store
        .set_code_host_restriction(host.id, Some(&restriction))
        .await
        .expect("restrict");
    assert_eq!(restricted.restricted_to, Some(restriction.clone()));
    assert_eq!(
        store.get_code_host(host.id).await.expect("get").restricted_to,
        Some(restriction)
    );
    let open = store
        .set_code_host_restriction(host.id, None)
        .await
        .expect("open");
    assert_eq!(open.restricted_to, None);
    assert!(matches!(
        store.set_code_host_restriction(CodeHostId(999), None).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn code_host_credentials_prefer_the_users_own(store: Store) {
    let alice = store.create_user(&new_user("alice"), 1).await.expect("user");
    let bob = store.create_user(&new_user("bob"), 1).await.expect("user");
    let host = store
        .create_code_host(
            &NewCodeHost {
                kind: CodeHostKind::GitUrls,
                name: "remote".to_owned(),
                url: String::new(),
                config: json!({"urls": ["https://example.com/a.git"]}),
                credential_ciphertext: None,
                credential_nonce: None,
                credential_username: None,
                restricted_to: None,
            },
            1,
        )
        .await
        .expect("code host");
    assert!(!host.has_credential());
    assert_eq!(host.credential_updated_at, None);
    assert_eq!(store.credential_to_act_with(alice.id, host.id).await.expect("pick"), None);

    let site = EncryptedCredential { ciphertext: vec![1, 2, 3], nonce: vec![9; 12], username: Some("bot".to_owned()) };
    let with_credential = store.set_code_host_credential(host.id, Some(&site), 5).await.expect("set");
    assert!(with_credential.has_credential());
    assert_eq!(with_credential.credential_username.as_deref(), Some("bot"));
    assert_eq!(with_credential.credential_updated_at, Some(5));
    let picked = store.credential_to_act_with(alice.id, host.id).await.expect("pick").expect("some");
    assert_eq!(picked, ActingCredential { source: CredentialSource::Connection, credential: site.clone() });

    let own = EncryptedCredential { ciphertext: vec![4, 5], nonce: vec![8; 12], username: None };
    let saved = store.set_user_code_host_credential(alice.id, host.id, &own, 10).await.expect("own");
    assert_eq!((saved.created_at, saved.updated_at, saved.username.clone()), (10, 10, None));
    let replacement = EncryptedCredential { ciphertext: vec![6], nonce: vec![7; 12], username: Some("alice".to_owned()) };
    let replaced = store.set_user_code_host_credential(alice.id, host.id, &replacement, 20).await.expect("replace");
    assert_eq!((replaced.created_at, replaced.updated_at, replaced.username.as_deref()), (10, 20, Some("alice")));
    let picked = store.credential_to_act_with(alice.id, host.id).await.expect("pick").expect("some");
    assert_eq!(picked, ActingCredential { source: CredentialSource::User, credential: replacement });
    // Bob has none of his own: the connection's.
    let picked = store.credential_to_act_with(bob.id, host.id).await.expect("pick").expect("some");
    assert_eq!(picked.source, CredentialSource::Connection);
    let listed = store.list_user_code_host_credentials(alice.id).await.expect("list");
    assert_eq!(listed, vec![replaced]);
    assert!(store.list_user_code_host_credentials(bob.id).await.expect("list").is_empty());

    assert!(matches!(
        store.set_user_code_host_credential(alice.id, CodeHostId(999), &own, 30).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(store.credential_to_act_with(alice.id, CodeHostId(999)).await, Err(StoreError::NotFound { .. })));

    store.delete_user_code_host_credential(alice.id, host.id).await.expect("delete");
    assert!(matches!(
        store.delete_user_code_host_credential(alice.id, host.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let cleared = store.set_code_host_credential(host.id, None, 40).await.expect("clear");
    assert!(!cleared.has_credential());
    assert_eq!((cleared.credential_username, cleared.credential_updated_at), (None, Some(40)));
    assert_eq!(store.credential_to_act_with(alice.id, host.id).await.expect("pick"), None);
    assert!(matches!(store.set_code_host_credential(CodeHostId(999), None, 50).await, Err(StoreError::NotFound { .. })));

    // Deleting the code host deletes its users' credentials with it.
    store.set_user_code_host_credential(bob.id, host.id, &own, 60).await.expect("own");
    store.delete_code_host(host.id).await.expect("delete host");
    assert!(store.list_user_code_host_credentials(bob.id).await.expect("list").is_empty());
}

async fn tokens_are_looked_up_by_hash(store: Store) {
    let alice = store
        .create_user(&new_user("alice"), 1)
        .await
        .expect("user");
    let token = store
        .create_access_token(alice.id, "hash-1", TokenScope::User, "cli", 10)
        .await
        .expect("token");
    let found = store
        .lookup_access_token("hash-1", 20)
        .await
        .expect("lookup")
        .expect("known token");
    assert_eq!(
        (found.token_id, found.scope, found.user.id),
        (token.id, TokenScope::User, alice.id)
    );
    assert_eq!(
        store.list_access_tokens(alice.id).await.expect("list")[0].last_used_at,
        Some(20)
    );
    assert!(
        store
            .lookup_access_token("hash-2", 20)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(matches!(
        store
            .create_access_token(alice.id, "hash-1", TokenScope::SiteAdmin, "", 10)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    store
        .revoke_access_token(token.id, alice.id, 30)
        .await
        .expect("revoke");
    assert!(
        store
            .lookup_access_token("hash-1", 40)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(matches!(
        store.revoke_access_token(token.id, alice.id, 30).await,
        Err(StoreError::NotFound { .. })
    ));

    let executor_token = store
        .create_executor_token("exec-hash", "fleet", 1)
        .await
        .expect("executor token");
    assert_eq!(
        store
            .lookup_executor_token("exec-hash")
            .await
            .expect("lookup"),
        Some(executor_token.clone())
    );
    store
        .revoke_executor_token(executor_token.id, 2)
        .await
        .expect("revoke");
    assert!(
        store
            .lookup_executor_token("exec-hash")
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(store.list_executor_tokens().await.expect("list").len(), 1);
}

async fn secrets_keep_bytes_versions_and_an_access_log(store: Store) {
    let alice = store
        .create_user(&new_user("alice"), 1)
        .await
        .expect("user");
    let secret = NewSecret {
        scope: SecretScope::User(alice.id),
        name: String::from("GITHUB_TOKEN"),
        ciphertext: vec![0, 1, 2, 255],
        nonce: vec![9; 12],
        created_by: Some(alice.id),
    };
    let created = store.create_secret(&secret, 10).await.expect("create");
    assert_eq!(created.version, 1);
    assert!(matches!(
        store.create_secret(&secret, 10).await,
        Err(StoreError::Conflict { .. })
    ));
    let global = NewSecret {
        scope: SecretScope::Global,
        ..secret.clone()
    };
    store
        .create_secret(&global, 10)
        .await
        .expect("same name, other scope");
    assert!(matches!(
        store.create_secret(&global, 10).await,
        Err(StoreError::Conflict { .. })
    ));

    let updated = store
        .update_secret(created.id, &[7, 7], &[8; 12], 20)
        .await
        .expect("update");
    assert_eq!((updated.version, updated.updated_at), (2, 20));
    let listed = store
        .list_secrets(SecretScope::User(alice.id))
        .await
        .expect("list");
    assert_eq!(listed, vec![updated.clone()]);
    let accessor = SecretAccessor {
        user_id: Some(alice.id),
        job_id: None,
    };
    let read = store
        .read_secret(created.id, accessor, 30)
        .await
        .expect("read");
    assert_eq!((read.ciphertext, read.nonce), (vec![7, 7], vec![8; 12]));
    let by_name = store
        .read_secrets_by_name(
            SecretScope::User(alice.id),
            &[String::from("GITHUB_TOKEN"), String::from("NOPE")],
            accessor,
            40,
        )
        .await
        .expect("by name");
    assert_eq!(by_name.len(), 1);
    let accesses = store
        .list_secret_accesses(created.id, 10)
        .await
        .expect("log");
    assert_eq!(
        accesses
            .iter()
            .map(|access| access.accessed_at)
            .collect::<Vec<_>>(),
        vec![40, 30]
    );
    store.delete_secret(created.id).await.expect("delete");
    assert!(matches!(
        store.get_secret_metadata(created.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn repositories_upsert_and_paginate(store: Store) {
    let code_host = store
        .create_code_host(
            &NewCodeHost {
                kind: CodeHostKind::Github,
                name: String::from("github.com"),
                url: String::from("https://github.com"),
                config: json!({"orgs": ["acme"]}),
                credential_ciphertext: Some(vec![1, 2, 3]),
                credential_nonce: Some(vec![4; 12]),
                credential_username: None,
                restricted_to: Some(json!([1])),
            },
            1,
        )
        .await
        .expect("code host");
    assert_eq!(
        store.get_code_host(code_host.id).await.expect("get").config,
        json!({"orgs": ["acme"]})
    );
    for index in (0..25).rev() {
        store
            .upsert_repository(
                &NewRepository {
                    code_host_id: code_host.id,
                    name: format!("github.com/acme/repo{index:02}"),
                    clone_url: format!("https://github.com/acme/repo{index:02}.git"),
                    default_branch: None,
                    archived: false,
                    fork: index % 2 == 0,
                },
                2,
            )
            .await
            .expect("upsert");
    }
    let again = store
        .upsert_repository(
            &NewRepository {
                code_host_id: code_host.id,
                name: String::from("github.com/acme/repo03"),
                clone_url: String::from("https://mirror.example/repo03.git"),
                default_branch: Some(String::from("trunk")),
                archived: true,
                fork: false,
            },
            3,
        )
        .await
        .expect("upsert existing");
    assert_eq!(
        (again.clone_url.as_str(), again.archived, again.created_at),
        ("https://mirror.example/repo03.git", true, 2)
    );

    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_repositories(after.as_deref(), 10)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        names.extend(page.into_iter().map(|repository| repository.name));
    }
    assert_eq!(names.len(), 25);
    assert!(names.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(
        store
            .list_code_host_repositories(code_host.id, None, 100)
            .await
            .expect("list")
            .len(),
        25
    );

    store
        .update_repository_mirror_state(
            again.id,
            &MirrorStateUpdate {
                mirror_state: MirrorState::Ready,
                head_commit: Some(String::from("abc")),
                default_branch: None,
                last_error: None,
                synced_at: Some(50),
            },
        )
        .await
        .expect("mirror state");
    let repository = store
        .get_repository_by_name("github.com/acme/repo03")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (
            repository.mirror_state,
            repository.head_commit.as_deref(),
            repository.default_branch.as_deref()
        ),
        (MirrorState::Ready, Some("abc"), Some("trunk"))
    );
}

async fn batch_specs_resolution_and_changesets(store: Store) {
    let alice = store
        .create_user(&new_user("alice"), 1)
        .await
        .expect("user");
    let org = store.create_org(&new_org("acme"), 1).await.expect("org");
    let spec = NewBatchSpec {
        rand_id: String::from("r4nd"),
        namespace: Namespace::Org(org.id),
        creator_user_id: alice.id,
        name: String::from("hello"),
        raw_spec: String::from("name: hello"),
        parsed_spec: json!({"name": "hello"}),
        created_from_raw: true,
        allow_unsupported: false,
        allow_ignored: false,
        no_cache: false,
        batch_change_id: None,
    };
    let created = store
        .create_batch_spec(&spec, 10)
        .await
        .expect("batch spec");
    assert_eq!(
        created.namespace().expect("namespace"),
        Namespace::Org(org.id)
    );
    assert_eq!(
        store
            .get_batch_spec_by_rand_id("r4nd")
            .await
            .expect("get")
            .id,
        created.id
    );
    assert_eq!(
        store
            .list_batch_specs_by_namespace(Namespace::Org(org.id), None, 10)
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(
        store
            .list_batch_specs_by_namespace(Namespace::User(alice.id), None, 10)
            .await
            .expect("list")
            .is_empty()
    );

    let job = store
        .dequeue_resolution_job("worker-1", 20)
        .await
        .expect("dequeue")
        .expect("queued resolution");
    assert_eq!(
        (job.batch_spec_id, job.state, job.attempts),
        (created.id, ResolutionState::Processing, 1)
    );
    assert!(
        store
            .dequeue_resolution_job("worker-2", 20)
            .await
            .expect("dequeue")
            .is_none()
    );
    assert!(
        !store
            .finish_resolution_job(job.id, "worker-2", None, 30)
            .await
            .expect("finish by non-owner")
    );
    let (requeued, failed) = store
        .requeue_stalled_resolution_jobs(25, 3, 40)
        .await
        .expect("resetter");
    assert_eq!((requeued, failed), (1, 0));
    let job = store
        .dequeue_resolution_job("worker-2", 50)
        .await
        .expect("dequeue")
        .expect("requeued");
    assert!(
        store
            .heartbeat_resolution_job(job.id, "worker-2", 55)
            .await
            .expect("heartbeat")
    );
    assert!(
        store
            .finish_resolution_job(job.id, "worker-2", None, 60)
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_resolution_job(job.id, "worker-2", Some("late"), 61)
            .await
            .expect("second finish")
    );
    let job = store
        .get_resolution_job(created.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((job.state, job.attempts), (ResolutionState::Completed, 2));

    let file = store
        .put_mount_file(
            created.id,
            &NewMountFile {
                path: String::from("scripts/run.sh"),
                modified_at: 5,
                content: b"echo".to_vec(),
            },
        )
        .await
        .expect("mount file");
    assert_eq!(file.size, 4);
    assert_eq!(
        store.list_mount_files(created.id).await.expect("list"),
        vec![file.clone()]
    );
    assert_eq!(
        store
            .get_mount_file_content(file.id)
            .await
            .expect("content"),
        b"echo"
    );

    // Created together: the files are there before the resolution job can run.
    let with_files = store
        .create_batch_spec_with_mount_files(
            &NewBatchSpec { rand_id: String::from("w1thf1les"), ..spec.clone() },
            &[
                NewMountFile { path: String::from("a.sh"), modified_at: 7, content: b"a".to_vec() },
                NewMountFile { path: String::from("lib/b.sh"), modified_at: 8, content: b"bb".to_vec() },
            ],
            70,
        )
        .await
        .expect("spec with files");
    let listed = store.list_mount_files(with_files.id).await.expect("list");
    assert_eq!(
        listed.iter().map(|file| (file.path.as_str(), file.size, file.modified_at)).collect::<Vec<_>>(),
        vec![("a.sh", 1, 7), ("lib/b.sh", 2, 8)]
    );
    assert!(store.get_resolution_job(with_files.id).await.expect("job").is_some());

    let code_host = store
        .create_code_host(
            &NewCodeHost {
                kind: CodeHostKind::GitUrls,
                name: String::from("urls"),
                url: String::new(),
                config: json!({}),
                credential_ciphertext: None,
                credential_nonce: None,
                credential_username: None,
                restricted_to: None,
            },
            1,
        )
        .await
        .expect("code host");
    let repository = store
        .upsert_repository(
            &NewRepository {
                code_host_id: code_host.id,
                name: String::from("example.com/a/b"),
                clone_url: String::from("https://example.com/a/b.git"),
                default_branch: None,
                archived: false,
                fork: false,
            },
            1,
        )
        .await
        .expect("repository");
    let workspaces: Vec<NewWorkspace> = (0..1200)
        .map(|index| NewWorkspace {
            batch_spec_id: created.id,
            repository_id: repository.id,
            branch: String::from("main"),
            commit: String::from("c0ffee"),
            path: format!("pkg/{index}"),
            file_matches: vec![String::from("go.mod")],
            only_fetch_workspace: index % 2 == 0,
            ignored: false,
            unsupported: false,
            skipped: false,
            cached_result_found: false,
            step_cache_results: json!({}),
        })
        .collect();
    let workspace_ids = store
        .insert_workspaces(&workspaces, 70)
        .await
        .expect("bulk insert");
    assert_eq!(workspace_ids.len(), 1200);
    assert_eq!(
        store.count_workspaces(created.id).await.expect("count"),
        1200
    );
    let workspace = store.get_workspace(workspace_ids[1199]).await.expect("get");
    assert_eq!(
        (workspace.path.as_str(), workspace.file_matches.clone()),
        ("pkg/1199", json!(["go.mod"]))
    );
    let page = store
        .list_workspaces(created.id, Some(workspace_ids[9]), 5)
        .await
        .expect("page");
    assert_eq!(
        page.iter()
            .map(|workspace| workspace.id)
            .collect::<Vec<_>>(),
        workspace_ids[10..15].to_vec()
    );

    let changeset_spec = NewChangesetSpec {
        rand_id: String::from("cs-1"),
        batch_spec_id: created.id,
        workspace_id: Some(workspace_ids[0]),
        repository_id: repository.id,
        kind: ChangesetSpecKind::Branch,
        external_id: None,
        base_ref: Some(String::from("refs/heads/main")),
        base_rev: Some(String::from("c0ffee")),
        head_ref: Some(String::from("refs/heads/hello")),
        title: Some(String::from("Hello")),
        body: Some(String::new()),
        published: Some(json!(false)),
        diff: Some(b"diff --git a/x b/x\n".to_vec()),
        commit_message: Some(String::from("Hello")),
        author_name: Some(String::from("Alice")),
        author_email: Some(String::from("alice@example.com")),
        fork: None,
        diff_stat_added: 1,
        diff_stat_deleted: 0,
    };
    let second = NewChangesetSpec {
        rand_id: String::from("cs-2"),
        workspace_id: Some(workspace_ids[1]),
        ..changeset_spec.clone()
    };
    let spec_ids = store
        .insert_changeset_specs(&[changeset_spec, second], 80)
        .await
        .expect("insert specs");
    store
        .set_workspace_changeset_specs(workspace_ids[0], &spec_ids[..1])
        .await
        .expect("link");
    assert_eq!(
        store
            .get_workspace(workspace_ids[0])
            .await
            .expect("get")
            .changeset_spec_ids,
        json!([spec_ids[0].0])
    );
    let listed = store
        .list_changeset_specs(created.id, None, 10)
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|spec| spec.id).collect::<Vec<_>>(),
        spec_ids
    );
    assert_eq!(
        store
            .get_changeset_spec_by_rand_id("cs-2")
            .await
            .expect("get")
            .published,
        Some(json!(false))
    );

    let batch_change = store
        .create_batch_change(
            &NewBatchChange {
                namespace: Namespace::Org(org.id),
                name: String::from("hello"),
                description: String::new(),
                creator_user_id: alice.id,
                batch_spec_id: Some(created.id),
            },
            90,
        )
        .await
        .expect("batch change");
    assert!(matches!(
        store
            .create_batch_change(
                &NewBatchChange {
                    namespace: Namespace::Org(org.id),
                    name: String::from("hello"),
                    description: String::new(),
                    creator_user_id: alice.id,
                    batch_spec_id: None,
                },
                90,
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    let found = store
        .get_batch_change_by_name(Namespace::Org(org.id), "hello")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(found.id, batch_change.id);
    let updated = store
        .update_batch_change(
            batch_change.id,
            &BatchChangeUpdate {
                description: String::from("says hello"),
                batch_spec_id: Some(created.id),
                last_applier_user_id: Some(alice.id),
                last_applied_at: Some(100),
                closed_at: None,
            },
            100,
        )
        .await
        .expect("update");
    assert_eq!(
        (updated.description.as_str(), updated.last_applied_at),
        ("says hello", Some(100))
    );
    store
        .set_batch_spec_batch_change(created.id, Some(batch_change.id), 100)
        .await
        .expect("link spec");

    let changeset = store
        .insert_changeset(
            &NewChangeset {
                repository_id: repository.id,
                batch_change_ids: vec![batch_change.id],
                owned_by_batch_change_id: Some(batch_change.id),
                current_spec_id: Some(spec_ids[0]),
                external_id: None,
                publication_state: String::from("UNPUBLISHED"),
                reconciler_state: String::from("queued"),
                metadata: json!({}),
            },
            110,
        )
        .await
        .expect("changeset");
    assert_eq!(changeset.batch_change_ids, json!([batch_change.id.0]));
    let listed = store
        .list_changesets_for_batch_change(batch_change.id, None, 10)
        .await
        .expect("list");
    assert_eq!(listed, vec![changeset.clone()]);
    assert_eq!(
        store.get_changeset(changeset.id).await.expect("get"),
        changeset
    );

    let fetched = store.get_changeset_specs(&spec_ids).await.expect("specs by id");
    assert_eq!(fetched.iter().map(|spec| spec.id).collect::<Vec<_>>(), spec_ids, "every id, one query");

    // The reconciler's queue: apply records new, continued and retired changesets.
    let other = store
        .insert_changeset(
            &NewChangeset {
                repository_id: repository.id,
                batch_change_ids: vec![batch_change.id],
                owned_by_batch_change_id: Some(batch_change.id),
                current_spec_id: Some(spec_ids[0]),
                external_id: None,
                publication_state: String::from("PUBLISHED"),
                reconciler_state: String::from("completed"),
                metadata: json!({}),
            },
            111,
        )
        .await
        .expect("second changeset");
    // Both existing changesets are queued or done; drain the first one first.
    let first = store.next_changeset_to_reconcile(120).await.expect("next").expect("the queued one");
    assert_eq!((first.id, first.reconciler_state.as_str()), (changeset.id, "processing"));
    assert!(store.next_changeset_to_reconcile(120).await.expect("next").is_none(), "nothing else is queued");
    store
        .finish_reconciling(
            first.id,
            &ReconcileOutcome {
                reconciler_state: String::from("completed"),
                publication_state: Some(String::from("PUBLISHED")),
                external_branch: Some(String::from("refs/heads/batch/x")),
                ..ReconcileOutcome::default()
            },
            121,
        )
        .await
        .expect("finish");
    let reconciled = store.get_changeset(first.id).await.expect("get");
    assert_eq!(
        (reconciled.reconciler_state.as_str(), reconciled.publication_state.as_str(), reconciled.previous_spec_id, reconciled.external_branch.as_deref()),
        ("completed", "PUBLISHED", Some(spec_ids[0]), Some("refs/heads/batch/x"))
    );
    store
        .record_apply(batch_change.id, &[(repository.id, spec_ids[0])], &[(first.id, spec_ids[0])], &[other.id], flotilla_store::ReconcilerEntry::Queued, 130)
        .await
        .expect("record apply");
    let listed = store.list_changesets_for_batch_change(batch_change.id, None, 10).await.expect("list");
    assert_eq!(listed.len(), 3, "one new changeset");
    assert!(listed.iter().all(|changeset| changeset.reconciler_state == "queued"), "{listed:?}");
    let retired = store.get_changeset(other.id).await.expect("get");
    assert_eq!(retired.current_spec_id, None, "a retired changeset has no current spec");
    // A failure is counted and waits until `process_after`.
    let next = store.next_changeset_to_reconcile(140).await.expect("next").expect("queued");
    store
        .finish_reconciling(
            next.id,
            &ReconcileOutcome { reconciler_state: String::from("queued"), failure_message: Some(String::from("host down")), process_after: Some(500), ..ReconcileOutcome::default() },
            141,
        )
        .await
        .expect("errored");
    let retried = store.get_changeset(next.id).await.expect("get");
    assert_eq!((retried.num_failures, retried.failure_message.as_deref(), retried.process_after), (1, Some("host down"), Some(500)));

    // History: each change of a published changeset's state is one event; repeats are not.
    let tracked = store.next_changeset_to_reconcile(600).await.expect("next").expect("queued");
    store
        .finish_reconciling(
            tracked.id,
            &ReconcileOutcome { reconciler_state: String::from("completed"), publication_state: Some(String::from("PUBLISHED")), external_state: Some(String::from("OPEN")), ..ReconcileOutcome::default() },
            601,
        )
        .await
        .expect("opened");
    store.record_changeset_sync(tracked.id, "OPEN", "PENDING", "UNKNOWN", 602).await.expect("sync");
    store.record_changeset_sync(tracked.id, "OPEN", "PENDING", "PASSED", 603).await.expect("same states, new check");
    store.record_changeset_sync(tracked.id, "OPEN", "APPROVED", "PASSED", 604).await.expect("approved");
    store.record_changeset_sync(tracked.id, "MERGED", "APPROVED", "PASSED", 605).await.expect("merged");
    let events = store.changeset_events_for_batch_change(batch_change.id).await.expect("events");
    let history: Vec<(String, Option<String>, i64)> = events.iter().filter(|event| event.changeset_id == tracked.id).map(|event| (event.external_state.clone(), event.review_state.clone(), event.at)).collect();
    assert_eq!(
        history,
        vec![
            (String::from("OPEN"), None, 601),
            (String::from("OPEN"), Some(String::from("PENDING")), 602),
            (String::from("OPEN"), Some(String::from("APPROVED")), 604),
            (String::from("MERGED"), Some(String::from("APPROVED")), 605),
        ]
    );
    let counts = store.changeset_state_counts(batch_change.id).await.expect("counts");
    let merged = counts.iter().find(|group| group.external_state.as_deref() == Some("MERGED")).expect("a merged group");
    assert_eq!((merged.count, merged.reconciler_state.as_str(), merged.failing), (1, "completed", false));
    assert_eq!(counts.iter().map(|group| group.count).sum::<i64>(), 3);
    assert!(counts.iter().any(|group| group.failing && group.reconciler_state == "queued"), "the failed one waits for a retry: {counts:?}");

    // Rollout: scheduled changesets are released oldest first, a few at a time.
    let ids: Vec<ChangesetId> = store.list_changesets_for_batch_change(batch_change.id, None, 10).await.expect("list").iter().map(|changeset| changeset.id).collect();
    store.set_ui_publication_state(&ids[..2], "DRAFT", flotilla_store::ReconcilerEntry::Scheduled, 700).await.expect("schedule");
    assert_eq!(store.scheduled_changeset_order(10).await.expect("order"), ids[..2].to_vec());
    assert_eq!(store.release_scheduled_changesets(1, 701).await.expect("release"), 1);
    assert_eq!(store.scheduled_changeset_order(10).await.expect("order"), ids[1..2].to_vec());
    let released = store.get_changeset(ids[0]).await.expect("get");
    assert_eq!((released.reconciler_state.as_str(), released.ui_publication_state.as_deref()), ("queued", Some("DRAFT")));
    assert_eq!(store.release_scheduled_changesets(5, 702).await.expect("release"), 1);
    assert_eq!(store.release_scheduled_changesets(5, 703).await.expect("release"), 0);

    // A bulk close marks the changeset closing until the reconciler has closed it.
    store.mark_changesets_closing(&ids[..1], 800).await.expect("closing");
    let closing = store.get_changeset(ids[0]).await.expect("get");
    assert!(closing.closing && closing.reconciler_state == "queued");
    while let Some(taken) = store.next_changeset_to_reconcile(801).await.expect("next") {
        assert!(taken.id != ids[0] || taken.closing, "the reconciler sees the request to close");
        store
            .finish_reconciling(taken.id, &ReconcileOutcome { reconciler_state: String::from("completed"), ..ReconcileOutcome::default() }, 802)
            .await
            .expect("closed");
    }
    assert!(!store.get_changeset(ids[0]).await.expect("get").closing, "done closing");
}

async fn step_cache_round_trips(store: Store) {
    let alice = store
        .create_user(&new_user("alice"), 1)
        .await
        .expect("user");
    let bob = store.create_user(&new_user("bob"), 1).await.expect("user");
    store
        .upsert_step_cache_entry(alice.id, "k1", &json!({"diff": "a"}), 10)
        .await
        .expect("upsert");
    store
        .upsert_step_cache_entry(alice.id, "k2", &json!({"diff": "b"}), 10)
        .await
        .expect("upsert");
    store
        .upsert_step_cache_entry(alice.id, "k1", &json!({"diff": "c"}), 20)
        .await
        .expect("replace");
    store
        .upsert_step_cache_entry(bob.id, "k1", &json!({"diff": "bob"}), 10)
        .await
        .expect("upsert");
    let keys = vec![String::from("k1"), String::from("k2"), String::from("k3")];
    let mut entries = store
        .get_step_cache_entries(alice.id, &keys)
        .await
        .expect("get");
    entries.sort_by(|left, right| left.key.cmp(&right.key));
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (
            entries[0].value.clone(),
            entries[0].created_at,
            entries[0].last_used_at
        ),
        (json!({"diff": "c"}), 10, 20)
    );
    store
        .touch_step_cache_entries(alice.id, &keys[1..2], 30)
        .await
        .expect("touch");
    let entries = store
        .get_step_cache_entries(alice.id, &keys[1..2])
        .await
        .expect("get");
    assert_eq!(entries[0].last_used_at, 30);
    store
        .delete_step_cache_entries(alice.id, &keys[..1])
        .await
        .expect("delete");
    assert_eq!(
        store
            .get_step_cache_entries(alice.id, &keys)
            .await
            .expect("get")
            .len(),
        1
    );
    assert_eq!(
        store
            .get_step_cache_entries(bob.id, &keys)
            .await
            .expect("get")
            .len(),
        1
    );
}

async fn audit_log_and_executors(store: Store) {
    for index in 0..5 {
        store
            .append_audit_event(
                &NewAuditEvent {
                    actor_user_id: None,
                    action: String::from("secret.read"),
                    target_kind: String::from("secret"),
                    target_id: index.to_string(),
                    details: json!({"index": index}),
                },
                index,
            )
            .await
            .expect("append");
    }
    let first_page = store.list_audit_events(None, 3).await.expect("page");
    assert_eq!(
        first_page
            .iter()
            .map(|event| event.target_id.as_str())
            .collect::<Vec<_>>(),
        ["4", "3", "2"]
    );
    let second_page = store
        .list_audit_events(Some(first_page[2].id), 3)
        .await
        .expect("page");
    assert_eq!(
        second_page
            .iter()
            .map(|event| event.details.clone())
            .collect::<Vec<_>>(),
        [json!({"index": 1}), json!({"index": 0})]
    );

    let mut executor = ExecutorInfo {
        name: String::from("exec-1"),
        hostname: String::from("host"),
        version: String::from("0.1.0"),
        labels: json!({"gpu": "true"}),
        resources: json!({"cpus": 4}),
        os: String::from("linux"),
        architecture: String::from("x86_64"),
    };
    store.upsert_executor(&executor, 10).await.expect("upsert");
    executor.version = String::from("0.2.0");
    store.upsert_executor(&executor, 20).await.expect("upsert");
    let executors = store.list_executors(0).await.expect("list");
    assert_eq!(executors.len(), 1);
    assert_eq!(
        (
            executors[0].version.as_str(),
            executors[0].first_seen_at,
            executors[0].last_seen_at
        ),
        ("0.2.0", 10, 20)
    );
    assert!(store.list_executors(21).await.expect("list").is_empty());
}

async fn webhook_secrets_and_published_changesets_by_repository(store: Store) {
    let new_host = |name: &str| NewCodeHost {
        kind: CodeHostKind::Github,
        name: name.to_owned(),
        url: String::from("https://api.github.com"),
        config: json!({"org": "acme"}),
        credential_ciphertext: None,
        credential_nonce: None,
        credential_username: None,
        restricted_to: None,
    };
    let host = store.create_code_host(&new_host("github.com"), 1).await.expect("code host");
    let other_host = store.create_code_host(&new_host("ghe"), 1).await.expect("code host");

    // The secret: absent, set, replaced, deleted; gone with its host.
    assert_eq!(store.get_code_host_webhook_secret(host.id).await.expect("get"), None);
    store.set_code_host_webhook_secret(host.id, &[1, 2], &[3; 12], 5).await.expect("set");
    store.set_code_host_webhook_secret(host.id, &[4], &[5; 12], 6).await.expect("replace");
    let secret = store.get_code_host_webhook_secret(host.id).await.expect("get").expect("some");
    assert_eq!((secret.ciphertext, secret.nonce, secret.updated_at), (vec![4], vec![5; 12], 6));
    assert!(!format!("{:?}", store.get_code_host_webhook_secret(host.id).await.expect("get")).contains("[4]"), "Debug shows no ciphertext");
    assert!(matches!(store.set_code_host_webhook_secret(CodeHostId(999), &[1], &[1; 12], 7).await, Err(StoreError::NotFound { .. })));
    store.delete_code_host_webhook_secret(host.id).await.expect("delete");
    assert!(matches!(store.delete_code_host_webhook_secret(host.id).await, Err(StoreError::NotFound { .. })));
    store.set_code_host_webhook_secret(other_host.id, &[1], &[1; 12], 8).await.expect("set");
    store.delete_code_host(other_host.id).await.expect("delete host");

    // Published changesets of one repository, by its name in any case.
    let repository = |name: &str| NewRepository {
        code_host_id: host.id,
        name: name.to_owned(),
        clone_url: format!("https://github.com/{name}.git"),
        default_branch: None,
        archived: false,
        fork: false,
    };
    let app = store.upsert_repository(&repository("github.com/Acme/App"), 2).await.expect("repository");
    let web = store.upsert_repository(&repository("github.com/acme/web"), 2).await.expect("repository");
    let changeset = |repository_id, external_id: Option<&str>, publication_state: &str| NewChangeset {
        repository_id,
        batch_change_ids: Vec::new(),
        owned_by_batch_change_id: None,
        current_spec_id: None,
        external_id: external_id.map(str::to_owned),
        publication_state: publication_state.to_owned(),
        reconciler_state: String::from("completed"),
        metadata: json!({}),
    };
    let published = store.insert_changeset(&changeset(app.id, Some("7"), "PUBLISHED"), 3).await.expect("changeset");
    store.insert_changeset(&changeset(app.id, None, "UNPUBLISHED"), 3).await.expect("changeset");
    store.insert_changeset(&changeset(web.id, Some("1"), "PUBLISHED"), 3).await.expect("changeset");
    let found = store.published_changesets_in_repository(host.id, "github.com/acme/app", 10).await.expect("find");
    assert_eq!(found.iter().map(|changeset| changeset.id).collect::<Vec<_>>(), vec![published.id]);
    assert!(store.published_changesets_in_repository(CodeHostId(999), "github.com/acme/app", 10).await.expect("find").is_empty());
    assert!(store.published_changesets_in_repository(host.id, "github.com/acme/none", 10).await.expect("find").is_empty());
}

conformance_tests!(
    usernames_and_org_names_share_one_namespace,
    orgs_list_and_change_their_setting,
    session_tokens_expire,
    code_host_restrictions_are_replaced,
    code_host_credentials_prefer_the_users_own,
    tokens_are_looked_up_by_hash,
    secrets_keep_bytes_versions_and_an_access_log,
    repositories_upsert_and_paginate,
    batch_specs_resolution_and_changesets,
    step_cache_round_trips,
    audit_log_and_executors,
    webhook_secrets_and_published_changesets_by_repository,
);
