//! The protocol's handlers: the login, simple and extended queries, COPY out, and cancel
//! requests, all through chiso's engine.

use crate::connections::{Connection, Connections};
use crate::session;
use crate::sqlstate::{error, fatal, query_error, shutting_down};
use crate::statements::{classify, Boundary, Command, CopyFormat, CopyKind};
use crate::text;
use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use arrow_pg::encoder::encode_value;
use async_trait::async_trait;
use chiso_api::{Auth, Principal};
use chiso_query::{Params, Protocol, Query, QueryLog, QueryStream, SqlEngine, CATALOG};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures_util::{Sink, SinkExt, StreamExt, TryStreamExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{
    send_execution_response, send_query_response, send_ready_for_query, ExtendedQueryHandler,
    SimpleQueryHandler,
};
use pgwire::api::results::{
    CopyCsvOptions, CopyEncoder, CopyResponse, CopyTextOptions, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type, DEFAULT_NAME,
    METADATA_DATABASE, METADATA_USER,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::{Execute, Parse, Sync as PgSync};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query as SimpleQuery;
use pgwire::messages::startup::{Authentication, ParameterStatus, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

/// The handlers of every connection.
pub(crate) struct Handlers {
    service: Arc<Service>,
}

impl Handlers {
    pub(crate) fn new(
        engine: SqlEngine,
        auth: Auth,
        connections: Arc<Connections>,
        max_sql_bytes: usize,
    ) -> Self {
        let shared = Arc::new(Shared {
            engine,
            auth,
            connections,
            dialect: PostgresCompatibilityParser::new(),
            max_sql_bytes,
        });
        let parser = Arc::new(Parser {
            shared: shared.clone(),
        });
        Self {
            service: Arc::new(Service { shared, parser }),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.service.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.service.clone()
    }
}

struct Shared {
    engine: SqlEngine,
    auth: Auth,
    connections: Arc<Connections>,
    dialect: PostgresCompatibilityParser,
    /// The longest SQL text a statement may have (as `POST /v1/sql` takes).
    max_sql_bytes: usize,
}

pub(crate) struct Service {
    shared: Arc<Shared>,
    parser: Arc<Parser>,
}

/// A prepared statement: what it asks, and for a query its plan (which describes
/// its parameters and columns).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    command: Command,
    plan: Option<LogicalPlan>,
}

pub(crate) struct Parser {
    shared: Arc<Shared>,
}

impl Shared {
    fn connection(&self, client: &(impl ClientInfo + ?Sized)) -> PgWireResult<Arc<Connection>> {
        self.connections
            .get(client.socket_addr())
            .ok_or_else(|| fatal("08006", "the connection is closing"))
    }

    /// Who runs the next statement: the login's token, checked again (a revoked token ends
    /// the connection); a draining server takes no new statement.
    fn principal(&self, connection: &Connection) -> PgWireResult<Principal> {
        if self.connections.draining() {
            return Err(shutting_down());
        }
        let token = connection.token().unwrap_or_default();
        let principal = self.auth.principal_of(&token).map_err(|_| {
            fatal(
                "28P01",
                "the token this connection logged in with was revoked",
            )
        })?;
        principal
            .require_query()
            .map_err(|_| fatal("42501", "this token has no `query` scope"))?;
        Ok(principal)
    }

    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        if sql.len() > self.max_sql_bytes {
            return Err(error(
                "54000",
                format!(
                    "statement too long: {} bytes, chiso takes at most {}",
                    sql.len(),
                    self.max_sql_bytes
                ),
            ));
        }
        self.dialect
            .parse(sql)
            .map_err(|e| error("42601", format!("syntax error: {e}")))
    }

    fn query(&self, statement: Statement, principal: &Principal) -> Query {
        Query {
            sql: statement.to_string(),
            statement: Some(DfStatement::Statement(Box::new(statement))),
            caller: principal.caller(),
            protocol: Protocol::Postgres,
            ..Query::default()
        }
    }

    /// Starts `query` on the engine under the session's time limit.
    async fn start(
        &self,
        metadata: &HashMap<String, String>,
        connection: &Connection,
        mut query: Query,
    ) -> PgWireResult<QueryStream> {
        let id = QueryLog::new_id();
        connection.running(id.clone());
        query.id = Some(id);
        query.timeout = Some(session::statement_timeout(metadata, &self.engine.limits()));
        self.engine.execute(query).await.map_err(query_error)
    }

    /// Runs one statement; its answer is for [`send`] to write.
    async fn run<C>(
        &self,
        client: &mut C,
        connection: &Connection,
        principal: &Principal,
        command: Command,
        params: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Answer>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let limits = self.engine.limits();
        match command {
            Command::Query(statement) => {
                let mut query = self.query(*statement, principal);
                query.params = params.map(Params::Values);
                let stream = self.start(client.metadata(), connection, query).await?;
                let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                let fields = arrow_schema_to_pg_fields(&stream.schema(), format, Some(options))?;
                let fields = Arc::new(fields);
                Ok(Answer::Rows(QueryResponse::new(
                    fields.clone(),
                    rows(stream, fields),
                )))
            }
            Command::Copy(query, copy) => {
                let query = self.query(Statement::Query(query), principal);
                let stream = self.start(client.metadata(), connection, query).await?;
                let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                Ok(Answer::Copy(copy_out(stream, &copy, options)?))
            }
            Command::Set(name, None) if name == "all" => {
                session::reset_all(client.metadata_mut());
                Ok(Answer::Done(Tag::new("RESET")))
            }
            Command::Set(name, Some(_)) if name == "all" => Err(error(
                "42601",
                "SET ALL takes no value: RESET ALL resets every setting",
            )),
            Command::Set(name, value) => {
                let tag = if value.is_some() { "SET" } else { "RESET" };
                let reported =
                    session::set(client.metadata_mut(), &name, value.as_deref(), &limits)?;
                if let Some((name, value)) = reported {
                    client
                        .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                            name.to_owned(),
                            value,
                        )))
                        .await?;
                }
                Ok(Answer::Done(Tag::new(tag)))
            }
            Command::Show(name) => {
                let value = session::show(client.metadata(), &name, &limits)?;
                Ok(Answer::Rows(show(&name, value, format)?))
            }
            Command::Transaction(Boundary::Begin) => Ok(Answer::Begin(Tag::new("BEGIN"))),
            Command::Transaction(Boundary::Commit) => Ok(Answer::End(Tag::new("COMMIT"))),
            Command::Transaction(Boundary::Rollback) => Ok(Answer::End(Tag::new("ROLLBACK"))),
            Command::Discard => {
                session::reset_all(client.metadata_mut());
                Ok(Answer::Done(Tag::new("DISCARD ALL")))
            }
            Command::Deallocate(name) => {
                // pgwire's store lists no names: DEALLOCATE ALL leaves the statements to the
                // end of the connection (or to a Close message, which most drivers send).
                if let Some(name) = name {
                    client.portal_store().rm_statement(&name);
                }
                Ok(Answer::Done(Tag::new("DEALLOCATE")))
            }
            Command::Nothing(tag) => Ok(Answer::Done(Tag::new(tag))),
        }
    }
}

/// One statement's answer.
enum Answer {
    /// Rows (a query, `SHOW`).
    Rows(QueryResponse),
    /// `COPY … TO STDOUT`.
    Copy(CopyOut),
    /// A command's tag.
    Done(Tag),
    /// A transaction begins.
    Begin(Tag),
    /// A transaction ends.
    End(Tag),
}

impl Answer {
    /// As pgwire's own answer, for the one path pgwire writes itself (an Execute that asks
    /// for part of a query's rows).
    fn into_response(self) -> Response {
        match self {
            Answer::Rows(rows) => Response::Query(rows),
            // pgwire adds the binary trailer itself.
            Answer::Copy(copy) => {
                let data = copy.data.try_filter_map(|(data, row)| {
                    let trailer = !row && data.data.as_ref() == BINARY_COPY_TRAILER;
                    std::future::ready(Ok((!trailer).then_some(data)))
                });
                Response::CopyOut(CopyResponse::new(copy.format, copy.columns, data))
            }
            Answer::Done(tag) => Response::Execution(tag),
            Answer::Begin(tag) => Response::TransactionStart(tag),
            Answer::End(tag) => Response::TransactionEnd(tag),
        }
    }
}

/// Writes one statement's answer as PostgreSQL does (a simple query describes its rows, an
/// Execute does not); the transaction status after it.
async fn send<C>(
    client: &mut C,
    answer: Answer,
    describe: bool,
    status: TransactionStatus,
) -> PgWireResult<TransactionStatus>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match answer {
        Answer::Rows(rows) => send_query_response(client, rows, describe).await?,
        Answer::Copy(copy) => send_copy(client, copy).await?,
        Answer::Done(tag) => send_execution_response(client, tag).await?,
        Answer::Begin(tag) => {
            send_execution_response(client, tag).await?;
            return Ok(status.to_in_transaction_state());
        }
        Answer::End(tag) => {
            send_execution_response(client, tag).await?;
            return Ok(status.to_idle_state());
        }
    }
    Ok(status)
}

/// Writes a `COPY … TO STDOUT`. An error midway ends it with an ErrorResponse, which ends
/// the copy for libpq, pgjdbc and psycopg alike (pgwire's own writer sends a `CopyFail`, a
/// message only a client may send, and libpq drops the connection on it).
async fn send_copy<C>(client: &mut C, copy: CopyOut) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let CopyOut {
        format,
        columns,
        mut data,
    } = copy;
    let column_formats = vec![i16::from(format); columns];
    client
        .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            format,
            columns as i16,
            column_formats,
        )))
        .await?;
    let mut rows = 0;
    while let Some(piece) = data.next().await {
        let (piece, row) = piece?;
        rows += usize::from(row);
        client.feed(PgWireBackendMessage::CopyData(piece)).await?;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    send_execution_response(client, Tag::new("COPY").with_rows(rows)).await
}

/// The answer of `SHOW name`: one row, one text column.
fn show(name: &str, value: String, format: &Format) -> PgWireResult<QueryResponse> {
    let field = FieldInfo::new(name.into(), None, None, Type::TEXT, format.format_for(0));
    let fields = Arc::new(vec![field]);
    let mut encoder = pgwire::api::results::DataRowEncoder::new(fields.clone());
    encoder.encode_field(&value)?;
    let row = encoder.take_row();
    Ok(QueryResponse::new(
        fields,
        futures_util::stream::iter([Ok(row)]),
    ))
}

/// The rows of an answer as they come, a batch at a time; an error ends them.
fn rows(
    stream: QueryStream,
    fields: Arc<Vec<FieldInfo>>,
) -> impl futures_util::Stream<Item = PgWireResult<DataRow>> + Send {
    futures_util::stream::unfold(Some(stream), move |stream| {
        let fields = fields.clone();
        async move {
            let mut stream = stream?;
            let rows: Vec<PgWireResult<DataRow>> = match stream.next().await? {
                Ok(batch) => {
                    let batch = match text::timestamps_as_text(batch, &fields) {
                        Ok(batch) => batch,
                        Err(error) => return Some((vec![Err(error)], None)),
                    };
                    let rows: Vec<_> = encode_recordbatch(fields, batch).collect();
                    let bytes = rows.iter().flatten().map(|row| row.data.len() as u64).sum();
                    stream.add_bytes(bytes);
                    rows
                }
                Err(error) => return Some((vec![Err(query_error(error))], None)),
            };
            Some((rows, Some(stream)))
        }
    })
    .flat_map(futures_util::stream::iter)
}

/// `COPY (query) TO STDOUT`'s answer: its format, and its data as it comes, each piece
/// marked whether it is a row (the header and the binary signature and trailer are not).
struct CopyOut {
    format: i8,
    columns: usize,
    data: futures_util::stream::BoxStream<'static, PgWireResult<(CopyData, bool)>>,
}

/// The signature, flags and header extension a binary copy begins with.
const BINARY_COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The field count that ends a binary copy.
const BINARY_COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// `COPY (query) TO STDOUT`: the rows as text, CSV or PostgreSQL's binary copy format.
fn copy_out(
    stream: QueryStream,
    copy: &CopyFormat,
    options: Arc<FormatOptions>,
) -> PgWireResult<CopyOut> {
    let binary = copy.kind == CopyKind::Binary;
    let format = if binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let fields = arrow_schema_to_pg_fields(&stream.schema(), &format, Some(options))?;
    let fields = Arc::new(fields);
    let columns = fields.len();
    let mut header = Vec::new();
    if copy.header {
        // The column names, as text whatever the columns' types.
        let names: Vec<FieldInfo> = fields
            .iter()
            .map(|field| {
                FieldInfo::new(
                    field.name().into(),
                    None,
                    None,
                    Type::TEXT,
                    FieldFormat::Text,
                )
            })
            .collect();
        let mut encoder = copy_encoder(copy, Arc::new(names));
        for field in fields.iter() {
            encoder.encode_field(&field.name())?;
        }
        header.push(Ok((encoder.take_copy(), false)));
    }
    let encoder = copy_encoder(copy, fields.clone());
    let body = futures_util::stream::unfold(Some((stream, encoder, false)), move |state| {
        let fields = fields.clone();
        async move {
            let (mut stream, mut encoder, any) = state?;
            let batch = match stream.next().await {
                // The encoder writes the binary signature before the first row; with none,
                // the signature goes out alone.
                None if binary => {
                    let mut end = Vec::new();
                    if !any {
                        end.push(Ok((CopyData::new(BINARY_COPY_HEADER.into()), false)));
                    }
                    end.push(Ok((CopyData::new(BINARY_COPY_TRAILER.into()), false)));
                    return Some((end, None));
                }
                None => return None,
                Some(Err(error)) => return Some((vec![Err(query_error(error))], None)),
                Some(Ok(batch)) => batch,
            };
            let batch = match text::timestamps_as_text(batch, &fields) {
                Ok(batch) => batch,
                Err(error) => return Some((vec![Err(error)], None)),
            };
            let schema = batch.schema();
            let mut rows = Vec::with_capacity(batch.num_rows());
            let mut bytes = 0;
            for row in 0..batch.num_rows() {
                for (column, (array, field)) in
                    batch.columns().iter().zip(schema.fields()).enumerate()
                {
                    if let Err(error) =
                        encode_value(&mut encoder, array, row, field, &fields[column])
                    {
                        rows.push(Err(error));
                        return Some((rows, None));
                    }
                }
                let data = encoder.take_copy();
                bytes += data.data.len() as u64;
                rows.push(Ok((data, true)));
            }
            stream.add_bytes(bytes);
            let any = any || !rows.is_empty();
            Some((rows, Some((stream, encoder, any))))
        }
    })
    .flat_map(futures_util::stream::iter);
    Ok(CopyOut {
        format: i8::from(binary),
        columns,
        data: Box::pin(futures_util::stream::iter(header).chain(body)),
    })
}

/// The encoder of a copy's rows in the format and with the options it asks.
fn copy_encoder(copy: &CopyFormat, fields: Arc<Vec<FieldInfo>>) -> CopyEncoder {
    match copy.kind {
        CopyKind::Text => {
            let mut options = CopyTextOptions::default();
            if let Some(delimiter) = copy.delimiter {
                options.delimiter = delimiter.to_string().into();
            }
            if let Some(null) = &copy.null {
                options.null_string = null.as_str().into();
            }
            CopyEncoder::new_text(fields, options)
        }
        CopyKind::Csv => {
            let mut options = CopyCsvOptions::default();
            if let Some(delimiter) = copy.delimiter {
                options.delimiter = delimiter.to_string().into();
            }
            if let Some(null) = &copy.null {
                options.null_string = null.as_str().into();
            }
            if let Some(quote) = copy.quote {
                options.quote = quote.to_string().into();
                options.escape = quote.to_string().into();
            }
            if let Some(escape) = copy.escape {
                options.escape = escape.to_string().into();
            }
            CopyEncoder::new_csv(fields, options)
        }
        CopyKind::Binary => CopyEncoder::new_binary(fields),
    }
}

/// The server's parameters after a login, from the session's settings.
struct ServerParameters(chiso_query::SqlLimits);

impl ServerParameterProvider for ServerParameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        Some(session::reported(client.metadata(), &self.0))
    }
}

#[async_trait]
impl StartupHandler for Service {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let shared = &self.shared;
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let metadata = client.metadata();
                let database = metadata
                    .get(METADATA_DATABASE)
                    .or_else(|| metadata.get(METADATA_USER))
                    .cloned()
                    .unwrap_or_default();
                if database != CATALOG {
                    return Err(fatal(
                        "3D000",
                        format!("database \"{database}\" does not exist: chiso's database is \"{CATALOG}\""),
                    ));
                }
                if !shared.auth.is_enabled() {
                    return self.logged_in(client, String::new()).await;
                }
                if !client.is_secure() && !client.socket_addr().ip().is_loopback() {
                    return Err(fatal(
                        "28000",
                        "chiso takes a password from another host only over TLS: connect with sslmode=require",
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let token = password.into_password()?.password;
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let principal = shared.auth.principal_of(&token).map_err(|_| {
                    fatal(
                        "28P01",
                        format!("password authentication failed for user \"{user}\": the password is a chiso token, and this one is unknown or was revoked"),
                    )
                })?;
                principal
                    .require_query()
                    .map_err(|_| fatal("28000", "this token has no `query` scope"))?;
                self.logged_in(client, token).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Service {
    /// Ends a login: the session's settings, the cancel key, and the parameters.
    async fn logged_in<C>(&self, client: &mut C, token: String) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let shared = &self.shared;
        let limits = shared.engine.limits();
        session::adopt_startup(client.metadata_mut(), &limits);
        let connection = shared.connection(client)?;
        let pid = rand::random::<i32>() & i32::MAX;
        let key = SecretKey::I32(rand::random());
        client.set_pid_and_secret_key(pid, key.clone());
        if let Some(revoked) = shared.auth.revocation_of(&token) {
            connection.close_on(revoked);
        }
        connection.logged_in(token, pid, key);
        finish_authentication(client, &ServerParameters(limits)).await
    }
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn on_query<C>(&self, client: &mut C, query: SimpleQuery) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = self.shared.connection(client)?;
        connection.busy();
        let result = self.answer_query(client, &query.query).await;
        if connection.idle(&self.shared.connections) && result.is_ok() {
            say_goodbye(client).await;
        }
        result
    }

    /// pgwire calls this only from its own `on_query`, which chiso replaces: a simple query's
    /// statements run one after another, each once the one before it is written.
    async fn do_query<C>(&self, client: &mut C, sql: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.answer_query(client, sql).await.map(|()| Vec::new())
    }
}

impl Service {
    /// Answers a simple query: each statement starts once the one before it is written (so
    /// a message of many statements runs one at a time, and a cancel request reaches the
    /// one running); the first error ends the message.
    async fn answer_query<C>(&self, client: &mut C, sql: &str) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        begin(client)?;
        let shared = &self.shared;
        let connection = shared.connection(client)?;
        shared.principal(&connection)?;
        let statements = shared.parse(sql)?;
        if statements.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        for statement in statements {
            let principal = shared.principal(&connection)?;
            let command = classify(statement)?;
            let answer = shared
                .run(
                    client,
                    &connection,
                    &principal,
                    command,
                    None,
                    &Format::UnifiedText,
                )
                .await?;
            let status = send(client, answer, true, client.transaction_status()).await?;
            client.set_transaction_status(status);
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        send_ready_for_query(client, client.transaction_status()).await
    }

    /// Runs an Execute's portal: its parameters bound, its statement run.
    async fn answer_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<Answer>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let shared = &self.shared;
        let connection = shared.connection(client)?;
        let principal = shared.principal(&connection)?;
        let prepared = &portal.statement.statement;
        let params = match &prepared.plan {
            Some(plan) => {
                let inferred = parameter_types(plan)?;
                let inferred: Vec<Option<&DataType>> =
                    inferred.iter().map(Option::as_ref).collect();
                Some(deserialize_parameters(portal, &inferred)?)
            }
            None => None,
        };
        shared
            .run(
                client,
                &connection,
                &principal,
                prepared.command.clone(),
                params,
                &portal.result_column_format,
            )
            .await
    }

    /// An Execute that runs its portal to the end, rows streamed as they come (pgwire's own
    /// Execute gathers every row of a portal before it writes one).
    async fn execute_whole<C>(&self, client: &mut C, portal: &Portal<Prepared>) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        begin(client)?;
        let answer = self.answer_portal(client, portal).await?;
        let status = send(client, answer, false, client.transaction_status()).await?;
        *portal.state.lock().await = PortalExecutionState::Finished;
        client.set_transaction_status(status);
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}

/// A statement begins on `client`, which must be ready for one.
fn begin(client: &mut impl ClientInfo) -> PgWireResult<()> {
    if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
        return Err(PgWireError::NotReadyForQuery);
    }
    client.set_state(PgWireConnectionState::QueryInProgress);
    Ok(())
}

/// Tells a client its connection closes because the server shuts down.
async fn say_goodbye<C>(client: &mut C)
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
{
    if let PgWireError::UserError(info) = shutting_down() {
        let _ = client
            .send(PgWireBackendMessage::ErrorResponse((*info).into()))
            .await;
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let shared = &self.shared;
        let connection = shared.connection(client)?;
        let principal = shared.principal(&connection)?;
        let mut statements = shared.parse(sql)?;
        if statements.len() > 1 {
            return Err(error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let command = classify(statement)?;
        let plan = match &command {
            Command::Query(statement) => {
                let query = shared.query((**statement).clone(), &principal);
                Some(shared.engine.plan(&query).await.map_err(query_error)?)
            }
            _ => None,
        };
        Ok(Some(Prepared { command, plan }))
    }

    fn get_parameter_types(&self, prepared: &Prepared) -> PgWireResult<Vec<Type>> {
        let Some(plan) = &prepared.plan else {
            return Ok(Vec::new());
        };
        parameter_types(plan)?
            .iter()
            .map(|data_type| match data_type {
                Some(data_type) => into_pg_type(data_type),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        prepared: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match (&prepared.command, &prepared.plan) {
            (Command::Query(_), Some(plan)) => {
                let schema = chiso_query::answer_schema(plan.schema().inner());
                arrow_schema_to_pg_fields(&schema, format, None)
            }
            (Command::Show(name), _) => Ok(vec![FieldInfo::new(
                name.clone(),
                None,
                None,
                Type::TEXT,
                format.format_for(0),
            )]),
            _ => Ok(Vec::new()),
        }
    }
}

/// The most parameters a statement may have (a Bind message counts them in 16 bits).
const MAX_PARAMETERS: usize = u16::MAX as usize;

/// The types of a plan's parameters, `$1` first; `None` where the plan does not tell.
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| error("42P18", format!("cannot tell the parameters' types: {e}")))?;
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(id, data_type)| Some((id.strip_prefix('$')?.parse().ok()?, data_type)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    // A Bind carries at most 65 535 values; `$0` and `$2000000000` name none of them (and the
    // list below must not be sized by a number a client wrote).
    if let Some((n, _)) = numbered
        .iter()
        .find(|(n, _)| !(1..=MAX_PARAMETERS).contains(n))
    {
        return Err(error("42P02", format!("there is no parameter ${n}")));
    }
    let count = numbered.last().map_or(0, |(n, _)| *n);
    let mut ordered = vec![None; count];
    for (n, data_type) in numbered {
        ordered[n - 1] = data_type;
    }
    Ok(ordered)
}

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.shared.connection(client)?.busy();
        let parser = self.query_parser();
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        match pgwire::api::stmt::StoredStatement::parse(client, &message, parser).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        client
            .send(PgWireBackendMessage::ParseComplete(
                pgwire::messages::extendedquery::ParseComplete::new(),
            ))
            .await?;
        Ok(())
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.shared.connection(client)?.busy();
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if let Some(Entry::Value(portal)) = client.portal_store().get_portal(name) {
            let initial = matches!(*portal.state.lock().await, PortalExecutionState::Initial);
            let query = matches!(portal.statement.statement.command, Command::Query(_));
            // pgwire's Execute serves what it does well: part of a query's rows (a cursor
            // that fetches so many at a time) and the rest of a suspended portal.
            if initial && (message.max_rows == 0 || !query) {
                return self.execute_whole(client, &portal).await;
            }
        }
        self._on_execute(client, message).await
    }

    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                client.transaction_status(),
            )))
            .await?;
        client.flush().await?;
        let connection = self.shared.connection(client)?;
        if connection.idle(&self.shared.connections) {
            say_goodbye(client).await;
        }
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.answer_portal(client, portal)
            .await
            .map(Answer::into_response)
    }
}

#[async_trait]
impl CancelHandler for Service {
    /// A cancel request (its own connection, with the key the login gave): cancels the query
    /// that connection runs, as `DELETE /v1/queries/{id}` would.
    async fn on_cancel_request(&self, request: CancelRequest) {
        let Some(id) = self
            .shared
            .connections
            .query_of(request.pid, &request.secret_key)
        else {
            return;
        };
        let admin = chiso_query::Caller {
            token_id: "admin".into(),
            admin: true,
            quota: None,
            scope: chiso_query::ReadScope::All,
        };
        if self.shared.engine.queries().cancel(&id, &admin) {
            tracing::info!(query = id, "a PostgreSQL client cancelled its query");
        }
    }
}
