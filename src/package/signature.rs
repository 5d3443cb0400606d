/*!
Developer and store signatures: detached PKCS#7 (SHA-256) over a short ASCII text.

The signed text is the base64 of the raw digest, or for a store signature bound to a device the
base64 of `HMAC-SHA256(key = hardware id, message = digest)`. Verification trusts only the given
CA files and does not use certificates embedded in the signature as intermediates
(`PKCS7_NOCHAIN`), exactly as the device does; so an intermediate CA must be configured too.
*/

use openssl::hash::MessageDigest;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer as HmacSigner;
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use std::fmt;
use std::path::Path;

/// Why signing or verifying failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// A certificate or key file could not be used (named in the message).
    Setup(String),
    /// The signature is not valid (the reason from OpenSSL).
    Invalid(String),
    /// Signed with a certificate that no given CA issued (its issuer named).
    UntrustedIssuer(String),
    /// The chain to a given CA needs an intermediate CA that was not given (named).
    IncompleteChain(String),
    /// The certificate is trusted, but the signature is not over this content (another
    /// package, or another hardware id).
    ContentMismatch,
    /// Creating a signature failed.
    Signing(String),
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Setup(m) | SignatureError::Invalid(m) | SignatureError::Signing(m) => {
                f.write_str(m)
            }
            SignatureError::UntrustedIssuer(issuer) => write!(
                f,
                "it was signed with a certificate issued by {issuer}, which none of the given CA certificates is or issued"
            ),
            SignatureError::IncompleteChain(intermediate) => write!(
                f,
                "the chain to the given CA certificates is incomplete: give the intermediate CA {intermediate} too"
            ),
            SignatureError::ContentMismatch => {
                f.write_str("the signature was not made over this package's digest")
            }
        }
    }
}

impl std::error::Error for SignatureError {}

/// The text a developer signature (or a store signature without hardware id) signs.
pub fn digest_content(digest: &[u8; 32]) -> String {
    openssl::base64::encode_block(digest)
}

/// The text a store signature signs: bound to `hardware_id` unless it is empty.
pub fn store_content(digest: &[u8; 32], hardware_id: &str) -> Result<String, SignatureError> {
    if hardware_id.is_empty() {
        return Ok(digest_content(digest));
    }
    let hmac = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let key = PKey::hmac(hardware_id.as_bytes())?;
        let mut signer = HmacSigner::new(MessageDigest::sha256(), &key)?;
        signer.update(digest)?;
        signer.sign_to_vec()
    };
    hmac()
        .map(|mac| openssl::base64::encode_block(&mac))
        .map_err(|e| SignatureError::Signing(format!("could not compute the HMAC: {e}")))
}

/// A signing identity loaded from a PKCS#12 file.
pub struct SigningKey {
    certificate: X509,
    key: PKey<Private>,
    chain: Stack<X509>,
}

impl SigningKey {
    /// Load `path` with `password`; errors name the file.
    pub fn from_pkcs12_file(path: &Path, password: &str) -> Result<SigningKey, SignatureError> {
        let bytes = crate::fsutil::read_settings_file(path, crate::fsutil::MAX_SETTINGS_FILE)
            .map_err(|e| {
                SignatureError::Setup(format!(
                    "could not read certificate file {}: {e}",
                    path.display()
                ))
            })?;
        Self::from_pkcs12(&bytes, password)
            .map_err(|e| SignatureError::Setup(format!("{}: {e}", path.display())))
    }

    /// Load a PKCS#12 blob.
    pub fn from_pkcs12(bytes: &[u8], password: &str) -> Result<SigningKey, String> {
        let parsed = Pkcs12::from_der(bytes)
            .map_err(|_| "not a PKCS#12 file".to_string())?
            .parse2(password)
            .map_err(|_| "could not open the PKCS#12 file (wrong password?)".to_string())?;
        let certificate = parsed.cert.ok_or("the PKCS#12 file holds no certificate")?;
        let key = parsed.pkey.ok_or("the PKCS#12 file holds no private key")?;
        let chain = match parsed.ca {
            Some(ca) => ca,
            None => Stack::new().map_err(|e| e.to_string())?,
        };
        Ok(SigningKey {
            certificate,
            key,
            chain,
        })
    }

    /// SHA-256 of the signing certificate (DER): what tells one signing identity from another.
    pub fn certificate_sha256(&self) -> [u8; 32] {
        let der = self.certificate.to_der().unwrap_or_default();
        openssl::sha::sha256(&der)
    }

    /// The key's type when its signatures are not deterministic (anything but RSA: ECDSA and
    /// DSA draw a random nonce per signature, so the same content gives other bytes).
    pub fn nondeterministic_key_type(&self) -> Option<String> {
        match self.key.id() {
            openssl::pkey::Id::RSA => None,
            openssl::pkey::Id::EC => Some("an ECDSA key".into()),
            openssl::pkey::Id::DSA => Some("a DSA key".into()),
            other => Some(format!("a key of type {}", other.as_raw())),
        }
    }

    /// When the signing certificate became valid (its `notBefore`), or the epoch when that
    /// cannot be read.
    pub fn certificate_not_before(&self) -> std::time::SystemTime {
        let seconds = openssl::asn1::Asn1Time::from_unix(0)
            .and_then(|epoch| epoch.diff(self.certificate.not_before()))
            .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
            .unwrap_or(0);
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds.max(0) as u64)
    }

    /// A DER PKCS#7 detached signature over `content`, without signed attributes
    /// (`PKCS7_NOATTR`): no signing time, so the same key and content always give the same
    /// bytes (RSA PKCS#1 v1.5 is deterministic). The real installer and `appman-packager
    /// store-verify-package` 6.4.2 accept such signatures (FORMAT.md, "Signatures"); a signed
    /// download is then byte-identical on every request, which resuming and caching need.
    pub fn sign(&self, content: &[u8]) -> Result<Vec<u8>, SignatureError> {
        Pkcs7::sign(
            &self.certificate,
            &self.key,
            &self.chain,
            content,
            Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOATTR,
        )
        .and_then(|p| p.to_der())
        .map_err(|e| SignatureError::Signing(format!("could not create the signature: {e}")))
    }
}

/// The trust anchors for verifying signatures.
pub struct TrustStore {
    store: X509Store,
    /// The anchors' subjects (DER), to say why a chain does not reach them.
    subjects: Vec<Vec<u8>>,
}

impl TrustStore {
    /// Load CA certificates from PEM (several per file allowed) or DER files; errors name the file.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<TrustStore, SignatureError> {
        let mut builder =
            X509StoreBuilder::new().map_err(|e| SignatureError::Setup(e.to_string()))?;
        let mut subjects = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let bytes = crate::fsutil::read_settings_file(path, crate::fsutil::MAX_SETTINGS_FILE)
                .map_err(|e| {
                SignatureError::Setup(format!(
                    "could not read CA certificate file {}: {e}",
                    path.display()
                ))
            })?;
            let certificates = X509::stack_from_pem(&bytes)
                .ok()
                .filter(|c| !c.is_empty())
                .or_else(|| X509::from_der(&bytes).ok().map(|c| vec![c]))
                .ok_or_else(|| {
                    SignatureError::Setup(format!(
                        "CA certificate file {} holds no certificate",
                        path.display()
                    ))
                })?;
            for certificate in certificates {
                if let Ok(subject) = certificate.subject_name().to_der() {
                    subjects.push(subject);
                }
                builder.add_cert(certificate).map_err(|e| {
                    SignatureError::Setup(format!(
                        "could not add a certificate from {}: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        Ok(TrustStore {
            store: builder.build(),
            subjects,
        })
    }

    /// Check a DER PKCS#7 detached `signature` over `content`.
    pub fn verify(&self, signature: &[u8], content: &[u8]) -> Result<(), SignatureError> {
        let pkcs7 = Pkcs7::from_der(signature)
            .map_err(|_| SignatureError::Invalid("the signature is no PKCS#7 structure".into()))?;
        let none = Stack::new().map_err(|e| SignatureError::Invalid(e.to_string()))?;
        pkcs7
            .verify(
                &none,
                &self.store,
                Some(content),
                None,
                Pkcs7Flags::NOCHAIN | Pkcs7Flags::BINARY,
            )
            .map_err(|e| self.why_not(&pkcs7, &openssl_reason(&e)))
    }

    /// Why `pkcs7` did not verify, in words: an issuer no CA given is, an intermediate CA
    /// missing, or a signature over other content; else OpenSSL's `reason`.
    fn why_not(&self, pkcs7: &Pkcs7, reason: &str) -> SignatureError {
        let carried: Vec<X509> = pkcs7
            .signed()
            .and_then(|signed| signed.certificates())
            .map(|certificates| certificates.iter().map(|c| c.to_owned()).collect())
            .unwrap_or_default();
        if !reason.contains("certificate verify error") {
            return if reason.contains("digest failure") || reason.contains("signature failure") {
                SignatureError::ContentMismatch
            } else {
                SignatureError::Invalid(reason.to_string())
            };
        }
        let der = |name: &openssl::x509::X509NameRef| name.to_der().unwrap_or_default();
        let issued_by_anchor = |c: &X509| self.subjects.contains(&der(c.issuer_name()));
        // A carried CA certificate that a given CA issued: the chain needs it.
        if let Some(intermediate) = carried.iter().find(|c| {
            issued_by_anchor(c)
                && carried
                    .iter()
                    .any(|other| der(other.issuer_name()) == der(c.subject_name()))
        }) {
            return SignatureError::IncompleteChain(name_text(intermediate.subject_name()));
        }
        // The signer: the carried certificate that issued no other.
        let signer = carried.iter().find(|c| {
            !carried
                .iter()
                .any(|other| der(other.issuer_name()) == der(c.subject_name()) && other != *c)
        });
        match signer {
            Some(signer) => SignatureError::UntrustedIssuer(name_text(signer.issuer_name())),
            None => SignatureError::Invalid(reason.to_string()),
        }
    }
}

/// A distinguished name as people read it: `CN=..., O=...`.
fn name_text(name: &openssl::x509::X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect();
    format!("'{}'", parts.join(", "))
}

/// The most telling part of an OpenSSL error stack, e.g. "certificate verify error".
fn openssl_reason(stack: &openssl::error::ErrorStack) -> String {
    let reasons: Vec<String> = stack
        .errors()
        .iter()
        .map(|e| match (e.reason(), e.data()) {
            (Some(r), Some(d)) => format!("{r}: {d}"),
            (Some(r), None) => r.to_string(),
            _ => e.to_string(),
        })
        .collect();
    if reasons.is_empty() {
        "verification failed".to_string()
    } else {
        reasons.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers from FORMAT.md ("Signatures"), computed with Python's hmac and base64.
    #[test]
    fn signed_contents_are_the_base64_digest_or_its_hmac() {
        let digest: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            digest_content(&digest),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        );
        assert_eq!(store_content(&digest, "").unwrap(), digest_content(&digest));
        assert_eq!(
            store_content(&digest, "foobar").unwrap(),
            "ZyuHcJOqRz++k42V4BhUSr1vhCfgVcEFhSJqcpZqN1E="
        );
    }
}
