//! Ed25519 keys for the archive: the signing key from a PKCS#8 PEM file (as written by
//! `openssl genpkey -algorithm ed25519`), public keys from SPKI PEM files (`openssl pkey
//! -pubout`), and the fingerprint digests name their key by.
//!
//! Must not: print key material (`Debug` shows the fingerprint only).

use std::fmt;
use std::path::Path;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

use super::hex;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (32 bytes) }.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The archive's signing key. Loaded once; never printed.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public.fingerprint)
    }
}

impl SigningKey {
    /// Read an Ed25519 private key (PKCS#8 PEM). Errors say what is wrong with the file,
    /// never its content.
    pub fn from_pem_file(path: &Path) -> Result<SigningKey, String> {
        // A file that exists may be the key that signed an archive: never suggest
        // writing over it.
        let fix = |path: &Path| {
            if path.exists() {
                "it must be an unencrypted Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), readable by this user; if it is the key that signed an existing archive, keep it and fix its permissions or format (`openssl pkey -in OLD -out NEW` removes a passphrase); a new key starts a new chain: write it to another file (`openssl genpkey -algorithm ed25519 -out NEW.pem`) and point the sink (and a new `path`) at it".to_string()
            } else {
                format!(
                    "create one with `openssl genpkey -algorithm ed25519 -out {}`",
                    path.display()
                )
            }
        };
        let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| {
            let why = match &e {
                rustls_pki_types::pem::Error::NoItemsFound => {
                    "no unencrypted PKCS#8 private key in it (an encrypted key, a public key or another format?)".to_string()
                }
                other => other.to_string(),
            };
            format!(
                "cannot read a PKCS#8 PEM private key from {} ({why}); {}",
                path.display(),
                fix(path)
            )
        })?;
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()).map_err(|_| {
                format!(
                    "{} is not an Ed25519 private key; {}",
                    path.display(),
                    fix(path)
                )
            })?;
        let public = PublicKey::from_raw(pair.public_key().as_ref());
        Ok(SigningKey { pair, public })
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// [`SigningKey::sign`] in hex, as digests and the head record carry it.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        super::hex::encode(&self.sign(message))
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

/// An Ed25519 public key and its fingerprint (`sha256:` + hex of the SPKI DER).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    fingerprint: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

impl PublicKey {
    fn from_raw(raw: &[u8]) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(raw);
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&key);
        let hash = ring::digest::digest(&ring::digest::SHA256, &spki);
        PublicKey {
            raw: key,
            fingerprint: format!("sha256:{}", hex::encode(hash.as_ref())),
        }
    }

    /// Read an Ed25519 public key (SPKI PEM, `-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem_file(path: &Path) -> Result<PublicKey, String> {
        // The signing key given by mistake: say so, and never suggest writing over it.
        let head = std::fs::read(path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned())
            .unwrap_or_default();
        if head.contains("PRIVATE KEY-----") {
            return Err(format!(
                "{} holds a private key; give the public key, made from it with `openssl pkey -in {} -pubout -out archive.pub.pem` (a new file: the private key stays as it is)",
                path.display(),
                path.display()
            ));
        }
        let der = SubjectPublicKeyInfoDer::from_pem_file(path).map_err(|e| {
            format!(
                "cannot read a PEM public key from {} ({e}); make one from the signing key with `openssl pkey -in <signing key> -pubout -out archive.pub.pem`",
                path.display()
            )
        })?;
        match der.as_ref().strip_prefix(&SPKI_PREFIX[..]) {
            Some(raw) if raw.len() == 32 => Ok(PublicKey::from_raw(raw)),
            _ => Err(format!("{} is not an Ed25519 public key", path.display())),
        }
    }

    /// `sha256:<hex>` of the key's SPKI DER: what a digest names its signer by.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(message, signature)
            .is_ok()
    }

    /// Whether a record naming its signer `fingerprint` with the hex `signature` (absent:
    /// unsigned) was signed by this key over `message`.
    pub fn verifies_hex(&self, fingerprint: &str, message: &[u8], signature: Option<&str>) -> bool {
        let Some(signature) = signature.and_then(super::hex::decode) else {
            return false;
        };
        self.fingerprint == fingerprint && self.verifies(message, &signature)
    }
}

#[cfg(test)]
pub mod testing {
    //! Keys written the way openssl writes them, for tests.

    use super::*;

    /// A fresh PKCS#8 v1 PEM private key (as `openssl genpkey` writes it: no public key
    /// inside) and the matching SPKI PEM public key, in `dir` as `<name>.pem` and
    /// `<name>.pub.pem`.
    pub fn write_key_pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let rng = ring::rand::SystemRandom::new();
        let v2 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(v2.as_ref()).unwrap();
        // PKCS#8 v2 from ring: version 1, the seed at bytes 16..48; rebuild it as v1.
        let seed = &v2.as_ref()[16..48];
        let mut v1 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        v1.extend_from_slice(seed);
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        std::fs::write(&private, pem("PRIVATE KEY", &v1)).unwrap();
        std::fs::write(&public, pem("PUBLIC KEY", &spki)).unwrap();
        (private, public)
    }

    fn pem(label: &str, der: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
                << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    b64.push('=');
                }
            }
        }
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_style_keys_sign_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = testing::write_key_pair(dir.path(), "a");
        let key = SigningKey::from_pem_file(&private).unwrap();
        let public = PublicKey::from_pem_file(&public).unwrap();
        assert_eq!(key.public(), &public);
        assert!(public.fingerprint().starts_with("sha256:"));
        let sig = key.sign(b"hello");
        assert!(public.verifies(b"hello", &sig));
        assert!(!public.verifies(b"hellO", &sig));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = testing::write_key_pair(dir.path(), "a");
        let e = SigningKey::from_pem_file(&public).unwrap_err();
        assert!(e.contains("a.pub.pem"), "{e}");
        let e = PublicKey::from_pem_file(&private).unwrap_err();
        assert!(
            e.contains("a.pem") && e.contains("holds a private key"),
            "{e}"
        );
        // The hint writes a new file, never over the signing key.
        assert!(!e.contains(&format!("-out {}", private.display())), "{e}");
        let e = SigningKey::from_pem_file(&dir.path().join("missing.pem")).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
