//! Tokens and encryption at rest.
//!
//! Access, executor and job tokens are 32 random bytes with a recognisable prefix (so secret
//! scanners can find leaked ones), shown once and stored only as SHA-256 hashes, which can be
//! indexed (a slow salted hash adds nothing for 256-bit random secrets). Executor secrets and
//! code host credentials are encrypted with ChaCha20-Poly1305 under the server's key; the
//! nonce is stored beside each ciphertext.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// What a token is for; the prefix makes leaked tokens recognisable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    User,
    Executor,
    Job,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::User => "flt_u_",
            TokenKind::Executor => "flt_e_",
            TokenKind::Job => "flt_j_",
        }
    }
}

/// A new random token of the given kind.
pub fn generate_token(kind: TokenKind) -> String {
    format!("{}{}", kind.prefix(), hex::encode(random_bytes::<32>()))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes
}

/// The server's encryption key for secrets at rest.
#[derive(Clone)]
pub struct SecretKey(Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretKey([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the secret key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("a stored secret could not be decrypted: the server's secret key changed, or the data is corrupt")]
    Decrypt,
}

impl SecretKey {
    pub fn generate() -> SecretKey {
        SecretKey(Key::from(random_bytes::<32>()))
    }

    pub fn from_hex(text: &str) -> Result<SecretKey, CryptoError> {
        let bytes = hex::decode(text.trim()).map_err(|_| CryptoError::BadKey)?;
        let array: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(SecretKey(Key::from(array)))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(<[u8; 32]>::from(self.0))
    }

    /// Encrypts a value; returns (ciphertext, nonce).
    pub fn encrypt(&self, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let nonce_bytes = random_bytes::<12>();
        let cipher = ChaCha20Poly1305::new(&self.0);
        let ciphertext = cipher
            .encrypt(&Nonce::from(nonce_bytes), plaintext)
            .expect("encryption with a valid key and nonce cannot fail");
        (ciphertext, nonce_bytes.to_vec())
    }

    pub fn decrypt(&self, ciphertext: &[u8], nonce: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
        ChaCha20Poly1305::new(&self.0).decrypt(&Nonce::from(nonce), ciphertext).map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let first = generate_token(TokenKind::User);
        let second = generate_token(TokenKind::User);
        assert!(first.starts_with("flt_u_") && first.len() == 70);
        assert_ne!(first, second);
        assert_eq!(hash_token(&first), hash_token(&first));
        assert_ne!(hash_token(&first), first);
    }

    #[test]
    fn encryption_round_trips_and_detects_the_wrong_key() {
        let key = SecretKey::generate();
        let (ciphertext, nonce) = key.encrypt(b"hunter2");
        assert!(!ciphertext.windows(7).any(|window| window == b"hunter2"));
        assert_eq!(key.decrypt(&ciphertext, &nonce).expect("decrypts"), b"hunter2");
        let restored = SecretKey::from_hex(&key.to_hex()).expect("hex round trip");
        assert_eq!(restored.decrypt(&ciphertext, &nonce).expect("decrypts"), b"hunter2");
        assert!(SecretKey::generate().decrypt(&ciphertext, &nonce).is_err());
    }
}
