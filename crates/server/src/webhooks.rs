//! Outgoing webhooks: the server tells other systems (chat, dashboards) when a batch change is
//! applied or closed and when a changeset is published or fails, as Sourcegraph's outgoing
//! webhooks do.
//!
//! Each event is a JSON POST to every configured URL, signed when a secret is configured:
//! `X-Flotilla-Signature: sha256=<hex HMAC-SHA256 of the body>` (GitHub's scheme), so a
//! receiver can check it came from this server. Deliveries never hold up the work that caused
//! them: each is sent from its own task, retried three times with growing pauses, and a
//! receiver that stays down is logged, not fatal.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::SharedState;

/// One event, as receivers get it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `batch_change.apply`, `batch_change.close`, `batch_change.delete`, `changeset.publish`,
    /// `changeset.error`.
    pub event: String,
    pub batch_change: Option<String>,
    pub repository: Option<String>,
    pub branch: Option<String>,
    pub message: Option<String>,
    /// Milliseconds since the epoch.
    pub at: i64,
}

/// Where events go.
#[derive(Clone, Debug, Default)]
pub struct WebhookConfig {
    pub urls: Vec<String>,
    /// Signs the bodies when set.
    pub secret: Option<String>,
}

/// Sends `event` to every configured receiver in the background.
pub fn emit(state: &SharedState, event: Event) {
    let config = &state.config.webhooks;
    if config.urls.is_empty() {
        return;
    }
    let body = match serde_json::to_vec(&event) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "a webhook event could not be encoded");
            return;
        }
    };
    let signature = config.secret.as_deref().map(|secret| format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &body))));
    for url in config.urls.clone() {
        let (body, signature, name) = (body.clone(), signature.clone(), event.event.clone());
        tokio::spawn(async move { deliver(&url, &name, body, signature).await });
    }
}

async fn deliver(url: &str, event: &str, body: Vec<u8>, signature: Option<String>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "no HTTP client for webhooks");
            return;
        }
    };
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=3 {
        let mut request = client.post(url).header("Content-Type", "application/json").header("X-Flotilla-Event", event).body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("X-Flotilla-Signature", signature);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => tracing::warn!(webhook.url = url, status = response.status().as_u16(), attempt, "a webhook receiver refused an event"),
            Err(error) => tracing::warn!(webhook.url = url, %error, attempt, "a webhook receiver is unreachable"),
        }
        tokio::time::sleep(pause).await;
        pause *= 4;
    }
    tracing::error!(webhook.url = url, event, "gave up delivering a webhook event after 3 attempts");
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block_key.map(|key_byte| key_byte ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let digest = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(digest), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block.
        let digest = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(digest), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }
}
