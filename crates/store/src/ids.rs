//! Typed row ids. Each is an `i64` primary key wrapped so a `JobId` cannot be passed where a
//! `WorkspaceId` is expected. They encode and decode as plain integers on both backends.

macro_rules! row_id {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {$(
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[sqlx(transparent)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }
    )*};
}

row_id!(
    /// A row of `users`.
    UserId,
    /// A row of `orgs`.
    OrgId,
    /// A row of `batch_specs`.
    BatchSpecId,
    /// A row of `workspaces`.
    WorkspaceId,
    /// A row of `execution_jobs`: one attempt at executing one workspace.
    JobId,
    /// A row of `resolution_jobs`.
    ResolutionJobId,
    /// A row of `repositories`.
    RepositoryId,
    /// A row of `code_hosts`.
    CodeHostId,
    /// A row of `changeset_specs`.
    ChangesetSpecId,
    /// A row of `batch_changes`.
    BatchChangeId,
    /// A row of `changesets`.
    ChangesetId,
    /// A row of `access_tokens`.
    TokenId,
    /// A row of `executor_tokens`.
    ExecutorTokenId,
    /// A row of `secrets`.
    SecretId,
    /// A row of `batch_spec_mount_files`.
    MountFileId,
    /// A row of `audit_log`.
    AuditEventId,
);
