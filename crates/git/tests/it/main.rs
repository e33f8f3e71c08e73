//! Integration tests for flotilla-git: real git processes on repositories built in temporary
//! directories by [`fixture`], and a tiny smart-HTTP server ([`http_server`]) for fetches.

mod changed_files;
mod commit_push;
mod discovery;
mod fixture;
mod http_server;
mod mirror;
mod names;
mod smart_http;
mod tree;
mod workspace;
