//! Reading the PEM files of `--certfile`, `--keyfile` and `--ca-certs`.
//!
//! Certificates and the three plain key formats are parsed by `rustls-pki-types`; an
//! `ENCRYPTED PRIVATE KEY` (PKCS#8 with PBES2) is decrypted with the `pkcs8` crate. Every error
//! names the option and the file, and says what the file should hold. Turning keys and
//! certificates into a rustls configuration is `tls.rs`'s job.

use std::path::Path;

use pkcs8::der::Decode;
use pkcs8::EncryptedPrivateKeyInfoRef;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::Error;

/// Read a file, naming the option and path when it cannot be read.
fn read(option: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::config(format!("cannot read {option} {}: {e}", path.display())))
}

/// Every certificate in a PEM file, in order; at least one.
pub fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = read(option, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::config(format!(
                "cannot parse {option} {}: {}",
                path.display(),
                describe(&e)
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "{option} {} holds no PEM certificate (a '-----BEGIN CERTIFICATE-----' block)",
            path.display()
        )));
    }
    Ok(certs)
}

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The private key in `--keyfile`, decrypted with `password` when it is encrypted.
pub fn private_key(path: &Path, password: Option<&str>) -> Result<PrivateKeyDer<'static>, Error> {
    let shown = path.display();
    let bytes = read("--keyfile", path)?;
    let text = String::from_utf8_lossy(&bytes);
    if let Some(start) = text.find(ENCRYPTED_BEGIN) {
        let Some(password) = password else {
            return Err(Error::config(format!(
                "--keyfile {shown} is encrypted: give its password with --keyfile-password or FERRULE_KEYFILE_PASSWORD"
            )));
        };
        let end = text[start..]
            .find(ENCRYPTED_END)
            .map(|i| start + i + ENCRYPTED_END.len())
            .ok_or_else(|| {
                Error::config(format!(
                    "cannot parse --keyfile {shown}: the encrypted key has no '{ENCRYPTED_END}' line"
                ))
            })?;
        return decrypt(&text[start..end], password)
            .map_err(|why| Error::config(format!("cannot decrypt --keyfile {shown}: {why}")));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(Error::config(format!(
            "--keyfile {shown} uses OpenSSL's legacy PEM encryption, which ferrule does not read; convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -in {shown} -out key.p8`"
        )));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::config(format!(
            "--keyfile {shown} holds no PEM private key (a '-----BEGIN PRIVATE KEY-----', 'RSA PRIVATE KEY', 'EC PRIVATE KEY' or 'ENCRYPTED PRIVATE KEY' block)"
        )),
        e => Error::config(format!("cannot parse --keyfile {shown}: {}", describe(&e))),
    })
}

fn decrypt(pem_text: &str, password: &str) -> Result<PrivateKeyDer<'static>, String> {
    // Decoded in two steps: der's streaming PEM reader cannot peek, which PBES2 parameters
    // need.
    let (_label, der) = pkcs8::der::pem::decode_vec(pem_text.as_bytes())
        .map_err(|e| format!("the encrypted key is not valid PEM ({e})"))?;
    let info = EncryptedPrivateKeyInfoRef::from_der(&der)
        .map_err(|e| format!("the encrypted key is not valid PKCS#8 ({e})"))?;
    // A wrong password shows up as bad padding or as plaintext that is not DER; pkcs8 cannot
    // tell the two apart, and neither can we.
    let doc = info.decrypt(password).map_err(|e| {
        format!("wrong --keyfile-password, or an encryption scheme ferrule does not support ({e})")
    })?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        doc.as_bytes().to_vec(),
    )))
}

/// `rustls-pki-types` errors say what went wrong but not in a sentence.
fn describe(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a PEM block has no end line ('{}')",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed PEM begin line '{}'",
            String::from_utf8_lossy(line)
        ),
        pem::Error::Base64Decode(why) => format!("bad base64 inside a PEM block ({why})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    // A throw-away P-256 key encrypted by `openssl pkcs8 -topk8` with the password "pw":
    // PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC (OpenSSL's default). scrypt works too
    // but takes seconds in a debug build.
    const PBKDF2: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAhgBDwndgJ1RwICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEDiE2tvOBwMrimoyf8QtWVQEgZDI
aonCR6047D2Tjh1n+rfHgYM4FHtMqdD1JQJiqc4H88NPB4A6HHsgNyHpNsOHRE5K
HglED9GXpser4KxbTI8TGB+S8JnW5XywgndipYJm6NdhL0JGZFVJLEaIN3L6lhP+
82Nnzr2TXvUYzqgyfm+EyUmPH+nd93GStXElwjPhtaYFk3HriEh0NutYVHd6GvU=
-----END ENCRYPTED PRIVATE KEY-----\n";

    #[test]
    fn encrypted_pkcs8_keys_decrypt_with_the_right_password_only() {
        let f = file(PBKDF2);
        let key = private_key(f.path(), Some("pw")).unwrap();
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        let err = private_key(f.path(), Some("wrong"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong --keyfile-password"), "{err}");
    }

    #[test]
    fn errors_name_the_option_and_the_file() {
        let missing = Path::new("/nonexistent/cert.pem");
        let err = certificates("--certfile", missing).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read --certfile /nonexistent/cert.pem:"),
            "{err}"
        );
        let junk = file("not a certificate\n");
        let err = certificates("--ca-certs", junk.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--ca-certs") && err.contains("holds no PEM certificate"));
        let err = private_key(junk.path(), None).unwrap_err().to_string();
        assert!(err.contains("holds no PEM private key"), "{err}");
        let encrypted = file(&format!("{ENCRYPTED_BEGIN}\nAAAA\n{ENCRYPTED_END}\n"));
        let err = private_key(encrypted.path(), None).unwrap_err().to_string();
        assert!(err.contains("is encrypted"), "{err}");
        let err = private_key(encrypted.path(), Some("pw"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot decrypt --keyfile"), "{err}");
        let legacy = file(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        );
        let err = private_key(legacy.path(), Some("pw"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("legacy PEM encryption"), "{err}");
    }
}
