//! The open connections: who each one logged in as, the query it runs (for cancel requests,
//! which arrive on a connection of their own), and when it must close (its token revoked,
//! or the server draining).

use pgwire::messages::startup::SecretKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Every open connection, by its peer address (unique while it is open).
#[derive(Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<SocketAddr, Arc<Connection>>>,
    draining: AtomicBool,
}

/// One client connection.
pub(crate) struct Connection {
    closed: CancellationToken,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The password it logged in with: a token, checked again before every statement.
    token: Option<String>,
    /// The key a cancel request must show.
    key: Option<(i32, SecretKey)>,
    /// The id of the query it started last.
    query: Option<String>,
    /// Between a statement's first message and the `ReadyForQuery` that ends it.
    busy: bool,
}

impl Connections {
    /// Registers the connection from `peer`.
    pub(crate) fn open(&self, peer: SocketAddr) -> Arc<Connection> {
        let connection = Arc::new(Connection {
            closed: CancellationToken::new(),
            state: Mutex::default(),
        });
        self.lock().insert(peer, connection.clone());
        connection
    }

    /// The connection from `peer`.
    pub(crate) fn get(&self, peer: SocketAddr) -> Option<Arc<Connection>> {
        self.lock().get(&peer).cloned()
    }

    /// Forgets `connection`, which came from `peer` (and not a later connection from the
    /// same address, if the port was reused before this one's task ended).
    pub(crate) fn remove(&self, peer: SocketAddr, connection: &Arc<Connection>) {
        let mut open = self.lock();
        if open
            .get(&peer)
            .is_some_and(|open| Arc::ptr_eq(open, connection))
        {
            open.remove(&peer);
        }
    }

    /// The query running on the connection that holds `key`.
    pub(crate) fn query_of(&self, pid: i32, key: &SecretKey) -> Option<String> {
        self.lock().values().find_map(|connection| {
            let state = connection.state();
            match &state.key {
                Some((p, k)) if *p == pid && k.eq_value(key) => state.query.clone(),
                _ => None,
            }
        })
    }

    /// Whether the server is shutting down: no statement starts any more.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts the drain: idle connections close now, busy ones when their statement ends.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for connection in self.lock().values() {
            if !connection.state().busy {
                connection.closed.cancel();
            }
        }
    }

    /// Closes every connection, running statements or not.
    pub(crate) fn close_all(&self) {
        for connection in self.lock().values() {
            connection.closed.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Connection>>> {
        self.open.lock().expect("connections lock")
    }
}

impl Connection {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("connection lock")
    }

    /// Marks the connection closed (its task ended): ends the task that watched its token.
    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves when the connection must close.
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Closes the connection when `revoked` is cancelled (its token revoked), at once, even
    /// in the middle of a statement.
    pub(crate) fn close_on(&self, revoked: CancellationToken) {
        let closed = self.closed.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = revoked.cancelled() => closed.cancel(),
                () = closed.cancelled() => {}
            }
        });
    }

    /// Records a successful login.
    pub(crate) fn logged_in(&self, token: String, pid: i32, key: SecretKey) {
        let mut state = self.state();
        state.token = Some(token);
        state.key = Some((pid, key));
    }

    /// The token it logged in with.
    pub(crate) fn token(&self) -> Option<String> {
        self.state().token.clone()
    }

    /// Records the query it runs now.
    pub(crate) fn running(&self, id: String) {
        self.state().query = Some(id);
    }

    /// A statement begins.
    pub(crate) fn busy(&self) {
        self.state().busy = true;
    }

    /// A statement ended (its `ReadyForQuery` sent); closes the connection if the server
    /// drains. Whether it closes.
    pub(crate) fn idle(&self, connections: &Connections) -> bool {
        self.state().busy = false;
        let draining = connections.draining();
        if draining {
            self.closed.cancel();
        }
        draining
    }
}
