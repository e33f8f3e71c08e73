-- Flotilla's schema for SQLite. Keep in step with migrations/postgres/0001_initial.sql:
-- same tables, columns and indexes; only types and identity syntax differ.
-- Timestamps are i64 unix milliseconds; JSON is TEXT; binary data is BLOB.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    site_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at INTEGER NOT NULL
);

CREATE TABLE orgs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    members_can_administer_batch_changes BOOLEAN NOT NULL DEFAULT FALSE,
    created_at INTEGER NOT NULL
);

-- Usernames and org names share one namespace; this table is the single place that enforces it.
CREATE TABLE namespace_names (
    name_lower TEXT PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    org_id INTEGER REFERENCES orgs(id) ON DELETE CASCADE
);

CREATE TABLE org_members (
    org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user_idx ON org_members(user_id);

CREATE TABLE access_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('user', 'site-admin')),
    note TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX access_tokens_user_idx ON access_tokens(user_id, id);

CREATE TABLE executor_tokens (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE secrets (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    org_id INTEGER REFERENCES orgs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    nonce BLOB NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (user_id IS NULL OR org_id IS NULL)
);
CREATE UNIQUE INDEX secrets_scope_name_idx ON secrets(COALESCE(user_id, 0), COALESCE(org_id, 0), name);

CREATE TABLE secret_access_log (
    id INTEGER PRIMARY KEY,
    secret_id INTEGER NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
    user_id INTEGER,
    job_id INTEGER,
    accessed_at INTEGER NOT NULL
);
CREATE INDEX secret_access_log_secret_idx ON secret_access_log(secret_id, id);

CREATE TABLE code_hosts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('git-directory', 'git-urls', 'github', 'gitlab', 'gitea', 'bitbucket-server')),
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    credential_ciphertext BLOB,
    credential_nonce BLOB,
    restricted_to TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE repositories (
    id INTEGER PRIMARY KEY,
    code_host_id INTEGER NOT NULL REFERENCES code_hosts(id) ON DELETE CASCADE,
    name TEXT NOT NULL UNIQUE,
    clone_url TEXT NOT NULL,
    default_branch TEXT,
    head_commit TEXT,
    mirror_state TEXT NOT NULL DEFAULT 'pending' CHECK (mirror_state IN ('pending', 'cloning', 'ready', 'failed')),
    last_synced_at INTEGER,
    last_error TEXT,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    fork BOOLEAN NOT NULL DEFAULT FALSE,
    created_at INTEGER NOT NULL
);
CREATE INDEX repositories_code_host_idx ON repositories(code_host_id, name);

CREATE TABLE batch_changes (
    id INTEGER PRIMARY KEY,
    namespace_user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    namespace_org_id INTEGER REFERENCES orgs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    creator_user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    last_applier_user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    last_applied_at INTEGER,
    batch_spec_id INTEGER,
    closed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((namespace_user_id IS NULL) <> (namespace_org_id IS NULL))
);
CREATE UNIQUE INDEX batch_changes_namespace_name_idx
    ON batch_changes(COALESCE(namespace_user_id, 0), COALESCE(namespace_org_id, 0), name);

CREATE TABLE batch_specs (
    id INTEGER PRIMARY KEY,
    rand_id TEXT NOT NULL UNIQUE,
    namespace_user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    namespace_org_id INTEGER REFERENCES orgs(id) ON DELETE CASCADE,
    creator_user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    raw_spec TEXT NOT NULL,
    parsed_spec TEXT NOT NULL,
    created_from_raw BOOLEAN NOT NULL,
    allow_unsupported BOOLEAN NOT NULL DEFAULT FALSE,
    allow_ignored BOOLEAN NOT NULL DEFAULT FALSE,
    no_cache BOOLEAN NOT NULL DEFAULT FALSE,
    batch_change_id INTEGER REFERENCES batch_changes(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((namespace_user_id IS NULL) <> (namespace_org_id IS NULL))
);
CREATE INDEX batch_specs_namespace_user_idx ON batch_specs(namespace_user_id, id);
CREATE INDEX batch_specs_namespace_org_idx ON batch_specs(namespace_org_id, id);
CREATE INDEX batch_specs_batch_change_idx ON batch_specs(batch_change_id);

CREATE TABLE batch_spec_mount_files (
    id INTEGER PRIMARY KEY,
    batch_spec_id INTEGER NOT NULL REFERENCES batch_specs(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    content BLOB NOT NULL,
    UNIQUE (batch_spec_id, path)
);

CREATE TABLE resolution_jobs (
    id INTEGER PRIMARY KEY,
    batch_spec_id INTEGER NOT NULL UNIQUE REFERENCES batch_specs(id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'processing', 'completed', 'failed')),
    failure_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    queued_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    last_heartbeat_at INTEGER
);
CREATE INDEX resolution_jobs_queued_idx ON resolution_jobs(id) WHERE state = 'queued';
CREATE INDEX resolution_jobs_processing_idx ON resolution_jobs(last_heartbeat_at) WHERE state = 'processing';

CREATE TABLE workspaces (
    id INTEGER PRIMARY KEY,
    batch_spec_id INTEGER NOT NULL REFERENCES batch_specs(id) ON DELETE CASCADE,
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    branch TEXT NOT NULL,
    "commit" TEXT NOT NULL,
    path TEXT NOT NULL DEFAULT '',
    file_matches TEXT NOT NULL DEFAULT '[]',
    only_fetch_workspace BOOLEAN NOT NULL DEFAULT FALSE,
    ignored BOOLEAN NOT NULL DEFAULT FALSE,
    unsupported BOOLEAN NOT NULL DEFAULT FALSE,
    skipped BOOLEAN NOT NULL DEFAULT FALSE,
    cached_result_found BOOLEAN NOT NULL DEFAULT FALSE,
    step_cache_results TEXT NOT NULL DEFAULT '{}',
    changeset_spec_ids TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
);
CREATE INDEX workspaces_batch_spec_idx ON workspaces(batch_spec_id, id);
CREATE INDEX workspaces_repository_idx ON workspaces(repository_id);

CREATE TABLE execution_jobs (
    id INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL UNIQUE REFERENCES workspaces(id) ON DELETE CASCADE,
    batch_spec_id INTEGER NOT NULL REFERENCES batch_specs(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'processing', 'completed', 'failed', 'canceled')),
    cancel BOOLEAN NOT NULL DEFAULT FALSE,
    routing_key TEXT NOT NULL DEFAULT '',
    num_resets INTEGER NOT NULL DEFAULT 0,
    num_failures INTEGER NOT NULL DEFAULT 0,
    queued_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    last_heartbeat_at INTEGER,
    executor_name TEXT,
    failure_message TEXT,
    result TEXT,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- The dequeue probes "oldest queued job of user U": a partial index keeps it O(log n) and small.
CREATE INDEX execution_jobs_queue_idx ON execution_jobs(user_id, queued_at, id) WHERE state = 'queued';
-- Only routed jobs are indexed by key: an index covering routing_key = '' would tempt the planner
-- away from execution_jobs_queue_idx and make every dequeue scan all queued jobs.
CREATE INDEX execution_jobs_routing_idx ON execution_jobs(routing_key) WHERE state = 'queued' AND routing_key <> '';
CREATE INDEX execution_jobs_stalled_idx ON execution_jobs(last_heartbeat_at) WHERE state = 'processing';
CREATE INDEX execution_jobs_batch_spec_state_idx ON execution_jobs(batch_spec_id, state, workspace_id);

-- One row per user who ever had a job queued; the round-robin order is "smallest dequeue_sequence".
CREATE TABLE user_queue_state (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    dequeue_sequence INTEGER NOT NULL DEFAULT 0,
    last_dequeued_at INTEGER
);
CREATE INDEX user_queue_state_order_idx ON user_queue_state(dequeue_sequence, user_id);

CREATE TABLE execution_log_entries (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES execution_jobs(id) ON DELETE CASCADE,
    entry_index INTEGER NOT NULL,
    key TEXT NOT NULL,
    command TEXT NOT NULL DEFAULT '[]',
    started_at INTEGER NOT NULL,
    exit_code INTEGER,
    duration_ms INTEGER,
    output TEXT NOT NULL DEFAULT '',
    UNIQUE (job_id, entry_index)
);

CREATE TABLE job_tokens (
    job_id INTEGER PRIMARY KEY REFERENCES execution_jobs(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    repository_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE executors (
    name TEXT PRIMARY KEY,
    hostname TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    resources TEXT NOT NULL DEFAULT '{}',
    os TEXT NOT NULL DEFAULT '',
    architecture TEXT NOT NULL DEFAULT '',
    first_seen_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);

CREATE TABLE step_cache (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX step_cache_last_used_idx ON step_cache(last_used_at);

CREATE TABLE changeset_specs (
    id INTEGER PRIMARY KEY,
    rand_id TEXT NOT NULL UNIQUE,
    batch_spec_id INTEGER NOT NULL REFERENCES batch_specs(id) ON DELETE CASCADE,
    workspace_id INTEGER REFERENCES workspaces(id) ON DELETE SET NULL,
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('branch', 'existing')),
    external_id TEXT,
    base_ref TEXT,
    base_rev TEXT,
    head_ref TEXT,
    title TEXT,
    body TEXT,
    published TEXT,
    diff BLOB,
    commit_message TEXT,
    author_name TEXT,
    author_email TEXT,
    fork TEXT,
    diff_stat_added INTEGER NOT NULL DEFAULT 0,
    diff_stat_deleted INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX changeset_specs_batch_spec_idx ON changeset_specs(batch_spec_id, id);
CREATE INDEX changeset_specs_workspace_idx ON changeset_specs(workspace_id);

CREATE TABLE changesets (
    id INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    batch_change_ids TEXT NOT NULL DEFAULT '[]',
    owned_by_batch_change_id INTEGER REFERENCES batch_changes(id) ON DELETE SET NULL,
    current_spec_id INTEGER REFERENCES changeset_specs(id) ON DELETE SET NULL,
    previous_spec_id INTEGER REFERENCES changeset_specs(id) ON DELETE SET NULL,
    external_id TEXT,
    external_branch TEXT,
    external_url TEXT,
    external_state TEXT,
    review_state TEXT,
    check_state TEXT,
    publication_state TEXT NOT NULL DEFAULT 'UNPUBLISHED',
    ui_publication_state TEXT,
    reconciler_state TEXT NOT NULL DEFAULT 'queued',
    failure_message TEXT,
    num_failures INTEGER NOT NULL DEFAULT 0,
    process_after INTEGER,
    closing BOOLEAN NOT NULL DEFAULT FALSE,
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    detached_at INTEGER,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX changesets_repository_idx ON changesets(repository_id);

-- batch_change_ids is the record's JSON view; this table is what "changesets of batch change X" queries use.
CREATE TABLE changeset_batch_changes (
    changeset_id INTEGER NOT NULL REFERENCES changesets(id) ON DELETE CASCADE,
    batch_change_id INTEGER NOT NULL REFERENCES batch_changes(id) ON DELETE CASCADE,
    PRIMARY KEY (batch_change_id, changeset_id)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    actor_user_id INTEGER,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
