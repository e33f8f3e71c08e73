//! Password hashing for web sign-in: argon2id with the crate's default parameters, stored as a
//! PHC string (`$argon2id$v=19$m=...`) so the parameters travel with each hash and can be raised
//! later without breaking old ones.
//!
//! Hashing is deliberately slow (tens of milliseconds), so callers run it on the blocking pool.
//! Verification of an unknown user still verifies against a fixed hash, so a wrong username and
//! a wrong password take about the same time and cannot be told apart.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted; long passphrases are better than clever ones.
pub const MIN_PASSWORD_LENGTH: usize = 12;
/// Longest accepted, so a request cannot make the server hash megabytes.
pub const MAX_PASSWORD_LENGTH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a password needs at least {MIN_PASSWORD_LENGTH} characters; a few unrelated words make a good one")]
    TooShort,
    #[error("a password has at most {MAX_PASSWORD_LENGTH} characters")]
    TooLong,
    #[error("hashing the password failed: {0}")]
    Hashing(String),
}

/// Checks the length rules without hashing.
pub fn check_password_rules(password: &str) -> Result<(), PasswordError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LENGTH {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Hashes a password into a PHC string with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_password_rules(password)?;
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|error| PasswordError::Hashing(format!("no randomness for the salt: {error}")))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|error| PasswordError::Hashing(error.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Hashing(error.to_string()))
}

/// Whether `password` matches `stored` (a PHC string). `None` — an unknown user, or one without
/// a password — is checked against a fixed hash and always fails, taking the same time.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    if password.len() > MAX_PASSWORD_LENGTH {
        return false;
    }
    let (hash_text, known) = match stored {
        Some(text) => (text, true),
        None => (dummy_hash(), false),
    };
    let Ok(hash) = PasswordHash::new(hash_text) else {
        // A corrupt stored hash: still spend the time, then refuse.
        let _ = PasswordHash::new(dummy_hash()).map(|hash| Argon2::default().verify_password(password.as_bytes(), &hash));
        return false;
    };
    let matches = Argon2::default().verify_password(password.as_bytes(), &hash).is_ok();
    matches && known
}

/// A hash of a random password nobody knows, made once per process.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 24];
        // Without randomness the fixed text below is still a valid password nobody types.
        let _ = getrandom::fill(&mut random);
        let password = format!("unknown-user-{}", hex::encode(random));
        hash_password(&password).unwrap_or_else(|_| {
            // The default parameters never fail to hash; keep a valid PHC string regardless.
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J9YbNWBa7xR5uVQ1GCHq5B4tYWfUkUzYyY4V0k7Nk0w".to_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_nothing_else() {
        let hash = hash_password("correct horse battery staple").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse battery staple", Some(&hash)));
        assert!(!verify_password("correct horse battery stapl", Some(&hash)));
        assert_ne!(hash, hash_password("correct horse battery staple").expect("hash"), "each hash has its own salt");
    }

    #[test]
    fn unknown_users_and_corrupt_hashes_never_verify() {
        assert!(!verify_password("anything at all here", None));
        assert!(!verify_password("anything at all here", Some("not a phc string")));
    }

    #[test]
    fn short_passwords_are_refused_with_advice() {
        let error = hash_password("short").expect_err("too short");
        assert!(error.to_string().contains("at least 12"), "{error}");
        assert!(matches!(hash_password(&"x".repeat(2000)), Err(PasswordError::TooLong)));
    }
}
