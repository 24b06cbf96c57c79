//! What may appear in logs: never names, IDs or dates of a patient; UIDs only as short hashes.
//!
//! `uid_hash` is the first 12 hex digits of SHA-256 of the UID text: stable across runs (so a
//! log line can be matched to a study by someone who holds the UID) and not reversible.

use sha2::{Digest, Sha256};

/// Short, stable, non-reversible label for a UID (or any identifier) in logs.
pub fn uid_hash(uid: &str) -> String {
    let digest = Sha256::digest(uid.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_is_short_stable_and_hides_the_uid() {
        let h = super::uid_hash("1.2.840.113619.2.55.3.1");
        assert_eq!(h.len(), 12);
        assert_eq!(h, super::uid_hash("1.2.840.113619.2.55.3.1"));
        assert_ne!(h, super::uid_hash("1.2.840.113619.2.55.3.2"));
        assert!(!h.contains("1.2.840"));
    }
}
