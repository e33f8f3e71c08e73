//! Conformance tests for the execution-job queue, run against SQLite and PostgreSQL.

mod common;

use std::collections::HashSet;

use flotilla_store::*;
use serde_json::json;

/// A user with a batch spec and `workspace_count` workspaces in one repository.
struct Fixture {
    user_id: UserId,
    batch_spec_id: BatchSpecId,
    workspace_ids: Vec<WorkspaceId>,
}

async fn code_host_and_repository(store: &Store) -> RepositoryId {
    let code_host = match store
        .list_code_hosts()
        .await
        .expect("listing code hosts")
        .into_iter()
        .next()
    {
        Some(code_host) => code_host,
        None => store
            .create_code_host(
                &NewCodeHost {
                    kind: CodeHostKind::GitDirectory,
                    name: String::from("local"),
                    url: String::from("/srv/git"),
                    config: json!({}),
                    credential_ciphertext: None,
                    credential_nonce: None,
                    credential_username: None,
                    restricted_to: None,
                },
                1,
            )
            .await
            .expect("creating a code host"),
    };
    store
        .upsert_repository(
            &NewRepository {
                code_host_id: code_host.id,
                name: String::from("local/example/repo"),
                clone_url: String::from("/srv/git/example/repo"),
                default_branch: Some(String::from("main")),
                archived: false,
                fork: false,
            },
            1,
        )
        .await
        .expect("upserting a repository")
        .id
}

async fn fixture(store: &Store, username: &str, workspace_count: usize) -> Fixture {
    let user = store
        .create_user(
            &NewUser {
                username: username.to_owned(),
                display_name: username.to_owned(),
                email: format!("{username}@example.com"),
                password_hash: None,
                site_admin: false,
            },
            1,
        )
        .await
        .expect("creating a user");
    let repository_id = code_host_and_repository(store).await;
    let batch_spec = store
        .create_batch_spec(
            &NewBatchSpec {
                rand_id: format!("spec-{username}"),
                namespace: Namespace::User(user.id),
                creator_user_id: user.id,
                name: String::from("hello"),
                raw_spec: String::from("name: hello"),
                parsed_spec: json!({"name": "hello"}),
                created_from_raw: true,
                allow_unsupported: false,
                allow_ignored: false,
                no_cache: false,
                batch_change_id: None,
            },
            1,
        )
        .await
        .expect("creating a batch spec");
    let workspaces: Vec<NewWorkspace> = (0..workspace_count)
        .map(|index| NewWorkspace {
            batch_spec_id: batch_spec.id,
            repository_id,
            branch: String::from("main"),
            commit: String::from("0123456789abcdef0123456789abcdef01234567"),
            path: format!("dir{index}"),
            file_matches: vec![],
            only_fetch_workspace: false,
            ignored: false,
            unsupported: false,
            skipped: false,
            cached_result_found: false,
            step_cache_results: json!({}),
        })
        .collect();
    let workspace_ids = store
        .insert_workspaces(&workspaces, 1)
        .await
        .expect("inserting workspaces");
    Fixture {
        user_id: user.id,
        batch_spec_id: batch_spec.id,
        workspace_ids,
    }
}

fn jobs_for(fixture: &Fixture, routing_key: &str) -> Vec<NewExecutionJob> {
    fixture
        .workspace_ids
        .iter()
        .map(|workspace_id| NewExecutionJob {
            workspace_id: *workspace_id,
            batch_spec_id: fixture.batch_spec_id,
            user_id: fixture.user_id,
            routing_key: routing_key.to_owned(),
            payload: json!({"workspace": workspace_id.0}),
        })
        .collect()
}

fn token(name: &str) -> NewJobToken {
    NewJobToken {
        token_hash: name.to_owned(),
        expires_at_ms: 1_000_000_000,
    }
}

async fn dequeue(
    store: &Store,
    executor: &str,
    routing: &RoutingFilter,
    now_ms: i64,
) -> Option<DequeuedJob> {
    static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let token_number = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    store
        .dequeue_execution_job(
            executor,
            routing,
            &token(&format!("token-{token_number}")),
            now_ms,
        )
        .await
        .expect("dequeuing")
}

async fn concurrent_dequeue_hands_each_job_out_once(store: Store) {
    let mut all_jobs = Vec::new();
    let mut fixtures = Vec::new();
    for (username, count) in [("alice", 200), ("bob", 200), ("carol", 100)] {
        let fixture = fixture(&store, username, count).await;
        all_jobs.extend(jobs_for(&fixture, ""));
        fixtures.push(fixture);
    }
    let enqueued = store
        .enqueue_execution_jobs(&all_jobs, 10)
        .await
        .expect("enqueuing");
    assert_eq!(enqueued.len(), 500);
    assert_eq!(store.queue_depth().await.expect("queue depth"), 500);

    let mut tasks = Vec::new();
    for executor_number in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let executor = format!("executor-{executor_number}");
            let mut taken = Vec::new();
            while let Some(dequeued) =
                dequeue(&store, &executor, &RoutingFilter::unrouted_only(), 20).await
            {
                assert_eq!(
                    dequeued.job.executor_name.as_deref(),
                    Some(executor.as_str())
                );
                taken.push(dequeued.job.id);
            }
            taken
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        for job_id in task.await.expect("dequeuer task") {
            assert!(seen.insert(job_id), "job {job_id} was handed out twice");
            total += 1;
        }
    }
    assert_eq!(total, 500);
    assert_eq!(store.queue_depth().await.expect("queue depth"), 0);
    assert_eq!(store.jobs_by_state().await.expect("counts").processing, 500);
}

async fn dequeue_is_round_robin_across_users(store: Store) {
    let alice = fixture(&store, "alice", 5).await;
    let bob = fixture(&store, "bob", 3).await;
    let carol = fixture(&store, "carol", 2).await;
    // Alice's jobs are all older, yet she must not starve Bob and Carol.
    store
        .enqueue_execution_jobs(&jobs_for(&alice, ""), 100)
        .await
        .expect("enqueuing");
    store
        .enqueue_execution_jobs(&jobs_for(&bob, ""), 200)
        .await
        .expect("enqueuing");
    store
        .enqueue_execution_jobs(&jobs_for(&carol, ""), 300)
        .await
        .expect("enqueuing");
    let mut order = Vec::new();
    while let Some(dequeued) =
        dequeue(&store, "executor", &RoutingFilter::unrouted_only(), 1000).await
    {
        order.push((dequeued.job.user_id, dequeued.job.workspace_id));
    }
    let expected = vec![
        (alice.user_id, alice.workspace_ids[0]),
        (bob.user_id, bob.workspace_ids[0]),
        (carol.user_id, carol.workspace_ids[0]),
        (alice.user_id, alice.workspace_ids[1]),
        (bob.user_id, bob.workspace_ids[1]),
        (carol.user_id, carol.workspace_ids[1]),
        (alice.user_id, alice.workspace_ids[2]),
        (bob.user_id, bob.workspace_ids[2]),
        (alice.user_id, alice.workspace_ids[3]),
        (alice.user_id, alice.workspace_ids[4]),
    ];
    assert_eq!(order, expected);
}

async fn dequeue_respects_routing_keys(store: Store) {
    let user = fixture(&store, "alice", 3).await;
    let mut jobs = jobs_for(&user, "");
    jobs[1].routing_key = String::from("gpu");
    jobs[2].routing_key = String::from("arm64");
    let job_ids = store
        .enqueue_execution_jobs(&jobs, 10)
        .await
        .expect("enqueuing");
    assert_eq!(
        store.queued_routing_keys().await.expect("keys"),
        vec!["arm64", "gpu"]
    );

    let unrouted = dequeue(&store, "plain", &RoutingFilter::unrouted_only(), 20)
        .await
        .expect("a job");
    assert_eq!(unrouted.job.id, job_ids[0]);
    assert!(
        dequeue(&store, "plain", &RoutingFilter::unrouted_only(), 20)
            .await
            .is_none()
    );

    let gpu = dequeue(&store, "gpu-box", &RoutingFilter::with_keys(["gpu"]), 20)
        .await
        .expect("a job");
    assert_eq!(gpu.job.id, job_ids[1]);
    assert!(
        dequeue(&store, "gpu-box", &RoutingFilter::with_keys(["gpu"]), 20)
            .await
            .is_none()
    );
    assert_eq!(
        store.queued_routing_keys().await.expect("keys"),
        vec!["arm64"]
    );
    let arm = dequeue(
        &store,
        "arm-box",
        &RoutingFilter::with_keys(["arm64", "gpu"]),
        20,
    )
    .await
    .expect("a job");
    assert_eq!(arm.job.id, job_ids[2]);
}

async fn heartbeat_reports_known_and_canceled_jobs(store: Store) {
    let user = fixture(&store, "alice", 3).await;
    store
        .enqueue_execution_jobs(&jobs_for(&user, ""), 10)
        .await
        .expect("enqueuing");
    let first = dequeue(&store, "executor-a", &RoutingFilter::unrouted_only(), 20)
        .await
        .expect("job")
        .job
        .id;
    let second = dequeue(&store, "executor-a", &RoutingFilter::unrouted_only(), 20)
        .await
        .expect("job")
        .job
        .id;
    let other = dequeue(&store, "executor-b", &RoutingFilter::unrouted_only(), 20)
        .await
        .expect("job")
        .job
        .id;

    let outcome = store
        .heartbeat("executor-a", &[first, second, other, JobId(999_999)], 30)
        .await
        .expect("heartbeat");
    assert_eq!(outcome.known, vec![first, second]);
    assert!(outcome.cancel.is_empty());
    assert_eq!(
        store
            .get_execution_job(first)
            .await
            .expect("job")
            .last_heartbeat_at,
        Some(30)
    );
    assert_eq!(
        store
            .get_execution_job(other)
            .await
            .expect("job")
            .last_heartbeat_at,
        Some(20)
    );

    let cancel = store
        .cancel_batch_spec_jobs(user.batch_spec_id, 40)
        .await
        .expect("cancel");
    assert_eq!(
        cancel,
        CancelOutcome {
            canceled: 0,
            canceling: 3
        }
    );
    let outcome = store
        .heartbeat("executor-a", &[first, second], 50)
        .await
        .expect("heartbeat");
    assert_eq!(outcome.cancel, vec![first, second]);
    assert!(
        store
            .heartbeat("executor-a", &[], 50)
            .await
            .expect("heartbeat")
            .known
            .is_empty()
    );
}

async fn stalled_jobs_are_requeued_then_failed(store: Store) {
    let user = fixture(&store, "alice", 2).await;
    let job_ids = store
        .enqueue_execution_jobs(&jobs_for(&user, ""), 0)
        .await
        .expect("enqueuing");
    let routing = RoutingFilter::unrouted_only();
    let stalled = dequeue(&store, "dies", &routing, 100)
        .await
        .expect("job")
        .job
        .id;
    let healthy = dequeue(&store, "lives", &routing, 100)
        .await
        .expect("job")
        .job
        .id;
    assert_eq!(stalled, job_ids[0]);

    for reset in 1..=2_i64 {
        let now = reset * 1000;
        store
            .heartbeat("lives", &[healthy], now)
            .await
            .expect("heartbeat");
        let outcome = store
            .requeue_stalled_jobs(now - 500, 2, now)
            .await
            .expect("resetter");
        assert_eq!(outcome.requeued, vec![stalled]);
        assert!(outcome.failed.is_empty());
        let job = store.get_execution_job(stalled).await.expect("job");
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.num_resets, reset);
        assert_eq!(job.queued_at, now);
        assert_eq!(job.executor_name, None);
        // The executor that lost the job can no longer report on it.
        let late = store
            .complete_job(stalled, "dies", &json!({}), now)
            .await
            .expect("completion");
        assert_eq!(
            late,
            CompletionOutcome::Ignored {
                current_state: Some(JobState::Queued)
            }
        );
        let again = dequeue(&store, "dies", &routing, now + 1)
            .await
            .expect("job");
        assert_eq!(again.job.id, stalled);
    }
    store
        .heartbeat("lives", &[healthy], 3000)
        .await
        .expect("heartbeat");
    let outcome = store
        .requeue_stalled_jobs(2500, 2, 3000)
        .await
        .expect("resetter");
    assert_eq!(outcome.failed, vec![stalled]);
    assert!(outcome.requeued.is_empty());
    let job = store.get_execution_job(stalled).await.expect("job");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.failure_message.as_deref(),
        Some(too_many_resets_message(2).as_str())
    );
    assert_eq!(
        store.get_execution_job(healthy).await.expect("job").state,
        JobState::Processing
    );
}

async fn completion_applies_once_and_only_for_the_owner(store: Store) {
    let user = fixture(&store, "alice", 2).await;
    store
        .enqueue_execution_jobs(&jobs_for(&user, ""), 0)
        .await
        .expect("enqueuing");
    let dequeued = store
        .dequeue_execution_job(
            "owner",
            &RoutingFilter::unrouted_only(),
            &token("secret-hash"),
            10,
        )
        .await
        .expect("dequeue")
        .expect("a job");
    let job_id = dequeued.job.id;
    let grant = store
        .lookup_job_token("secret-hash", 20)
        .await
        .expect("lookup")
        .expect("valid token");
    assert_eq!(
        grant,
        JobTokenGrant {
            job_id,
            repository_id: dequeued.repository_id
        }
    );
    assert!(
        store
            .lookup_job_token("secret-hash", 2_000_000_000)
            .await
            .expect("lookup")
            .is_none(),
        "expired"
    );

    let intruder = store
        .complete_job(job_id, "intruder", &json!({"x": 1}), 30)
        .await
        .expect("completion");
    assert_eq!(
        intruder,
        CompletionOutcome::Ignored {
            current_state: Some(JobState::Processing)
        }
    );
    let failed_by_intruder = store
        .fail_job(job_id, "intruder", "no", 30)
        .await
        .expect("failure");
    assert_eq!(
        failed_by_intruder,
        CompletionOutcome::Ignored {
            current_state: Some(JobState::Processing)
        }
    );

    let first = store
        .complete_job(job_id, "owner", &json!({"diff": "a"}), 40)
        .await
        .expect("completion");
    assert_eq!(
        first,
        CompletionOutcome::Applied {
            final_state: JobState::Completed
        }
    );
    let second = store
        .complete_job(job_id, "owner", &json!({"diff": "b"}), 50)
        .await
        .expect("completion");
    assert_eq!(
        second,
        CompletionOutcome::Ignored {
            current_state: Some(JobState::Completed)
        }
    );
    let late_failure = store
        .fail_job(job_id, "owner", "boom", 50)
        .await
        .expect("failure");
    assert_eq!(
        late_failure,
        CompletionOutcome::Ignored {
            current_state: Some(JobState::Completed)
        }
    );

    let job = store.get_execution_job(job_id).await.expect("job");
    assert_eq!(job.result, Some(json!({"diff": "a"})));
    assert_eq!(job.finished_at, Some(40));
    assert!(
        store
            .lookup_job_token("secret-hash", 60)
            .await
            .expect("lookup")
            .is_none(),
        "token deleted"
    );
    let missing = store
        .complete_job(JobId(424_242), "owner", &json!({}), 60)
        .await
        .expect("completion");
    assert_eq!(
        missing,
        CompletionOutcome::Ignored {
            current_state: None
        }
    );

    let other = dequeue(&store, "owner", &RoutingFilter::unrouted_only(), 70)
        .await
        .expect("job")
        .job
        .id;
    let failure = store
        .fail_job(other, "owner", "step 1 failed", 80)
        .await
        .expect("failure");
    assert_eq!(
        failure,
        CompletionOutcome::Applied {
            final_state: JobState::Failed
        }
    );
    let job = store.get_execution_job(other).await.expect("job");
    assert_eq!(
        (job.num_failures, job.failure_message.as_deref()),
        (1, Some("step 1 failed"))
    );
}

async fn cancel_cancels_queued_now_and_processing_via_the_executor(store: Store) {
    let user = fixture(&store, "alice", 3).await;
    let job_ids = store
        .enqueue_execution_jobs(&jobs_for(&user, ""), 0)
        .await
        .expect("enqueuing");
    let running = dequeue(&store, "executor", &RoutingFilter::unrouted_only(), 10)
        .await
        .expect("job")
        .job
        .id;
    let outcome = store
        .cancel_batch_spec_jobs(user.batch_spec_id, 20)
        .await
        .expect("cancel");
    assert_eq!(
        outcome,
        CancelOutcome {
            canceled: 2,
            canceling: 1
        }
    );
    assert!(
        dequeue(&store, "executor", &RoutingFilter::unrouted_only(), 30)
            .await
            .is_none()
    );
    let counts = store
        .job_counts_by_state(user.batch_spec_id)
        .await
        .expect("counts");
    assert_eq!(
        (counts.canceled, counts.canceling, counts.processing),
        (2, 1, 0)
    );
    assert_eq!(
        store
            .get_execution_job(job_ids[1])
            .await
            .expect("job")
            .finished_at,
        Some(20)
    );

    let outcome = store
        .fail_job(running, "executor", "canceled by user", 40)
        .await
        .expect("failure");
    assert_eq!(
        outcome,
        CompletionOutcome::Applied {
            final_state: JobState::Canceled
        }
    );
    let job = store.get_execution_job(running).await.expect("job");
    assert_eq!(job.num_failures, 0);
    assert_eq!(
        store
            .job_counts_by_state(user.batch_spec_id)
            .await
            .expect("counts")
            .canceled,
        3
    );
}

async fn log_entries_belong_to_the_owning_executor(store: Store) {
    let user = fixture(&store, "alice", 1).await;
    store
        .enqueue_execution_jobs(&jobs_for(&user, ""), 0)
        .await
        .expect("enqueuing");
    let job_id = dequeue(&store, "owner", &RoutingFilter::unrouted_only(), 10)
        .await
        .expect("job")
        .job
        .id;
    let entry = NewLogEntry {
        key: String::from("setup.git.init"),
        command: vec![String::from("git"), String::from("init")],
        started_at: 11,
        exit_code: None,
        duration_ms: None,
        output: String::from("stdout: Initialized"),
    };
    assert_eq!(
        store
            .append_log_entry(job_id, "owner", &entry)
            .await
            .expect("append"),
        0
    );
    assert_eq!(
        store
            .append_log_entry(job_id, "owner", &entry)
            .await
            .expect("append"),
        1
    );
    assert!(matches!(
        store.append_log_entry(job_id, "intruder", &entry).await,
        Err(StoreError::InvalidState { .. })
    ));
    assert!(matches!(
        store
            .append_log_entry(JobId(777_777), "owner", &entry)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .update_log_entry(
            job_id,
            "owner",
            0,
            "stdout: Initialized\nstdout: done",
            Some(0),
            Some(12),
        )
        .await
        .expect("update");
    assert!(matches!(
        store
            .update_log_entry(job_id, "intruder", 0, "x", None, None)
            .await,
        Err(StoreError::InvalidState { .. })
    ));
    assert!(matches!(
        store
            .update_log_entry(job_id, "owner", 5, "x", None, None)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let entries = store.list_log_entries(job_id).await.expect("list");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].exit_code, Some(0));
    assert_eq!(entries[0].command, json!(["git", "init"]));
    let tail = store
        .list_log_entries_since(job_id, 0, "stdout: Initialized".len() as i64)
        .await
        .expect("list");
    assert_eq!(tail[0].output, "\nstdout: done");
    assert_eq!(tail.len(), 2);

    store
        .complete_job(job_id, "owner", &json!({}), 20)
        .await
        .expect("completion");
    assert!(matches!(
        store.append_log_entry(job_id, "owner", &entry).await,
        Err(StoreError::InvalidState { .. })
    ));
}

async fn retry_creates_fresh_attempts(store: Store) {
    let user = fixture(&store, "alice", 3).await;
    let job_ids = store
        .enqueue_execution_jobs(&jobs_for(&user, "gpu"), 0)
        .await
        .expect("enqueuing");
    let routing = RoutingFilter::with_keys(["gpu"]);
    for _ in 0..3 {
        let job = dequeue(&store, "executor", &routing, 10)
            .await
            .expect("job")
            .job;
        if job.id == job_ids[2] {
            store
                .complete_job(job.id, "executor", &json!({}), 20)
                .await
                .expect("complete");
        } else {
            store
                .fail_job(job.id, "executor", "boom", 20)
                .await
                .expect("fail");
        }
    }
    let retried = store
        .retry_batch_spec_jobs(user.batch_spec_id, false, 30)
        .await
        .expect("retry");
    assert_eq!(retried.len(), 2);
    assert!(retried.iter().all(|job_id| !job_ids.contains(job_id)));
    let counts = store
        .job_counts_by_state(user.batch_spec_id)
        .await
        .expect("counts");
    assert_eq!((counts.queued, counts.completed, counts.failed), (2, 1, 0));
    let job = store.get_execution_job(retried[0]).await.expect("job");
    assert_eq!(
        (job.routing_key.as_str(), job.queued_at, job.state),
        ("gpu", 30, JobState::Queued)
    );
    assert!(matches!(
        store.get_execution_job(job_ids[0]).await,
        Err(StoreError::NotFound { .. })
    ));

    let retried = store
        .retry_workspace_jobs(user.batch_spec_id, &user.workspace_ids, 40)
        .await
        .expect("retry");
    assert_eq!(retried.len(), 1, "only the completed one is terminal");
    assert_eq!(
        store
            .job_counts_by_state(user.batch_spec_id)
            .await
            .expect("counts")
            .queued,
        3
    );
}

async fn workspace_listing_paginates(store: Store) {
    let user = fixture(&store, "alice", 25).await;
    store
        .enqueue_execution_jobs(&jobs_for(&user, "")[..20], 0)
        .await
        .expect("enqueuing");
    for _ in 0..5 {
        let job = dequeue(&store, "executor", &RoutingFilter::unrouted_only(), 10)
            .await
            .expect("job")
            .job;
        store
            .fail_job(job.id, "executor", "boom", 20)
            .await
            .expect("fail");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_workspaces_with_jobs(user.batch_spec_id, WorkspaceJobFilter::All, after, 7)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.workspace_id);
        seen.extend(
            page.iter()
                .map(|row| (row.workspace_id, row.job.as_ref().map(|job| job.state))),
        );
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(
        seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        user.workspace_ids
    );
    assert_eq!(seen.iter().filter(|(_, state)| state.is_none()).count(), 5);

    let failed_first_page = store
        .list_workspaces_with_jobs(
            user.batch_spec_id,
            WorkspaceJobFilter::JobState(JobState::Failed),
            None,
            3,
        )
        .await
        .expect("page");
    assert_eq!(failed_first_page.len(), 3);
    let failed_rest = store
        .list_workspaces_with_jobs(
            user.batch_spec_id,
            WorkspaceJobFilter::JobState(JobState::Failed),
            Some(failed_first_page[2].workspace_id),
            10,
        )
        .await
        .expect("page");
    assert_eq!(failed_rest.len(), 2);
    assert!(
        failed_rest
            .iter()
            .all(|row| row.job.as_ref().map(|job| job.state) == Some(JobState::Failed))
    );
}

/// Not a timing assertion: prints the dequeue+complete rate so regressions are visible.
async fn dequeue_complete_throughput(store: Store) {
    let job_count = 2000;
    let user = fixture(&store, "alice", job_count).await;
    let other = fixture(&store, "bob", 100).await;
    store
        .enqueue_execution_jobs(&jobs_for(&user, ""), 0)
        .await
        .expect("enqueuing");
    store
        .enqueue_execution_jobs(&jobs_for(&other, ""), 0)
        .await
        .expect("enqueuing");
    let started = std::time::Instant::now();
    let mut pairs = 0;
    while let Some(dequeued) =
        dequeue(&store, "executor", &RoutingFilter::unrouted_only(), 10).await
    {
        let outcome = store
            .complete_job(dequeued.job.id, "executor", &json!({}), 20)
            .await
            .expect("complete");
        assert!(matches!(outcome, CompletionOutcome::Applied { .. }));
        pairs += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(pairs, job_count + 100);
    eprintln!(
        "{:?}: {pairs} dequeue+complete pairs in {elapsed:?} = {:.0} pairs/s",
        store.dialect(),
        f64::from(pairs as u32) / elapsed.as_secs_f64()
    );
}

async fn infrastructure_failures_are_retried_a_bounded_number_of_times(store: Store) {
    let user = fixture(&store, "infra", 1).await;
    store.enqueue_execution_jobs(&jobs_for(&user, ""), 0).await.expect("enqueuing");
    let mut outcomes = Vec::new();
    for attempt in 0..3 {
        let hash = format!("hash-{attempt}");
        let dequeued = store
            .dequeue_execution_job("flaky", &RoutingFilter::unrouted_only(), &token(&hash), 10 + attempt)
            .await
            .expect("dequeue")
            .expect("the job is queued again after each retryable failure");
        let refused = store
            .requeue_after_infrastructure_failure(dequeued.job.id, "someone-else", "fetch failed", 3, 20 + attempt)
            .await
            .expect("report");
        assert!(matches!(refused, CompletionOutcome::Ignored { .. }), "only the owner's report counts");
        let outcome = store
            .requeue_after_infrastructure_failure(dequeued.job.id, "flaky", "fetch failed", 3, 30 + attempt)
            .await
            .expect("report");
        outcomes.push(outcome);
        if matches!(outcome, CompletionOutcome::Ignored { .. }) {
            let failed = store.fail_job(dequeued.job.id, "flaky", "fetch failed three times", 50).await.expect("fail");
            assert_eq!(failed, CompletionOutcome::Applied { final_state: JobState::Failed });
        }
        assert!(store.lookup_job_token(&hash, 40).await.expect("lookup").is_none(), "the attempt's token dies");
    }
    assert_eq!(
        outcomes,
        vec![
            CompletionOutcome::Applied { final_state: JobState::Queued },
            CompletionOutcome::Applied { final_state: JobState::Queued },
            CompletionOutcome::Ignored { current_state: Some(JobState::Processing) },
        ]
    );
}

/// A resolution interrupted by a crash is redone from nothing: what it wrote goes, in one
/// transaction, so no workspace, job or changeset spec appears twice.
async fn discarding_a_resolutions_output_removes_its_workspaces_and_jobs(store: Store) {
    let resolved = fixture(&store, "resolver", 3).await;
    store.enqueue_execution_jobs(&jobs_for(&resolved, "")[..2], 0).await.expect("enqueuing");
    let other = fixture(&store, "bystander", 2).await;
    store.enqueue_execution_jobs(&jobs_for(&other, ""), 0).await.expect("enqueuing");

    assert_eq!(store.discard_resolution_output(resolved.batch_spec_id).await.expect("discarding"), 3);
    assert_eq!(store.count_workspaces(resolved.batch_spec_id).await.expect("count"), 0);
    assert_eq!(store.discard_resolution_output(resolved.batch_spec_id).await.expect("discarding again"), 0);
    assert_eq!(store.count_workspaces(other.batch_spec_id).await.expect("count"), 2, "other batch specs keep theirs");
    let dequeued = dequeue(&store, "exec", &RoutingFilter::unrouted_only(), 10).await.expect("the other spec's job is still queued");
    assert_eq!(dequeued.job.batch_spec_id, other.batch_spec_id, "only the other spec's jobs are left");
}

/// A completion's changeset specs replace an earlier report's, and only the job's owner may
/// store them: a workspace never has two sets, a crash before completion loses none, and a
/// job that fails in the end leaves none.
async fn a_workspaces_changeset_specs_are_replaced_only_by_the_jobs_owner(store: Store) {
    let fixture = fixture(&store, "publisher", 1).await;
    store.enqueue_execution_jobs(&jobs_for(&fixture, ""), 0).await.expect("enqueuing");
    let dequeued = dequeue(&store, "owner", &RoutingFilter::unrouted_only(), 10).await.expect("a job");
    let workspace_id = fixture.workspace_ids[0];
    let spec = |title: &str| NewChangesetSpec {
        rand_id: format!("spec-{title}"),
        batch_spec_id: fixture.batch_spec_id,
        workspace_id: Some(workspace_id),
        repository_id: dequeued.repository_id,
        kind: ChangesetSpecKind::Branch,
        external_id: None,
        base_ref: Some("main".to_owned()),
        base_rev: None,
        head_ref: Some("batch/x".to_owned()),
        title: Some(title.to_owned()),
        body: None,
        published: None,
        diff: None,
        commit_message: None,
        author_name: None,
        author_email: None,
        fork: None,
        diff_stat_added: 0,
        diff_stat_deleted: 0,
    };
    let replace = |executor: &'static str, title: &'static str| {
        let store = store.clone();
        let specs = vec![spec(title)];
        async move { store.replace_workspace_changeset_specs(dequeued.job.id, executor, workspace_id, &specs, 20).await.expect("storing specs") }
    };
    assert!(replace("owner", "first report").await);
    assert!(replace("owner", "second report").await, "a report repeated after a crash replaces the first");
    assert!(!replace("someone-else", "intruder").await, "only the job's owner stores specs");
    let titles: Vec<Option<String>> =
        store.list_changeset_specs(fixture.batch_spec_id, None, 10).await.expect("listing").into_iter().map(|stored| stored.title).collect();
    assert_eq!(titles, vec![Some("second report".to_owned())]);

    // The server died before the job completed, and the job then failed: it keeps no specs.
    let failed = store.fail_job(dequeued.job.id, "owner", "the step failed", 30).await.expect("failing");
    assert_eq!(failed, CompletionOutcome::Applied { final_state: JobState::Failed });
    assert!(store.list_changeset_specs(fixture.batch_spec_id, None, 10).await.expect("listing").is_empty(), "a failed workspace has no changeset specs");
}

/// One process at a time leads a duty (the rollout scheduler, the changeset sync): on
/// PostgreSQL a second try fails while the first holds it, and succeeds once the holder's
/// connection is gone (its process died); SQLite has one server, which always leads.
async fn a_duty_is_led_by_one_holder_at_a_time(store: Store) {
    let mut first = store.try_lead("rollout").await.expect("trying").expect("the first try leads");
    assert!(first.still_held().await);
    let other_duty = store.try_lead("changeset-sync").await.expect("trying");
    assert!(other_duty.is_some(), "each duty has its own leader");
    if store.dialect() == Dialect::Sqlite {
        return;
    }
    assert!(store.try_lead("rollout").await.expect("trying").is_none(), "a led duty is not led twice");
    drop(first);
    let mut taken = None;
    for _ in 0..50 {
        taken = store.try_lead("rollout").await.expect("trying");
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(taken.is_some(), "the duty is taken over once its leader's connection closed");
}

conformance_tests!(
    a_duty_is_led_by_one_holder_at_a_time,
    a_workspaces_changeset_specs_are_replaced_only_by_the_jobs_owner,
    discarding_a_resolutions_output_removes_its_workspaces_and_jobs,
    infrastructure_failures_are_retried_a_bounded_number_of_times,
    concurrent_dequeue_hands_each_job_out_once,
    dequeue_is_round_robin_across_users,
    dequeue_respects_routing_keys,
    heartbeat_reports_known_and_canceled_jobs,
    stalled_jobs_are_requeued_then_failed,
    completion_applies_once_and_only_for_the_owner,
    cancel_cancels_queued_now_and_processing_via_the_executor,
    log_entries_belong_to_the_owning_executor,
    retry_creates_fresh_attempts,
    workspace_listing_paginates,
    dequeue_complete_throughput,
);
