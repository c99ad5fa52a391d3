//! Mutual TLS between the gateway and the directory service.
//!
//! Certificates, keys and the CA come from PEM files (a Kubernetes Secret
//! mount, cert-manager's `tls.crt`/`tls.key`/`ca.crt`). They are rotated in
//! place, so nothing here is loaded once: [`Reloading`] looks at the files'
//! metadata whenever a new connection needs the configuration and rebuilds it
//! when a file changed. A rotation caught half-way (a new certificate with
//! the old key) fails to build and keeps the previous configuration until
//! the files agree again.
//!
//! The directory service terminates TLS itself ([`incoming`]) because
//! tonic's built-in server TLS reads its certificates once.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use rustls::{ClientConfig, ServerConfig};
pub use tokio_rustls::client::TlsStream as ClientTlsStream;
pub use tokio_rustls::server::TlsStream as ServerTlsStream;

/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{} holds no usable {what}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The pieces do not form a configuration (e.g. the key does not match
    /// the certificate).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// Where one side's certificate, key and trusted CA live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This side's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA (PEM, one or more certificates) the peer's certificate must
    /// chain to.
    pub ca: PathBuf,
}

/// The contents of [`TlsFiles`], checked to parse.
pub struct Pem {
    /// The certificate file as read.
    pub cert_pem: Vec<u8>,
    /// The key file as read.
    pub key_pem: Vec<u8>,
    /// The CA file as read.
    pub ca_pem: Vec<u8>,
    /// The certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
    /// The trusted CA certificates.
    pub roots: Vec<CertificateDer<'static>>,
}

/// What identifies a version of the files: changes on rewrite, rename or a
/// Kubernetes Secret's symlink swap.
type Stamp = Vec<Option<(Option<SystemTime>, u64, u64)>>;

impl TlsFiles {
    fn paths(&self) -> [&Path; 3] {
        [&self.cert, &self.key, &self.ca]
    }

    fn stamp(&self) -> Stamp {
        self.paths()
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| (m.modified().ok(), m.len(), inode(&m)))
            })
            .collect()
    }

    /// Reads and parses the three files.
    pub fn read(&self) -> Result<Pem, TlsError> {
        let [cert_pem, key_pem, ca_pem] = self.paths().map(read);
        let (cert_pem, key_pem, ca_pem) = (cert_pem?, key_pem?, ca_pem?);
        let chain = certificates(&self.cert, &cert_pem, "certificate")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            path: self.key.clone(),
            what: "private key",
            reason: e.to_string(),
        })?;
        let roots = certificates(&self.ca, &ca_pem, "CA certificate")?;
        Ok(Pem {
            cert_pem,
            key_pem,
            ca_pem,
            chain,
            key,
            roots,
        })
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks), e.g.
/// a private CA bundle to trust.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates(path, &read(path)?, "CA certificate")
}

fn certificates(
    path: &Path,
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Pem {
        path: path.to_owned(),
        what,
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// Turns loaded files into a configuration.
type Build<T> = Box<dyn Fn(&Pem) -> Result<T, TlsError> + Send + Sync>;

/// A configuration built from [`TlsFiles`], rebuilt when they change.
pub struct Reloading<T> {
    files: TlsFiles,
    build: Build<T>,
    state: Mutex<(Stamp, Arc<T>)>,
}

impl<T> Reloading<T> {
    /// Loads the files now; a failure here is a start-up error.
    pub fn load(
        files: TlsFiles,
        build: impl Fn(&Pem) -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let stamp = files.stamp();
        let value = build(&files.read()?)?;
        Ok(Self {
            files,
            build: Box::new(build),
            state: Mutex::new((stamp, Arc::new(value))),
        })
    }

    /// The current configuration, rebuilt first if a file changed.
    pub fn current(&self) -> Arc<T> {
        self.reload();
        self.get()
    }

    /// The configuration as last loaded, without looking at the files.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.lock().1)
    }

    /// Rebuilds the configuration if a file changed since the last look;
    /// true when a new one is in place. Costs three `stat` calls otherwise.
    pub fn reload(&self) -> bool {
        let stamp = self.files.stamp();
        let mut state = self.lock();
        if state.0 == stamp {
            return false;
        }
        // Remember the stamp even on failure: the same broken files are not
        // parsed again on every connection, and the next change is retried.
        state.0 = stamp;
        match self.files.read().and_then(|pem| (self.build)(&pem)) {
            Ok(value) => {
                state.1 = Arc::new(value);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificates reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload TLS certificates; keeping the previous ones");
                false
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Stamp, Arc<T>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The directory service's side: its certificate, and client certificates
/// required and verified against the CA.
pub fn server_config(pem: &Pem) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(trusted(pem)?, provider.clone())
        .build()
        .map_err(config_error)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pem.chain.clone(), pem.key.clone_key())
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The gateway's side: its certificate presented to the directory service,
/// whose certificate must chain to the CA. HTTP/2 only (ALPN `h2`).
pub fn client_config(pem: &Pem) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(trusted(pem)?)
        .with_client_auth_cert(pem.chain.clone(), pem.key.clone_key())
        .map_err(config_error)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The CA certificates of `pem`, as what the peer must chain to.
fn trusted(pem: &Pem) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in &pem.roots {
        roots
            .add(ca.clone())
            .map_err(|e| TlsError::Config(format!("unusable CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

fn config_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// Opens TLS over `tcp` to `server_name` (checked against the directory
/// service's certificate) within the handshake timeout.
pub async fn connect(
    config: Arc<ClientConfig>,
    server_name: &str,
    tcp: TcpStream,
) -> io::Result<ClientTlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// A server configuration that follows its files.
pub fn reloading_server(files: TlsFiles) -> Result<Reloading<ServerConfig>, TlsError> {
    Reloading::load(files, server_config)
}

/// TLS connections over the accepted TCP connections of `tcp`. Each
/// handshake runs in its own task with the configuration current when the
/// connection arrived, so a slow client delays no one else; failed
/// handshakes (no client certificate, an untrusted one) are logged and
/// dropped. The stream ends with `tcp`, or when the consumer drops it.
pub fn incoming<S>(
    tcp: S,
    tls: Arc<Reloading<ServerConfig>>,
) -> impl Stream<Item = io::Result<ServerTlsStream<TcpStream>>> + Send + 'static
where
    S: Stream<Item = io::Result<TcpStream>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(tcp, tls, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

type Accepted = io::Result<ServerTlsStream<TcpStream>>;

async fn accept_loop<S>(tcp: S, tls: Arc<Reloading<ServerConfig>>, tx: mpsc::Sender<Accepted>)
where
    S: Stream<Item = io::Result<TcpStream>> + Send + 'static,
{
    let mut tcp = std::pin::pin!(tcp);
    loop {
        let next = tokio::select! {
            next = tcp.next() => next,
            () = tx.closed() => return,
        };
        match next {
            None => return,
            Some(Err(e)) => {
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
            }
            Some(Ok(stream)) => {
                let acceptor = TlsAcceptor::from(tls.current());
                tokio::spawn(handshake(acceptor, stream, tx.clone()));
            }
        }
    }
}

async fn handshake(acceptor: TlsAcceptor, stream: TcpStream, tx: mpsc::Sender<Accepted>) {
    let peer = stream.peer_addr().ok();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let _ = tx.send(Ok(tls)).await;
        }
        Ok(Err(e)) => tracing::warn!(?peer, error = %e, "TLS handshake refused"),
        Err(_) => tracing::warn!(?peer, "TLS handshake timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Ca, write};
    use super::*;

    #[test]
    fn a_rotation_is_picked_up_and_a_broken_one_keeps_the_last_good_files() {
        let dir = std::env::temp_dir().join(format!("roster-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("test CA");
        let first = ca.leaf(&["localhost"]);
        let files = write(&dir, "server", &first, &ca);
        let certs = Reloading::load(files.clone(), |pem| Ok(pem.chain[0].clone())).unwrap();
        assert_eq!(*certs.current(), first.der);
        assert!(!certs.reload(), "unchanged files are not reloaded");

        let second = ca.leaf(&["localhost"]);
        write(&dir, "server", &second, &ca);
        assert_eq!(*certs.current(), second.der);

        std::fs::write(&files.cert, "not PEM").unwrap();
        assert!(!certs.reload());
        assert_eq!(
            *certs.current(),
            second.der,
            "a broken file keeps the last good one"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_that_does_not_match_is_refused_at_load() {
        let dir = std::env::temp_dir().join(format!("roster-tls-mismatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("test CA");
        let mut leaf = ca.leaf(&["localhost"]);
        leaf.key_pem = ca.leaf(&["localhost"]).key_pem;
        let files = write(&dir, "server", &leaf, &ca);
        assert!(matches!(reloading_server(files), Err(TlsError::Config(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
