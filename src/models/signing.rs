//! Ed25519 keys and signatures of model packages.
//!
//! # Files (all text, one line, lower-case hex)
//! * secret key `KEY`: `nephrod-ed25519-secret-key-v1 <64 hex: the 32-byte seed>`; written
//!   with mode 0600 and never over an existing file.
//! * public key `KEY.pub`: `nephrod-ed25519-public-key-v1 <64 hex> [comment]`.
//! * signature `manifest.toml.sig`: `nephrod-ed25519-signature-v1 <key id> <128 hex>`.
//!
//! A key id is the first 16 hex digits of the SHA-256 of the 32 public-key bytes; it names the
//! key in messages and lets verification pick the key, but a signature is only accepted when it
//! verifies under a trusted key's full public key.
//!
//! # What is signed
//! The exact bytes of `manifest.toml`, prefixed with [`DOMAIN`] so that a signature made for
//! a nephrod manifest cannot be replayed as a signature over anything else and vice versa.
//! Verification uses `verify_strict` (no malleable or small-order keys/signatures).

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Prefix of every signed message.
pub const DOMAIN: &[u8] = b"nephrod model package manifest v1\n";
const SECRET_TAG: &str = "nephrod-ed25519-secret-key-v1";
const PUBLIC_TAG: &str = "nephrod-ed25519-public-key-v1";
const SIGNATURE_TAG: &str = "nephrod-ed25519-signature-v1";
/// Key and signature files are tiny; anything longer is not one.
const MAX_KEY_FILE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a nephrod {what} file: {message}")]
    Format {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("{path}: already exists (a key is never overwritten)")]
    Exists { path: PathBuf },
    #[error("the operating system gave no random bytes: {0}")]
    Random(String),
}

/// A public key that may be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// Where it was read from (for messages), or empty.
    pub source: String,
}

impl PublicKey {
    /// The key id (see the module doc).
    pub fn id(&self) -> String {
        key_id(self.key.as_bytes())
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Reads a `.pub` file.
    pub fn read(path: &Path) -> Result<Self, SigningError> {
        let text = read_small(path)?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let bad = |message: &str| SigningError::Format {
            path: path.to_path_buf(),
            what: "public key",
            message: message.into(),
        };
        if fields.first() != Some(&PUBLIC_TAG) {
            return Err(bad(&format!("does not start with {PUBLIC_TAG}")));
        }
        let bytes: [u8; 32] = fields
            .get(1)
            .and_then(|h| hex_decode(h))
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("the key is not 64 hex digits"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| bad("the bytes are not an Ed25519 public key"))?;
        if key.is_weak() {
            return Err(bad("weak (small-order) public key"));
        }
        Ok(Self {
            key,
            source: path.display().to_string(),
        })
    }

    /// Whether `signature` is a valid signature of `manifest` (with [`DOMAIN`]) by this key.
    pub fn verifies(&self, manifest: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.key
            .verify_strict(&signed_message(manifest), &sig)
            .is_ok()
    }
}

/// A secret signing key.
pub struct SecretKey {
    key: SigningKey,
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, SigningError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SigningError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
            source: String::new(),
        }
    }

    /// Reads a secret key file.
    pub fn read(path: &Path) -> Result<Self, SigningError> {
        let text = read_small(path)?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        let bad = |message: &str| SigningError::Format {
            path: path.to_path_buf(),
            what: "secret key",
            message: message.into(),
        };
        if fields.first() != Some(&SECRET_TAG) {
            return Err(bad(&format!("does not start with {SECRET_TAG}")));
        }
        let seed: [u8; 32] = fields
            .get(1)
            .and_then(|h| hex_decode(h))
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("the seed is not 64 hex digits"))?;
        Ok(Self::from_seed(&seed))
    }

    /// Writes `out` (secret, mode 0600) and `out.pub`; refuses to overwrite either.
    pub fn write_pair(&self, out: &Path, comment: &str) -> Result<PathBuf, SigningError> {
        let public_path = pub_path(out);
        for p in [out, public_path.as_path()] {
            if p.exists() {
                return Err(SigningError::Exists {
                    path: p.to_path_buf(),
                });
            }
        }
        let secret = format!("{SECRET_TAG} {}\n", hex(self.key.as_bytes()));
        write_new(out, secret.as_bytes(), 0o600)?;
        let comment: String = comment
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let public = format!(
            "{PUBLIC_TAG} {} {}\n",
            hex(self.key.verifying_key().as_bytes()),
            comment.trim()
        );
        write_new(&public_path, public.as_bytes(), 0o644)?;
        Ok(public_path)
    }

    /// Signs `manifest` (with [`DOMAIN`]); returns the signature file's text.
    pub fn sign_manifest(&self, manifest: &[u8]) -> String {
        let sig = self.key.sign(&signed_message(manifest));
        format!(
            "{SIGNATURE_TAG} {} {}\n",
            self.public().id(),
            hex(&sig.to_bytes())
        )
    }

    /// Plain Ed25519 over `message` (no domain prefix): for known-answer tests only.
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// A parsed signature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFile {
    pub key_id: String,
    pub signature: [u8; 64],
}

impl SignatureFile {
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 3 || fields[0] != SIGNATURE_TAG {
            return Err(format!("expected `{SIGNATURE_TAG} <key id> <signature>`"));
        }
        let signature: [u8; 64] = hex_decode(fields[2])
            .and_then(|v| v.try_into().ok())
            .ok_or("the signature is not 128 hex digits")?;
        Ok(Self {
            key_id: fields[1].to_string(),
            signature,
        })
    }
}

/// `KEY` → `KEY.pub`.
pub fn pub_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_os_string();
    s.push(".pub");
    PathBuf::from(s)
}

/// The key id of raw public-key bytes.
pub fn key_id(public: &[u8; 32]) -> String {
    hex(&Sha256::digest(public)[..8])
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + manifest.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(manifest);
    m
}

fn read_small(path: &Path) -> Result<String, SigningError> {
    let io = |source| SigningError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_KEY_FILE {
        return Err(SigningError::Format {
            path: path.to_path_buf(),
            what: "key",
            message: format!("{len} bytes is too long"),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    String::from_utf8(bytes).map_err(|_| SigningError::Format {
        path: path.to_path_buf(),
        what: "key",
        message: "not text".into(),
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SigningError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SigningError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex (either case) → bytes; `None` for odd lengths or other characters.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1, TEST 1–3: secret seed, public key, message, signature.
    const RFC8032: [(&str, &str, &str, &str); 3] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];

    #[test]
    fn rfc8032_known_answers() {
        for (seed, public, msg, sig) in RFC8032 {
            let seed: [u8; 32] = hex_decode(seed).unwrap().try_into().unwrap();
            let k = SecretKey::from_seed(&seed);
            assert_eq!(hex(&k.public().to_bytes()), public);
            assert_eq!(hex(&k.sign_raw(&hex_decode(msg).unwrap())), sig);
        }
    }

    /// OpenSSL's signature over the domain line + a manifest (tools/oracle/
    /// ed25519_openssl_golden.sh) equals nephrod's and verifies: an external signer that
    /// follows the documented message format produces valid packages.
    #[test]
    fn manifest_signature_equals_openssl() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/signing");
        let g: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("openssl_golden.json")).unwrap(),
        )
        .unwrap();
        let field = |k: &str| hex_decode(g[k].as_str().unwrap()).unwrap();
        let manifest = std::fs::read(dir.join(g["manifest"].as_str().unwrap())).unwrap();
        let seed: [u8; 32] = field("seed").try_into().unwrap();
        let key = SecretKey::from_seed(&seed);
        assert_eq!(key.public().to_bytes().to_vec(), field("public_key"));
        let ours = SignatureFile::parse(&key.sign_manifest(&manifest)).unwrap();
        assert_eq!(ours.signature.to_vec(), field("signature"));
        let theirs: [u8; 64] = field("signature").try_into().unwrap();
        assert!(key.public().verifies(&manifest, &theirs));
    }

    #[test]
    fn manifest_signatures_verify_only_for_the_same_bytes_and_key() {
        let a = SecretKey::from_seed(&[7; 32]);
        let b = SecretKey::from_seed(&[8; 32]);
        let text = a.sign_manifest(b"name = \"x\"\n");
        let sig = SignatureFile::parse(&text).unwrap();
        assert_eq!(sig.key_id, a.public().id());
        assert!(a.public().verifies(b"name = \"x\"\n", &sig.signature));
        assert!(!a.public().verifies(b"name = \"y\"\n", &sig.signature));
        assert!(!b.public().verifies(b"name = \"x\"\n", &sig.signature));
        // The domain prefix: the raw signature of the same bytes is not a manifest signature.
        let raw = a.sign_raw(b"name = \"x\"\n");
        assert!(!a.public().verifies(b"name = \"x\"\n", &raw));
    }

    #[test]
    fn key_files_round_trip_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("vendor");
        let k = SecretKey::generate().unwrap();
        let pubp = k.write_pair(&out, "vendor\nkey").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = SecretKey::read(&out).unwrap();
        assert_eq!(back.public().to_bytes(), k.public().to_bytes());
        assert_eq!(
            PublicKey::read(&pubp).unwrap().to_bytes(),
            k.public().to_bytes()
        );
        assert!(matches!(
            k.write_pair(&out, ""),
            Err(SigningError::Exists { .. })
        ));
        // A secret key is not a public key and vice versa.
        assert!(PublicKey::read(&out).is_err());
        assert!(SecretKey::read(&pubp).is_err());
    }
}
