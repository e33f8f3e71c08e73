//! Conformance tests for the web interface's stored templates, run against both backends.

mod common;

use flotilla_store::*;

async fn templates_are_unique_by_name_listed_and_deleted(store: Store) {
    let admin = store
        .create_user(&NewUser { username: "admin".into(), display_name: String::new(), email: String::new(), password_hash: None, site_admin: true }, 1)
        .await
        .expect("user");
    let created = store.create_batch_template("update-go", "Update Go", "name: a\n", admin.id, 5).await.expect("template");
    assert_eq!((created.name.as_str(), created.description.as_str(), created.created_by, created.created_at), ("update-go", "Update Go", Some(admin.id), 5));
    store.create_batch_template("add-license", "Add a license", "name: b\n", admin.id, 6).await.expect("second template");
    let taken = store.create_batch_template("update-go", "again", "name: c\n", admin.id, 7).await;
    assert!(matches!(taken, Err(StoreError::Conflict { .. })), "{taken:?}");
    let names: Vec<String> = store.list_batch_templates().await.expect("list").into_iter().map(|template| template.name).collect();
    assert_eq!(names, ["add-license", "update-go"]);
    assert!(store.delete_batch_template("update-go").await.expect("delete"));
    assert!(!store.delete_batch_template("update-go").await.expect("delete again"));
    assert_eq!(store.list_batch_templates().await.expect("list").len(), 1);
    assert!(store.processing_jobs_by_executor().await.expect("running jobs").is_empty());
}

conformance_tests!(templates_are_unique_by_name_listed_and_deleted);
