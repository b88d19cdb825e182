//! `chiso-flight` serves chiso's read-only SQL as Arrow Flight SQL, so ADBC (Python, R, Go,
//! Java), pyarrow's Flight client, polars through ADBC and the Flight SQL JDBC driver read
//! answers as Arrow record batches, with no row-by-row encoding on either side.
//!
//! Every call carries a chiso token: `authorization: Bearer <token>`, or `Basic` with the token
//! as the password (the user name is not read), which the handshake answers with the
//! `Bearer` header clients then send. A token needs `query` or `admin`; any is taken while
//! authentication is off. Off loopback a token travels only over TLS.
//!
//! Statements and prepared statements (with parameters `$1`, `$2`, … or `?`) go through the
//! engine `POST /v1/sql` uses: planned and checked there (reads only, `system.queries` for
//! admins), under the same memory pool, time and row limits, listed and cancelled as
//! queries of the protocol `flightsql`. Handles are stateless: a statement's handle holds its
//! SQL and bound values, and every DoGet plans it again under its caller's token, so nothing
//! is kept between calls and a handle grants nothing a token does not. Answers stream batch
//! by batch; a client that goes away cancels its query.
//!
//! The protocol comes from `arrow-flight` (`FlightSqlService`) over `tonic`; the service,
//! the authentication and the error codes are chiso's (`service.rs`, `auth.rs`, `status.rs`).

mod auth;
mod handle;
mod service;
mod status;

use chiso_api::Auth;
use chiso_query::SqlEngine;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use tonic::transport::ServerTlsConfig as TlsConfig;

/// Limits of the Flight SQL listener.
#[derive(Debug, Clone, Copy)]
pub struct FlightLimits {
    /// The largest message a client may send (a statement, bound parameters), in bytes.
    pub max_message_bytes: usize,
    /// How long a shutdown waits for answers still streaming before it ends them.
    pub drain: Duration,
    /// Calls one connection may run at once.
    pub max_streams_per_connection: u32,
}

impl Default for FlightLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            drain: Duration::from_secs(30),
            max_streams_per_connection: 64,
        }
    }
}

/// TLS from a PEM certificate chain and a PEM private key. An error names what failed; the
/// server must not start without the TLS it was asked for.
pub fn tls_config(cert: &Path, key: &Path) -> Result<ServerTlsConfig, String> {
    let chain = std::fs::read(cert)
        .map_err(|error| format!("cannot read the certificate {}: {error}", cert.display()))?;
    let key = std::fs::read(key)
        .map_err(|error| format!("cannot read the private key {}: {error}", key.display()))?;
    // tonic reads the PEM only when the server is built: check it here, where the start can
    // still say what is wrong.
    let config = ServerTlsConfig::new()
        .identity(Identity::from_pem(chain, key))
        .timeout(Duration::from_secs(10));
    Server::builder()
        .tls_config(config.clone())
        .map_err(|error| format!("the certificate and key do not make a TLS setup: {error}"))?;
    Ok(config)
}

/// Serves Flight SQL on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// answers still streaming finish (at most [`FlightLimits::drain`]) and closes the rest.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: SqlEngine,
    auth: Auth,
    tls: Option<ServerTlsConfig>,
    limits: FlightLimits,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let secure = tls.is_some();
    let closing = CancellationToken::new();
    let service =
        service::FlightSql::new(engine, auth.clone(), closing.clone()).into_server(limits);
    let service = InterceptedService::new(service, auth::Authenticate::new(auth, secure));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = Server::builder()
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_adaptive_window(Some(true));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|error| format!("TLS: {error}"))?;
    }
    let stopping = shutdown.clone();
    let server = builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move { stopping.cancelled().await });
    tokio::pin!(server);
    let served = tokio::select! {
        served = &mut server => served,
        () = shutdown.cancelled() => {
            match tokio::time::timeout(limits.drain, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    // tonic runs each connection as a task of its own: end their streams.
                    tracing::warn!("Flight SQL answers still streaming at the end of the drain: ended");
                    closing.cancel();
                    tokio::time::timeout(Duration::from_secs(5), &mut server)
                        .await
                        .unwrap_or(Ok(()))
                }
            }
        }
    };
    served.map_err(|error| format!("Flight SQL: {error}"))
}
