//! The Flight SQL service: statements, prepared statements with parameters, and the catalog
//! calls (catalogs, schemas, tables, table types, SqlInfo), all through chiso's engine.

use crate::auth::Token;
use crate::handle::{Handle, Signer};
use crate::status::{flight_status, query_status};
use crate::FlightLimits;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use chiso_api::{Auth, Principal};
use chiso_query::{answer_schema, Params, Protocol, Query, SqlEngine, CATALOG};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Expr, Value};
use futures_util::{Stream, TryStreamExt};
use prost::Message;
use std::pin::Pin;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

type DoGetStream = <FlightSql as FlightService>::DoGetStream;

/// The service: the engine, what it says of itself (SqlInfo), the key its handles are
/// signed with, and what ends every stream when the drain runs out.
pub(crate) struct FlightSql {
    engine: SqlEngine,
    auth: Auth,
    info: SqlInfoData,
    signer: Signer,
    closing: CancellationToken,
}

impl FlightSql {
    pub(crate) fn new(engine: SqlEngine, auth: Auth, closing: CancellationToken) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "chiso");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        info.append(SqlInfo::SqlDdlCatalog, false);
        info.append(SqlInfo::SqlDdlSchema, false);
        info.append(SqlInfo::SqlDdlTable, false);
        let info = info.build().expect("chiso's SqlInfo is well formed");
        Self {
            engine,
            auth,
            info,
            signer: Signer::new(),
            closing,
        }
    }

    /// The gRPC service, with the largest message a client may send.
    pub(crate) fn into_server(self, limits: FlightLimits) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(usize::MAX)
    }

    /// The query a statement's handle asks, as `request`'s caller asks it.
    fn query<T>(&self, handle: &Handle, request: &Request<T>) -> Result<Query, Status> {
        let principal = principal(request)?;
        Ok(Query {
            sql: handle.sql.clone(),
            statement: with_numbered_placeholders(&handle.sql),
            params: handle.values()?.map(Params::Values),
            timeout: grpc_timeout(request.metadata()),
            caller: principal.caller(),
            protocol: Protocol::FlightSql,
            ..Query::default()
        })
    }

    /// Plans `query` (refusing what the engine refuses) and the schema of its answer, with
    /// its bound values (a parameter among the columns has the type of its value).
    async fn plan(&self, query: &Query) -> Result<(LogicalPlan, SchemaRef), Status> {
        let plan = self.engine.plan(query).await.map_err(query_status)?;
        let bound = match &query.params {
            Some(Params::Values(values)) => plan
                .clone()
                .with_param_values(values.clone())
                .map_err(|error| query_status(error.into()))?,
            _ => plan.clone(),
        };
        let schema = flight_schema(answer_schema(bound.schema().inner()));
        Ok((plan, schema))
    }

    /// A statement's FlightInfo: its answer's schema, and one endpoint whose ticket runs it.
    async fn statement_info<T>(
        &self,
        handle: &Handle,
        ticket: Vec<u8>,
        request: Request<T>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let query = self.query(handle, &request)?;
        let (_, schema) = self.plan(&query).await?;
        info(&schema, ticket, descriptor)
    }

    /// Runs a statement's handle; its answer streams batch by batch (the schema first, even
    /// with no rows). The client going away drops the stream, which cancels the query; the
    /// token's revocation ends it with an error.
    async fn run<T>(
        &self,
        handle: &Handle,
        request: Request<T>,
    ) -> Result<Response<DoGetStream>, Status> {
        let query = self.query(handle, &request)?;
        let revoked = self.revocation(&request)?;
        let (_, schema) = self.plan(&query).await?;
        let stream = self.engine.execute(query).await.map_err(query_status)?;
        let closing = self.closing.clone();
        let id = stream.id().to_owned();
        let counter = stream.byte_counter();
        let batches = futures_util::stream::unfold(Some(stream), move |stream| {
            let (revoked, closing) = (revoked.clone(), closing.clone());
            async move {
                let mut stream = stream?;
                let stop = |status| Some((Err(tonic_error(status)), None));
                tokio::select! {
                    next = stream.next() => {
                        let next = next?.map_err(|error| tonic_error(query_status(error)));
                        Some((next, Some(stream)))
                    }
                    () = revoked.cancelled() => stop(Status::unauthenticated("the token was revoked")),
                    () = closing.cancelled() => stop(Status::unavailable("chiso is shutting down")),
                }
            }
        });
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .inspect_ok(move |data| {
                if let Some(counter) = &counter {
                    counter.add((data.data_header.len() + data.data_body.len()) as u64);
                }
            })
            .map_err(flight_status);
        let mut response = Response::new(Box::pin(data) as DoGetStream);
        if let Ok(id) = id.parse() {
            response.metadata_mut().insert("x-chiso-query-id", id);
        }
        Ok(response)
    }

    /// What ends the caller's streams when its token is revoked. A token revoked since the
    /// interceptor checked it has no signal left: refused as revoked.
    fn revocation<T>(&self, request: &Request<T>) -> Result<CancellationToken, Status> {
        let principal = principal(request)?;
        let token = request.extensions().get::<Token>().map(|t| t.0.as_str());
        match token.and_then(|token| self.auth.revocation_of(token)) {
            Some(revoked) => Ok(revoked),
            // Auth off, and the environment's admin token, are never revoked.
            None if !self.auth.is_enabled() || principal.token_id == "admin" => {
                Ok(CancellationToken::new())
            }
            None => Err(Status::unauthenticated("the token was revoked")),
        }
    }

    /// Every table the caller may read.
    async fn tables<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Vec<chiso_query::TableEntry>, Status> {
        let principal = principal(request)?;
        self.engine
            .tables(&principal.caller())
            .await
            .map_err(query_status)
    }
}

/// The caller the interceptor found.
fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no token"))
}

/// A status inside the encoder's stream, kept as it is (not made internal).
fn tonic_error(status: Status) -> FlightError {
    FlightError::Tonic(Box::new(status))
}

/// The schema the encoder sends for `schema` (dictionaries as their values): what a
/// FlightInfo must announce, as clients compare the two.
fn flight_schema(schema: SchemaRef) -> SchemaRef {
    FlightDataEncoderBuilder::new()
        .with_schema(schema.clone())
        .build(futures_util::stream::empty())
        .known_schema()
        .unwrap_or(schema)
}

/// A FlightInfo of `schema` with one endpoint (this server) for `ticket`.
fn info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|error| Status::internal(error.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The FlightInfo of a catalog call: the answer's schema, and the command itself as the
/// ticket.
fn command_info<T: ProstMessageExt>(
    command: &T,
    schema: SchemaRef,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    principal(&request)?;
    info(
        &schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )
}

/// One batch (a catalog answer) as a DoGet stream.
fn one_batch(
    schema: SchemaRef,
    batch: arrow_flight::error::Result<RecordBatch>,
) -> Response<DoGetStream> {
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures_util::stream::once(async move { batch }))
        .map_err(flight_status);
    Response::new(Box::pin(data))
}

/// ADBC and the DB-API write parameters as `?`; DataFusion reads `$1`, `$2`, … Rewrites the
/// `?` placeholders of a one-statement text in order; `None` when there are none (or the text
/// does not parse: the engine then says why).
fn with_numbered_placeholders(sql: &str) -> Option<DfStatement> {
    if !sql.contains('?') {
        return None;
    }
    let mut statements = DFParser::parse_sql(sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    let mut statement = statements.pop_front()?;
    let DfStatement::Statement(inner) = &mut statement else {
        return None;
    };
    let mut count = 0;
    let _ = visit_expressions_mut(inner.as_mut(), |expr| {
        if let Expr::Value(value) = expr {
            if matches!(&value.value, Value::Placeholder(p) if p == "?") {
                count += 1;
                value.value = Value::Placeholder(format!("${count}"));
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    (count > 0).then_some(statement)
}

/// The parameters of a plan as a schema: `$1` first, `Null` where the plan does not tell.
fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, Status> {
    let types = plan
        .get_parameter_types()
        .map_err(|error| Status::invalid_argument(format!("parameters: {error}")))?;
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(id, data_type)| Some((id.strip_prefix('$')?.parse().ok()?, data_type)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let fields: Vec<Field> = numbered
        .into_iter()
        .map(|(n, data_type)| {
            Field::new(format!("${n}"), data_type.unwrap_or(DataType::Null), true)
        })
        .collect();
    Ok(Schema::new(fields))
}

/// A schema as the IPC message Flight SQL carries it.
fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|error: datafusion::arrow::error::ArrowError| {
            Status::internal(error.to_string())
        })?;
    Ok(message.0)
}

/// Messages a DoPut of parameters may have: a schema, a row, and room for empty batches.
const MAX_PARAMETER_MESSAGES: usize = 8;

/// Refuses an IPC message whose buffers are compressed.
fn uncompressed(data: &arrow_flight::FlightData) -> Result<(), FlightError> {
    use datafusion::arrow::ipc::root_as_message;
    if data.data_header.is_empty() {
        return Ok(());
    }
    let message = root_as_message(&data.data_header)
        .map_err(|_| FlightError::protocol("not an Arrow IPC message"))?;
    let compressed = message
        .header_as_record_batch()
        .and_then(|batch| batch.compression())
        .is_some()
        || message
            .header_as_dictionary_batch()
            .and_then(|dictionary| dictionary.data())
            .and_then(|batch| batch.compression())
            .is_some();
    match compressed {
        true => Err(FlightError::protocol(
            "send parameters uncompressed (they are one row)",
        )),
        false => Ok(()),
    }
}

/// The time limit a client set on its call (`grpc-timeout`: `5S`, `300m`, …).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (number, unit) = value.split_at(value.len().checked_sub(1)?);
    let number: u64 = number.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(number.checked_mul(3600)?),
        "M" => Duration::from_secs(number.checked_mul(60)?),
        "S" => Duration::from_secs(number),
        "m" => Duration::from_millis(number),
        "u" => Duration::from_micros(number),
        "n" => Duration::from_nanos(number),
        _ => return None,
    })
}

/// Flight SQL's names of table types.
fn table_type(view: bool) -> &'static str {
    if view {
        "VIEW"
    } else {
        "TABLE"
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// The interceptor has checked the credentials (Basic or Bearer); the answer hands back
    /// the token as the `Bearer` header clients send from then on.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        principal(&request)?;
        let token = request
            .extensions()
            .get::<Token>()
            .map(|token| token.0.clone())
            .unwrap_or_default();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: bytes::Bytes::new(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures_util::stream::iter([Ok(reply)])));
        if !token.is_empty() {
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::unauthenticated("the token is not ASCII"))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = Handle::new(query.query);
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode(&self.signer),
        }
        .as_any()
        .encode_to_vec();
        let descriptor = request.get_ref().clone();
        self.statement_info(&handle, ticket, request, descriptor)
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = Handle::decode_from(&ticket.statement_handle, &self.signer)?;
        self.run(&handle, request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let handle = Handle::new(query.query);
        let (plan, schema) = self.plan(&self.query(&handle, &request)?).await?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode(&self.signer),
            dataset_schema: ipc_schema(&schema)?,
            parameter_schema: ipc_schema(&parameter_schema(&plan)?)?,
        })
    }

    /// Binds a row of values: the answer is a new handle that carries them.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        principal(&request)?;
        let handle = Handle::decode_from(&query.prepared_statement_handle, &self.signer)?;
        // At most a few messages (schema, one row), none compressed: a compressed buffer
        // names the size it unpacks to, which a client could make anything.
        let mut messages = 0;
        let data = request
            .into_inner()
            .map_err(FlightError::from)
            .and_then(move |data| {
                messages += 1;
                let checked = match messages > MAX_PARAMETER_MESSAGES {
                    true => Err(FlightError::protocol(
                        "bind one row of parameters at a time",
                    )),
                    false => uncompressed(&data).map(|()| data),
                };
                std::future::ready(checked)
            });
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data)
                .try_collect()
                .await
                .map_err(|error| Status::invalid_argument(format!("parameters: {error}")))?;
        let rows: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
        let bound = match rows.as_slice() {
            [] => handle,
            [row] => handle.bind(row)?,
            _ => {
                return Err(Status::invalid_argument(
                    "bind one row of parameters at a time",
                ))
            }
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.encode(&self.signer)),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = Handle::decode_from(&query.prepared_statement_handle, &self.signer)?;
        let ticket = query.as_any().encode_to_vec();
        let descriptor = request.get_ref().clone();
        self.statement_info(&handle, ticket, request, descriptor)
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = Handle::decode_from(&query.prepared_statement_handle, &self.signer)?;
        self.run(&handle, request).await
    }

    /// Handles are the statements themselves: nothing to free.
    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        principal(&request).map(|_| ())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&query, schema, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&query, schema, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tables = self.tables(&request).await?;
        let mut builder = query.into_builder();
        let mut schemas: Vec<(&str, &str)> = tables
            .iter()
            .map(|t| (t.catalog.as_str(), t.schema.as_str()))
            .collect();
        schemas.dedup();
        for (catalog, schema) in schemas {
            builder.append(catalog, schema);
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&query, schema, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tables = self.tables(&request).await?;
        let mut builder = query.into_builder();
        for table in &tables {
            builder
                .append(
                    &table.catalog,
                    &table.schema,
                    &table.name,
                    table_type(table.view),
                    &table.columns,
                )
                .map_err(Status::from)?;
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&query, schema, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(table_type(false));
        builder.append(table_type(true));
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.info).schema();
        command_info(&query, schema, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        principal(&request)?;
        let builder = query.into_builder(&self.info);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    /// Actions chiso does not take (sessions, transactions, cancel by id): a client cancels
    /// by dropping its stream.
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        Err(Status::unimplemented(format!(
            "chiso does not take the action {:?}",
            request.get_ref().r#type
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_placeholders() {
        let statement =
            with_numbered_placeholders("SELECT * FROM t WHERE a = ? AND b IN (?, '?')").unwrap();
        assert_eq!(
            statement.to_string(),
            "SELECT * FROM t WHERE a = $1 AND b IN ($2, '?')"
        );
        assert!(with_numbered_placeholders("SELECT '?'").is_none());
        assert!(with_numbered_placeholders("SELECT $1").is_none());
    }

    #[test]
    fn grpc_timeouts_read_as_durations() {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "1500m".parse().unwrap());
        assert_eq!(grpc_timeout(&metadata), Some(Duration::from_millis(1500)));
        metadata.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(grpc_timeout(&metadata), Some(Duration::from_secs(2)));
        metadata.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(grpc_timeout(&metadata), None);
    }
}
