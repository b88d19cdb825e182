//! `chiso-pg` serves chiso's read-only SQL over the PostgreSQL wire protocol (version 3), so
//! psql, psycopg, SQLAlchemy, pgjdbc and the BI tools built on them connect as to PostgreSQL:
//! database `chiso`, any user name, a chiso token with `query` or `admin` as the password.
//!
//! Everything a client sends goes through the same engine as `POST /v1/sql`: every query is
//! planned and checked there (reads only, `system.queries` for admins), runs under the same
//! memory pool, time and row limits, and is listed, cancelled and logged with its token's id
//! and the protocol `postgres`. Session settings (`SET application_name`, `DateStyle`,
//! `TimeZone`, `statement_timeout`, …) belong to the connection and never reach the shared
//! engine; a setting chiso does not take is refused with a SQLSTATE. `COPY (SELECT …) TO
//! STDOUT` streams an answer in text or CSV; every other COPY is refused.
//!
//! The protocol comes from `pgwire`, the rows from `arrow-pg`, the Postgres dialect rewrites
//! from `datafusion-pg-catalog`; the accept loop, the login, the statements and the drain on
//! shutdown are chiso's own (`connections.rs`, `handlers.rs`, `session.rs`).

mod connections;
mod handlers;
mod session;
mod sqlstate;
mod statements;
mod text;

use chiso_api::Auth;
use chiso_query::SqlEngine;
use connections::Connections;
use handlers::Handlers;
use pgwire::messages::PgWireBackendMessage;
use pgwire::tokio::tokio_rustls::rustls;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use pgwire::tokio::TlsAcceptor;

/// Limits of the PostgreSQL listener.
#[derive(Debug, Clone, Copy)]
pub struct PgLimits {
    /// Connections open at once; past it a new one is refused with SQLSTATE 53300.
    pub max_connections: usize,
    /// How long a shutdown waits for running statements before it closes their connections.
    pub drain: Duration,
    /// The longest SQL text a statement may have; past it, SQLSTATE 54000.
    pub max_sql_bytes: usize,
}

impl Default for PgLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            drain: Duration::from_secs(30),
            max_sql_bytes: 1 << 20,
        }
    }
}

/// A TLS acceptor from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or
/// SEC1). An error names what failed; the server must not start without the TLS it was
/// asked for.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("cannot read the certificate {}: {error}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| format!("cannot read the private key {}: {error}", key.display()))?;
    // rustls's one crypto provider here is ring (pgwire's `server-api-ring`).
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| format!("the certificate and key do not make a TLS setup: {error}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves the PostgreSQL protocol on `listener` until `shutdown` is cancelled; then stops
/// accepting, closes idle connections, lets running statements finish (at most
/// [`PgLimits::drain`]) and closes the rest.
pub async fn serve(
    listener: TcpListener,
    engine: SqlEngine,
    auth: Auth,
    tls: Option<TlsAcceptor>,
    limits: PgLimits,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Connections::default());
    let handlers = Arc::new(Handlers::new(
        engine,
        auth,
        connections.clone(),
        limits.max_sql_bytes,
    ));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tasks = TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a PostgreSQL connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tasks.spawn(refuse(socket, limits.max_connections));
            continue;
        };
        let _ = socket.set_nodelay(true);
        let connection = connections.open(peer);
        let (handlers, tls, connections) = (handlers.clone(), tls.clone(), connections.clone());
        tasks.spawn(async move {
            let _permit = permit;
            tokio::select! {
                served = pgwire::tokio::process_socket(socket, tls, handlers) => {
                    if let Err(error) = served {
                        tracing::debug!(%error, %peer, "a PostgreSQL connection ended with an error");
                    }
                }
                () = connection.closed() => {}
            }
            connection.close();
            connections.remove(peer, &connection);
        });
    }
    drop(listener);
    tasks.close();
    connections.drain();
    if tokio::time::timeout(limits.drain, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("PostgreSQL statements still running at the end of the drain: closed");
        connections.close_all();
        tasks.wait().await;
    }
}

/// Answers a connection past the limit as PostgreSQL does (SQLSTATE 53300) and closes it.
async fn refuse(mut socket: TcpStream, limit: usize) {
    let error = pgwire::error::ErrorInfo::new(
        "FATAL".into(),
        "53300".into(),
        format!(
            "sorry, too many clients already: chiso serves {limit} PostgreSQL connections at once"
        ),
    );
    let mut buffer = bytes::BytesMut::new();
    if PgWireBackendMessage::ErrorResponse(error.into())
        .encode(&mut buffer)
        .is_ok()
    {
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.write_all(&buffer)).await;
    }
}
