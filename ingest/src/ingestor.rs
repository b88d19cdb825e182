//! The one way into the log: every entry point — the HTTP API, `chiso import`, `serve --demo`,
//! the ranking publisher — appends through an [`Ingestor`]. An event is checked on its own
//! ([`Ingestor::check`]: the catalog decodes it), then appended with the principal's
//! [`Grant`], which the write model authorises in the log's writer, in the same step as the
//! rules and the append. Nothing reaches the writer undecoded or without a grant.

use crate::catalog::{decode, DomainEvent};
use crate::error::IngestError;
use crate::write_model::{Grant, IngestModel};
use chiso_store::{
    AppendRequest, AppendResult, Appender, Error, ErrorKind, EventStore, ExpectedRevision, NoRules,
    ProposedEvent, Rejection, StreamName,
};
use chrono::{DateTime, Utc};

/// Appends to the log, through the catalog's rules or, for a log used as a generic event
/// store, without them. Cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    log: Log,
}

#[derive(Clone)]
enum Log {
    /// Events of the catalog, checked by [`IngestModel`].
    Catalog(Appender<IngestModel>),
    /// Any event type and object data: the envelope alone is checked. Such a log has no
    /// agencies to check a grant against, so it takes appends only from [`Grant::All`].
    Generic(Appender<NoRules>),
}

/// Who appends: the name the log records with each of their events (`events.recorded_by`),
/// and what they may append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// 1 to 255 bytes: a token's id, `admin`, `local` (authentication off), `import`,
    /// `demo`, `chiso` (the server itself).
    pub id: String,
    /// What the write model lets them append.
    pub grant: Grant,
}

impl Author {
    /// `id`, with every grant a client may have.
    pub fn admin(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            grant: Grant::All,
        }
    }

    /// chiso itself (rankings, the token registry's records).
    pub fn chiso() -> Self {
        Self {
            id: "chiso".into(),
            grant: Grant::System,
        }
    }
}

/// How an ingestor checks an event on its own, before the writer: what its parsers need of it
/// (CPU work without I/O, on any thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checker {
    /// The catalog decodes the event: its type, its data's fields and their rules.
    Catalog,
    /// Only the envelope was checked (a log without the catalog).
    Envelope,
}

impl Checker {
    /// Checks an event on its own, as of `now` (the catalog's rules on times).
    pub fn check(
        self,
        stream: &StreamName,
        envelope: ProposedEvent,
        now: DateTime<Utc>,
    ) -> Result<Checked, IngestError> {
        let decoded = match self {
            Self::Catalog => Some(decode(
                stream,
                &envelope.event_type,
                &envelope.data,
                &envelope.metadata,
                now,
            )?),
            Self::Envelope => None,
        };
        Ok(Checked { envelope, decoded })
    }
}

/// An event checked on its own by a [`Checker`], ready to append.
#[derive(Debug, Clone)]
pub struct Checked {
    envelope: ProposedEvent,
    /// What the catalog decoded (`None` on a log without the catalog).
    decoded: Option<DomainEvent>,
}

/// One atomic append to one stream, of checked events.
#[derive(Debug, Clone)]
pub struct Append {
    /// Target stream.
    pub stream: StreamName,
    /// What the client believes the stream's state is.
    pub expected: ExpectedRevision,
    /// At least one event.
    pub events: Vec<Checked>,
}

impl Ingestor {
    /// Appends through the catalog's rules.
    pub fn new(appender: Appender<IngestModel>) -> Self {
        Self {
            log: Log::Catalog(appender),
        }
    }

    /// Appends any event type with object data (chiso's log as a generic event store); only
    /// [`Grant::All`] may append.
    pub fn without_catalog(appender: Appender<NoRules>) -> Self {
        Self {
            log: Log::Generic(appender),
        }
    }

    /// The log, for reading it.
    pub fn store(&self) -> &EventStore {
        match &self.log {
            Log::Catalog(appender) => appender.store(),
            Log::Generic(appender) => appender.store(),
        }
    }

    /// How this ingestor checks events on their own: decoded by the catalog, or (a log
    /// without it) only their envelope.
    pub fn checker(&self) -> Checker {
        match self.log {
            Log::Catalog(_) => Checker::Catalog,
            Log::Generic(_) => Checker::Envelope,
        }
    }

    /// Checks each request's events on their own, as of now, then appends the requests as one
    /// unit by `author` ([`Ingestor::append_all`]). An event the check refuses is answered as
    /// the writer answers a broken rule: [`Error::Rejected`], naming its request and event.
    pub async fn append_envelopes(
        &self,
        author: &Author,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendResult>, Error> {
        let (checker, now) = (self.checker(), Utc::now());
        let checked = (0..).zip(requests).map(|(index, request)| {
            let AppendRequest {
                stream,
                expected,
                events,
                principal: (),
            } = request;
            let events = (0..).zip(events).map(|(event, envelope)| {
                checker
                    .check(&stream, envelope, now)
                    .map_err(|error| refused(index, event, error))
            });
            Ok(Append {
                events: events.collect::<Result<_, Error>>()?,
                stream,
                expected,
            })
        });
        let checked = checked.collect::<Result<_, Error>>()?;
        self.append_all(author, checked).await
    }

    /// Appends one request; resolves once fsynced.
    pub async fn append(&self, author: &Author, request: Append) -> Result<AppendResult, Error> {
        let mut results = self.append_all(author, vec![request]).await?;
        Ok(results.pop().expect("one result per request"))
    }

    /// Appends the requests as one all-or-nothing unit, each authorised against the author's
    /// grant by the write model, each event recording the author; resolves once fsynced.
    pub async fn append_all(
        &self,
        author: &Author,
        requests: Vec<Append>,
    ) -> Result<Vec<AppendResult>, Error> {
        match &self.log {
            Log::Catalog(appender) => {
                let requests = requests
                    .into_iter()
                    .enumerate()
                    .map(|(index, request)| catalog_request(index, request, &author.grant))
                    .collect::<Result<_, _>>()?;
                appender.append_all(&author.id, requests).await
            }
            Log::Generic(appender) => {
                if let Grant::Agencies(granted) = &author.grant {
                    return Err(ungranted(granted));
                }
                let requests = requests.into_iter().map(|request| AppendRequest {
                    stream: request.stream,
                    expected: request.expected,
                    events: request.events.into_iter().map(|e| e.envelope).collect(),
                    principal: (),
                });
                appender.append_all(&author.id, requests.collect()).await
            }
        }
    }
}

/// The request as the catalog's write model takes it: every event decoded (one checked by an
/// ingestor without the catalog is decoded now), with the grant.
fn catalog_request(
    index: usize,
    request: Append,
    grant: &Grant,
) -> Result<AppendRequest<Grant, DomainEvent>, Error> {
    let stream = request.stream;
    let events = (0..).zip(request.events).map(|(event, checked)| {
        let Checked { envelope, decoded } = checked;
        let decoded = match decoded {
            Some(decoded) => decoded,
            None => decode(
                &stream,
                &envelope.event_type,
                &envelope.data,
                &envelope.metadata,
                Utc::now(),
            )
            .map_err(|error| refused(index, event, error))?,
        };
        Ok(ProposedEvent {
            id: envelope.id,
            event_type: envelope.event_type,
            data: envelope.data,
            metadata: envelope.metadata,
            decoded,
        })
    });
    Ok(AppendRequest {
        events: events.collect::<Result<_, Error>>()?,
        stream,
        expected: request.expected,
        principal: grant.clone(),
    })
}

/// The `event`-th event of the `index`-th request refused, as the writer answers a broken rule.
fn refused(index: usize, event: usize, error: IngestError) -> Error {
    Error::Rejected {
        index,
        rejection: error.into_rejection(event),
    }
}

/// 403: a log without the catalog has no agencies to check agency scopes against.
fn ungranted(granted: &[String]) -> Error {
    Error::Rejected {
        index: 0,
        rejection: Rejection {
            kind: ErrorKind::Forbidden,
            code: "forbidden",
            message: format!(
                "this log has no event catalog to check the token's append scopes ({}) against: only an admin token may append to it",
                granted.join(", ")
            ),
            event: 0,
            pointer: None,
        },
    }
}
