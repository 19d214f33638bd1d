//! TLS on every listener: the rustls configuration, its reload, and the handshake.
//!
//! [`Tls::load`] reads `--certfile`, `--keyfile` and `--ca-certs` (through `pem.rs`), checks
//! that the key belongs to the certificate, and builds a rustls `ServerConfig` with the ring
//! provider: TLS 1.2 and 1.3 (or 1.3 only with `--tls-min 1.3`), ALPN per `--http`, client
//! certificates per `--client-cert`. It runs before anything binds, so a bad file ends
//! start-up with exit code 2. [`Tls::reload`] (SIGHUP) builds a new configuration from the same
//! files and swaps it in: handshakes that start afterwards use it, connections already
//! established keep the session they have, and a reload that fails keeps the old
//! configuration. [`Tls::accept`] runs one handshake and reports what the application may see
//! ([`TlsInfo`]). Which HTTP version then runs on the connection is `server.rs`'s business.

use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use pkcs8::der::pem::LineEnding;
use pkcs8::der::Decode;
use rustls::crypto::{ring, CryptoProvider};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::version::{TLS12, TLS13};
use rustls::{Error as RustlsError, InconsistentKeys, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::pem;
use crate::config::{ClientCert, HttpMode, TlsFiles, TlsPlan, TlsVersion};
use crate::error::Error;

/// What a TLS connection tells the application (the `SSL_*` environ keys, as Apache's
/// `mod_ssl` names them).
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
    /// The negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`, and its IANA number.
    pub cipher: String,
    pub cipher_id: u16,
    /// The server name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The verified client certificate's subject DN (RFC 4514), with mutual TLS.
    pub client_subject: Option<String>,
    /// The client certificate's issuer DN (RFC 4514), with mutual TLS.
    pub client_issuer: Option<String>,
    /// With mutual TLS, the certificates the client sent in PEM: its own first, then the
    /// intermediates of its chain.
    pub client_chain_pem: Vec<String>,
}

/// The protocol ALPN settled on, if the client offered any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    H2,
    Http11,
}

/// The TLS side of every listener, shared by all connections.
pub struct Tls {
    files: TlsFiles,
    http: HttpMode,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Read the files and build the configuration, or `None` without `--certfile`.
    pub fn load(plan: &TlsPlan) -> Result<Option<Arc<Self>>, Error> {
        let Some(files) = &plan.files else {
            return Ok(None);
        };
        let config = build(files, plan.http)?;
        Ok(Some(Arc::new(Self {
            files: files.clone(),
            http: plan.http,
            current: RwLock::new(Arc::new(config)),
        })))
    }

    /// Read the files again and use them for the handshakes that start from now on. On error
    /// the configuration in use stays.
    pub fn reload(&self) -> Result<(), Error> {
        let config = Arc::new(build(&self.files, self.http)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The files a reload reads, for log lines.
    pub fn describe(&self) -> String {
        format!(
            "{} and {}",
            self.files.certfile.display(),
            self.files.keyfile.display()
        )
    }

    /// Run the server side of a handshake (the caller bounds it in time).
    pub async fn accept<S>(&self, stream: S) -> io::Result<(TlsStream<S>, TlsInfo, Option<Alpn>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // A poisoned lock still holds a complete configuration: the writer only assigns.
        let config = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        let stream = TlsAcceptor::from(config).accept(stream).await?;
        let session = stream.get_ref().1;
        let alpn = match session.alpn_protocol() {
            Some(b"h2") => Some(Alpn::H2),
            Some(b"http/1.1") => Some(Alpn::Http11),
            _ => None,
        };
        let chain = session.peer_certificates().unwrap_or_default();
        let (client_subject, client_issuer) = chain.first().map(names).unwrap_or_default();
        let suite = session.negotiated_cipher_suite().map(|s| s.suite());
        let info = TlsInfo {
            protocol: match session.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                _ => "TLSv1.2",
            },
            cipher: suite
                .and_then(|s| s.as_str())
                .unwrap_or("unknown")
                .to_owned(),
            cipher_id: suite.map_or(0, u16::from),
            server_name: session.server_name().map(str::to_owned),
            client_subject,
            client_issuer,
            client_chain_pem: chain
                .iter()
                .map(|c| {
                    // Encoding a byte slice as PEM cannot fail; the fallback is never used.
                    pkcs8::der::pem::encode_string("CERTIFICATE", LineEnding::LF, c)
                        .unwrap_or_default()
                })
                .collect(),
        };
        Ok((stream, info, alpn))
    }
}

/// Subject and issuer DNs of a (verified) client certificate, as RFC 4514 strings.
fn names(cert: &CertificateDer<'_>) -> (Option<String>, Option<String>) {
    match x509_cert::Certificate::from_der(cert) {
        Ok(c) => (
            Some(c.tbs_certificate().subject().to_string()),
            Some(c.tbs_certificate().issuer().to_string()),
        ),
        // rustls verified it with webpki, which is stricter than x509-cert about little;
        // leave the DNs out rather than fail the request.
        Err(_) => (None, None),
    }
}

fn build(files: &TlsFiles, http: HttpMode) -> Result<ServerConfig, Error> {
    let provider = Arc::new(ring::default_provider());
    let certs = pem::certificates("--certfile", &files.certfile)?;
    let key = pem::private_key(
        &files.keyfile,
        files.password.as_ref().map(|p| p.0.as_str()),
    )?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        Error::config(format!(
            "cannot use the private key in --keyfile {}: {e}",
            files.keyfile.display()
        ))
    })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        // ring can always tell; `Unknown` would mean a key type it cannot describe.
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(Error::config(format!(
                "--keyfile {} does not belong to the certificate in --certfile {}: their public keys differ",
                files.keyfile.display(),
                files.certfile.display()
            )))
        }
        Err(e) => {
            return Err(Error::config(format!(
                "cannot use the certificate in --certfile {}: {e}",
                files.certfile.display()
            )))
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match files.min_version {
        TlsVersion::V1_2 => &[&TLS13, &TLS12],
        TlsVersion::V1_3 => &[&TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| Error::config(format!("cannot set up TLS: {e}")))?;
    let mut config = match client_verifier(files, &provider)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = match http {
        HttpMode::One => vec![b"http/1.1".to_vec()],
        HttpMode::Two => vec![b"h2".to_vec()],
        HttpMode::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(config)
}

fn client_verifier(
    files: &TlsFiles,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, Error> {
    let (Some(path), ClientCert::Optional | ClientCert::Required) =
        (&files.ca_certs, files.client_cert)
    else {
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(pem::certificates("--ca-certs", path)?);
    if added == 0 {
        return Err(Error::config(format!(
            "--ca-certs {} holds no certificate usable as a trust anchor",
            path.display()
        )));
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    if files.client_cert == ClientCert::Optional {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map(Some).map_err(|e| {
        Error::config(format!(
            "cannot verify client certificates with --ca-certs {}: {e}",
            path.display()
        ))
    })
}
