//! The write model: the state the rules need (agencies, services, dossiers, published ICT
//! ranks), checked and changed inside the log's writer so validation and append are one
//! step. Staged changes are applied at once and undone if their job or group fails.
//!
//! Its state is kept per stream by the log (see [`WriteModel`]): agencies, services and ICT
//! ranks — a few thousand, needed across streams — stay in memory; a dossier's state is read
//! from the log for the group that appends to it, so memory does not grow with the history.

use crate::catalog::{
    decode_stored, field_name, AgencyDissolved, AgencyMerged, AgencyMoved, Category, DomainEvent,
    DossierCorrected, Timestamp, LONGEST_DEADLINE_DAYS,
};
use crate::error::{IngestError, Result};
use chiso_store::{
    category_of, ErrorKind, RecordedEvent, Rejection, RequestOf, StoredStates, StreamName,
    WriteModel,
};

mod state;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What a principal may append: everything, or the events of these agencies and of every
/// agency below them in the `parent` hierarchy. Attached to an append as its principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every event a client may write (the admin scope).
    All,
    /// chiso itself: also the events only it writes (`TokenCreated`, `TokenRevoked`).
    System,
    /// The events of these agencies' subtrees (`append:{code}` scopes).
    Agencies(Vec<String>),
}

#[derive(Debug, Clone)]
struct Agency {
    parent: Option<Box<str>>,
    /// When it came into being (`i64::MIN`: before the records).
    since: i64,
    /// When it last changed: later changes may not be timed before it.
    last_at: i64,
    /// When it was merged or dissolved: nothing may be its from then on.
    closed_at: Option<i64>,
}

impl Agency {
    /// Whether it exists at `at` (seconds).
    fn exists_at(&self, at: i64) -> bool {
        self.since <= at && self.closed_at.is_none_or(|closed| at < closed)
    }
}

#[derive(Debug, Clone)]
struct Service {
    agency: Arc<str>,
    launched_at: i64,
    withdrawn: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DossierStatus {
    Open,
    Paused {
        since: i64,
    },
    Resolved {
        rated: bool,
    },
    Withdrawn,
    /// Entered in error: nothing may follow.
    Voided,
}

#[derive(Debug, Clone)]
struct Dossier {
    /// Shared with the agency's key: a dossier costs no allocation for it.
    agency: Arc<str>,
    received_at: i64,
    due_at: i64,
    /// When its state last changed: later transitions may not be timed before it.
    last_at: i64,
    /// The earliest time of anything after receipt (a change of state, a payment): a
    /// corrected `received_at` may not be later.
    first_after: Option<i64>,
    status: DossierStatus,
}

/// How to undo one staged change.
enum Undo {
    Agency(Arc<str>, Option<Agency>),
    Service(Box<str>, Option<Service>),
    Dossier(Box<str>, Option<Dossier>),
    Ict(u16, Box<str>),
}

/// The state the catalog's rules need, kept by the log per stream.
#[derive(Default)]
pub struct IngestModel {
    agencies: Map<Arc<str>, Agency>,
    services: Map<Box<str>, Service>,
    /// The dossiers of the current group: read from their stored states, then staged.
    dossiers: Map<Box<str>, Dossier>,
    ict: HashSet<(u16, Box<str>), foldhash::fast::RandomState>,
    undo: Vec<Undo>,
    job_start: usize,
}

impl IngestModel {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `code` is a registered agency.
    pub fn has_agency(&self, code: &str) -> bool {
        self.agencies.contains_key(code)
    }

    fn check(&self, id: &str, event: &DomainEvent) -> Result<()> {
        use DomainEvent as E;
        match event {
            E::AgencyRegistered(e) => {
                if self.agencies.contains_key(id) {
                    return Err(IngestError::conflict(
                        "already_exists",
                        format!("agency {id} is already registered"),
                    ));
                }
                let since = e.at.as_ref().map(|at| at.0.timestamp());
                match &e.parent {
                    Some(parent) => self.agency_in_force(parent, since, "/data/parent"),
                    None => Ok(()),
                }
            }
            E::AgencyRenamed(e) => self.agency_change(id, &e.at, "rename").map(|_| ()),
            E::AgencyMoved(e) => self.agency_goes(id, &e.at, "move", &e.parent, "parent"),
            E::AgencyMerged(e) => {
                self.agency_goes(id, &e.at, "merge", &e.into, "into")?;
                self.without_children(id, "merge")
            }
            E::AgencyDissolved(e) => {
                self.agency_change(id, &e.at, "dissolve")?;
                self.without_children(id, "dissolve")
            }
            E::ServiceLaunched(e) => {
                if self.services.contains_key(id) {
                    return Err(IngestError::conflict(
                        "already_exists",
                        format!("service {id} was already launched"),
                    ));
                }
                self.agency_in_force(&e.agency, Some(e.at.0.timestamp()), "/data/agency")
            }
            E::ServiceLevelChanged(e) => self.live_service(id, &e.at).map(|_| ()),
            E::ServiceWithdrawn(e) => self.live_service(id, &e.at).map(|_| ()),
            E::DossierReceived(e) => {
                if self.dossiers.contains_key(id) {
                    return Err(IngestError::conflict(
                        "already_exists",
                        format!("dossier {id} was already received"),
                    ));
                }
                let received_at = Some(e.received_at.0.timestamp());
                self.agency_in_force(&e.agency, received_at, "/data/agency")?;
                match self.services.get(e.service.as_str()) {
                    None => Err(IngestError::unprocessable(
                        "unknown_service",
                        format!("service {} has not been launched", e.service),
                    )
                    .at("/data/service")),
                    Some(service) if service.withdrawn => Err(IngestError::unprocessable(
                        "service_withdrawn",
                        format!("service {} has been withdrawn", e.service),
                    )
                    .at("/data/service")),
                    Some(_) => Ok(()),
                }
            }
            E::DossierPaused(e) => {
                self.transition(id, &e.at, "pause", |s| s == DossierStatus::Open)
            }
            E::DossierResumed(e) => self.transition(id, &e.at, "resume", |s| {
                matches!(s, DossierStatus::Paused { .. })
            }),
            // A paused dossier is still open: it may be resolved or withdrawn while paused.
            E::DossierResolved(e) => self.transition(id, &e.at, "resolve", |s| {
                matches!(s, DossierStatus::Open | DossierStatus::Paused { .. })
            }),
            E::DossierWithdrawn(e) => self.transition(id, &e.at, "withdraw", |s| {
                matches!(s, DossierStatus::Open | DossierStatus::Paused { .. })
            }),
            E::DossierPaid(e) => self.payment(id, &e.at),
            E::DossierRated(e) => self.transition(id, &e.at, "rate", |s| {
                s == DossierStatus::Resolved { rated: false }
            }),
            E::DossierCorrected(e) => self.correction(id, e),
            E::DossierVoided(e) => {
                let dossier = self.correctable(id, "void")?;
                not_before_receipt(id, dossier, &e.at, "void")
            }
            E::IctIndexPublished(e) => {
                if self.ict.contains(&(e.year, e.province.as_str().into())) {
                    return Err(IngestError::conflict(
                        "already_exists",
                        format!(
                            "province {} already has an ICT Index rank for {}",
                            e.province, e.year
                        ),
                    ));
                }
                Ok(())
            }
            E::RankingPublished(e) => {
                for (i, entry) in e.entries.iter().enumerate() {
                    self.agency_exists(&entry.agency, &format!("/data/entries/{i}/agency"))?;
                }
                Ok(())
            }
            // Each declaration stands on its own: a later one for the same holiday and year
            // replaces it, and swapping a day already off changes nothing.
            E::HolidayDeclared(_) | E::WorkdaySwapped(_) => Ok(()),
            // chiso writes them as its token registry changes (see `authorize`).
            E::TokenCreated(_) | E::TokenRevoked(_) => Ok(()),
        }
    }

    fn agency_exists(&self, code: &str, pointer: &str) -> Result<()> {
        self.agency(code, pointer).map(|_| ())
    }

    /// The registered agency `code`, named by the field at `pointer`.
    fn agency(&self, code: &str, pointer: &str) -> Result<&Agency> {
        self.agencies.get(code).ok_or_else(|| {
            IngestError::unprocessable(
                "unknown_agency",
                format!("{}: agency {code} is not registered", field_name(pointer)),
            )
            .at(pointer)
        })
    }

    /// `code` is a registered agency that exists at `at` (seconds; `None`: a time before
    /// the records, so it must never have ceased).
    fn agency_in_force(&self, code: &str, at: Option<i64>, pointer: &str) -> Result<()> {
        let agency = self.agency(code, pointer)?;
        let exists = match at {
            Some(at) => agency.exists_at(at),
            None => agency.closed_at.is_none(),
        };
        if exists {
            return Ok(());
        }
        let when = match (at, agency.closed_at) {
            (None, Some(closed)) => format!("ceased to exist at {}", utc(closed)),
            (Some(at), Some(closed)) if at >= closed => {
                format!("ceased to exist at {}", utc(closed))
            }
            _ => format!("came into being only at {}", utc(agency.since)),
        };
        Err(IngestError::unprocessable(
            "agency_inactive",
            format!("{}: agency {code} {when}", field_name(pointer)),
        )
        .at(pointer))
    }

    /// Agency `id` may change at `at`: registered, not merged or dissolved, and `at` not
    /// before its last change.
    fn agency_change(&self, id: &str, at: &Timestamp, action: &str) -> Result<&Agency> {
        let Some(agency) = self.agencies.get(id) else {
            return Err(invalid_transition(format!(
                "cannot {action} agency {id}: it is not registered"
            )));
        };
        if let Some(closed) = agency.closed_at {
            return Err(invalid_transition(format!(
                "cannot {action} agency {id}: it ceased to exist at {}",
                utc(closed)
            )));
        }
        if at.0.timestamp() < agency.last_at {
            return Err(invalid_transition(format!(
                "cannot {action} agency {id} at a time before its last change"
            ))
            .at("/data/at"));
        }
        Ok(agency)
    }

    /// Agency `id` may go under (or into) agency `to`, named by the field `field`, at `at`:
    /// it may change then, `to` exists then, and `to` is not below it.
    fn agency_goes(
        &self,
        id: &str,
        at: &Timestamp,
        action: &str,
        to: &str,
        field: &str,
    ) -> Result<()> {
        let pointer = format!("/data/{field}");
        self.agency_change(id, at, action)?;
        self.agency_in_force(to, Some(at.0.timestamp()), &pointer)?;
        if !self.within(to, &[id.to_owned()]) {
            return Ok(());
        }
        let code = match field {
            "parent" => "invalid_parent",
            _ => "invalid_successor",
        };
        Err(
            IngestError::unprocessable(code, format!("data.{field}: {to} is below agency {id}"))
                .at(pointer),
        )
    }

    /// Agency `id` has no agency below it that still exists.
    fn without_children(&self, id: &str, action: &str) -> Result<()> {
        let mut below: Vec<&str> = self
            .agencies
            .iter()
            .filter(|(_, a)| a.closed_at.is_none() && a.parent.as_deref() == Some(id))
            .map(|(code, _)| &**code)
            .collect();
        if below.is_empty() {
            return Ok(());
        }
        below.sort_unstable();
        let more = below.len().saturating_sub(5);
        below.truncate(5);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        Err(invalid_transition(format!(
            "cannot {action} agency {id}: agencies below it still exist ({}{more}); move, \
             merge or dissolve them first",
            below.join(", ")
        )))
    }

    fn live_service(&self, id: &str, at: &Timestamp) -> Result<&Service> {
        let service = self
            .services
            .get(id)
            .ok_or_else(|| invalid_transition(format!("service {id} has not been launched")))?;
        if service.withdrawn {
            return Err(invalid_transition(format!(
                "service {id} has been withdrawn"
            )));
        }
        if at.0.timestamp() < service.launched_at {
            return Err(
                invalid_transition(format!("service {id} was launched after this time"))
                    .at("/data/at"),
            );
        }
        Ok(service)
    }

    fn transition(
        &self,
        id: &str,
        at: &Timestamp,
        action: &str,
        allowed: impl Fn(DossierStatus) -> bool,
    ) -> Result<()> {
        let Some(dossier) = self.dossiers.get(id) else {
            return Err(invalid_transition(format!(
                "cannot {action} dossier {id}: it has not been received"
            )));
        };
        if !allowed(dossier.status) {
            return Err(invalid_transition(format!(
                "cannot {action} dossier {id}: it is {}",
                dossier.status.name()
            )));
        }
        if at.0.timestamp() < dossier.last_at {
            return Err(invalid_transition(format!(
                "cannot {action} dossier {id} at a time before its last change of state"
            ))
            .at("/data/at"));
        }
        Ok(())
    }

    /// A fee may be paid any time after receipt, unless the dossier was withdrawn or voided.
    fn payment(&self, id: &str, at: &Timestamp) -> Result<()> {
        let dossier = match self.dossiers.get(id) {
            Some(dossier)
                if !matches!(
                    dossier.status,
                    DossierStatus::Withdrawn | DossierStatus::Voided
                ) =>
            {
                dossier
            }
            Some(dossier) => {
                let message = format!(
                    "cannot pay for dossier {id}: it is {}",
                    dossier.status.name()
                );
                return Err(invalid_transition(message));
            }
            None => {
                let message = format!("cannot pay for dossier {id}: it has not been received");
                return Err(invalid_transition(message));
            }
        };
        if at.0.timestamp() < dossier.received_at {
            let message = format!("cannot pay for dossier {id} before it was received");
            return Err(invalid_transition(message).at("/data/at"));
        }
        Ok(())
    }

    /// A received dossier that is not voided: any other may be corrected or voided.
    fn correctable(&self, id: &str, action: &str) -> Result<&Dossier> {
        match self.dossiers.get(id) {
            None => Err(invalid_transition(format!(
                "cannot {action} dossier {id}: it has not been received"
            ))),
            Some(dossier) if dossier.status == DossierStatus::Voided => Err(invalid_transition(
                format!("cannot {action} dossier {id}: it is voided"),
            )),
            Some(dossier) => Ok(dossier),
        }
    }

    /// A correction must leave a dossier that could have been received so: a launched
    /// service, received before anything that followed, due after it was received.
    fn correction(&self, id: &str, e: &DossierCorrected) -> Result<()> {
        let dossier = self.correctable(id, "correct")?;
        not_before_receipt(id, dossier, &e.at, "correct")?;
        if let Some(service) = &e.service {
            // A service withdrawn since is still the one a dossier of its time was for.
            if !self.services.contains_key(service.as_str()) {
                return Err(IngestError::unprocessable(
                    "unknown_service",
                    format!("service {service} has not been launched"),
                )
                .at("/data/service"));
            }
        }
        if let (Some(received_at), Some(first)) = (&e.received_at, dossier.first_after) {
            if received_at.0.timestamp() > first {
                return Err(invalid_transition(format!(
                    "cannot correct dossier {id}: data.received_at would be after what \
                     followed its receipt (a pause, resolution, withdrawal or payment)"
                ))
                .at("/data/received_at"));
            }
        }
        let received_at = e
            .received_at
            .as_ref()
            .map_or(dossier.received_at, |t| t.0.timestamp());
        let due_at = e
            .due_at
            .as_ref()
            .map_or(dossier.due_at, |t| t.0.timestamp());
        let pointer = match e.due_at {
            Some(_) => "/data/due_at",
            None => "/data/received_at",
        };
        if due_at < received_at {
            return Err(IngestError::unprocessable(
                "due_before_received",
                format!("dossier {id} would be due before it was received"),
            )
            .at(pointer));
        }
        if due_at - received_at > LONGEST_DEADLINE_DAYS * 86_400 {
            return Err(IngestError::unprocessable(
                "time_out_of_range",
                format!("dossier {id} would be due more than a year after it was received"),
            )
            .at(pointer));
        }
        Ok(())
    }

    /// Applies an event whose rules hold (or that is already in the log).
    fn apply(&mut self, id: &str, event: &DomainEvent) {
        use DomainEvent as E;
        let key: Box<str> = id.into();
        match event {
            E::AgencyRegistered(e) => {
                let since = e.at.as_ref().map_or(i64::MIN, |at| at.0.timestamp());
                let agency = Agency {
                    parent: e.parent.as_deref().map(Into::into),
                    since,
                    last_at: since,
                    closed_at: None,
                };
                self.set_agency(id.into(), agency);
            }
            E::AgencyRenamed(e) => self.change_agency(id, &e.at, |_| {}),
            E::AgencyMoved(e) => {
                let parent: Box<str> = e.parent.as_str().into();
                self.change_agency(id, &e.at, |agency| agency.parent = Some(parent))
            }
            E::AgencyMerged(AgencyMerged { at, .. })
            | E::AgencyDissolved(AgencyDissolved { at }) => {
                let closed = at.0.timestamp();
                self.change_agency(id, at, |agency| agency.closed_at = Some(closed))
            }
            E::ServiceLaunched(e) => self.set_service(
                key,
                Service {
                    agency: self.agency_code(&e.agency),
                    launched_at: e.at.0.timestamp(),
                    withdrawn: false,
                },
            ),
            E::ServiceLevelChanged(_) => {}
            E::ServiceWithdrawn(_) => {
                if let Some(service) = self.services.get(id).cloned() {
                    self.set_service(
                        key,
                        Service {
                            withdrawn: true,
                            ..service
                        },
                    );
                }
            }
            E::DossierReceived(e) => self.set_dossier(
                key,
                Dossier {
                    agency: self.agency_code(&e.agency),
                    received_at: e.received_at.0.timestamp(),
                    due_at: e.due_at.0.timestamp(),
                    last_at: e.received_at.0.timestamp(),
                    first_after: None,
                    status: DossierStatus::Open,
                },
            ),
            E::DossierCorrected(e) => {
                if let Some(dossier) = self.dossiers.get(id).cloned() {
                    let received_at = e.received_at.as_ref().map(|t| t.0.timestamp());
                    let received_at = received_at.unwrap_or(dossier.received_at);
                    // Until something follows receipt, the receipt is the last change.
                    let last_at = match dossier.first_after {
                        None => received_at,
                        Some(_) => dossier.last_at,
                    };
                    let due_at = e.due_at.as_ref().map(|t| t.0.timestamp());
                    let dossier = Dossier {
                        received_at,
                        due_at: due_at.unwrap_or(dossier.due_at),
                        last_at,
                        ..dossier
                    };
                    self.set_dossier(key, dossier);
                }
            }
            E::DossierVoided(e) => self.set_status(key, DossierStatus::Voided, e.at.0.timestamp()),
            E::DossierPaid(e) => {
                if let Some(dossier) = self.dossiers.get(id).cloned() {
                    let at = e.at.0.timestamp();
                    let first_after = Some(dossier.first_after.map_or(at, |first| first.min(at)));
                    self.set_dossier(
                        key,
                        Dossier {
                            first_after,
                            ..dossier
                        },
                    );
                }
            }
            E::DossierPaused(e) => {
                let since = e.at.0.timestamp();
                self.set_status(key, DossierStatus::Paused { since }, since)
            }
            E::DossierResumed(e) => self.set_status(key, DossierStatus::Open, e.at.0.timestamp()),
            E::DossierResolved(e) => {
                let status = DossierStatus::Resolved { rated: false };
                self.set_status(key, status, e.at.0.timestamp())
            }
            E::DossierWithdrawn(e) => {
                self.set_status(key, DossierStatus::Withdrawn, e.at.0.timestamp())
            }
            E::DossierRated(e) => {
                let status = DossierStatus::Resolved { rated: true };
                self.set_status(key, status, e.at.0.timestamp())
            }
            E::RankingPublished(_)
            | E::HolidayDeclared(_)
            | E::WorkdaySwapped(_)
            | E::TokenCreated(_)
            | E::TokenRevoked(_) => {}
            E::IctIndexPublished(e) => {
                let province: Box<str> = e.province.as_str().into();
                self.ict.insert((e.year, province.clone()));
                self.undo.push(Undo::Ict(e.year, province));
            }
        }
    }

    /// The agency's code as the agencies map holds it (a registered agency, as the rules
    /// require; a new copy otherwise).
    pub(crate) fn agency_code(&self, code: &str) -> Arc<str> {
        match self.agencies.get_key_value(code) {
            Some((code, _)) => code.clone(),
            None => code.into(),
        }
    }

    fn set_agency(&mut self, code: Arc<str>, agency: Agency) {
        let previous = self.agencies.insert(code.clone(), agency);
        self.undo.push(Undo::Agency(code, previous));
    }

    /// Changes agency `id` at `at` as `change` says.
    fn change_agency(&mut self, id: &str, at: &Timestamp, change: impl FnOnce(&mut Agency)) {
        if let Some((code, agency)) = self.agencies.get_key_value(id) {
            let (code, mut agency) = (code.clone(), agency.clone());
            agency.last_at = agency.last_at.max(at.0.timestamp());
            change(&mut agency);
            self.set_agency(code, agency);
        }
    }

    fn set_service(&mut self, key: Box<str>, service: Service) {
        let previous = self.services.insert(key.clone(), service);
        self.undo.push(Undo::Service(key, previous));
    }

    fn set_dossier(&mut self, key: Box<str>, dossier: Dossier) {
        let previous = self.dossiers.insert(key.clone(), dossier);
        self.undo.push(Undo::Dossier(key, previous));
    }

    fn set_status(&mut self, key: Box<str>, status: DossierStatus, at: i64) {
        if let Some(dossier) = self.dossiers.get(&key).cloned() {
            // A void changes no times: it ends the dossier whenever it was made.
            let (last_at, first_after) = match status {
                DossierStatus::Voided => (dossier.last_at, dossier.first_after),
                _ => (
                    dossier.last_at.max(at),
                    Some(dossier.first_after.map_or(at, |first| first.min(at))),
                ),
            };
            self.set_dossier(
                key,
                Dossier {
                    status,
                    last_at,
                    first_after,
                    ..dossier
                },
            );
        }
    }

    /// Refuses an event outside the grant: its agency must be a granted one or below one.
    fn authorize(&self, grant: &Grant, id: &str, event: &DomainEvent) -> Result<()> {
        use DomainEvent as E;
        if matches!(event, E::TokenCreated(_) | E::TokenRevoked(_)) && *grant != Grant::System {
            return Err(IngestError::forbidden(
                "token events are written by chiso itself, as tokens are created and revoked \
                 (POST and DELETE /v1/tokens)",
            ));
        }
        let Grant::Agencies(granted) = grant else {
            return Ok(());
        };
        let agency: Option<&str> = match event {
            // A new agency is covered by its parent; one without a parent needs admin.
            E::AgencyRegistered(e) => e.parent.as_deref(),
            // A reorganisation needs the grant of the agency and of where it goes.
            E::AgencyRenamed(_) | E::AgencyDissolved(_) => Some(id),
            E::AgencyMoved(AgencyMoved { parent: to, .. })
            | E::AgencyMerged(AgencyMerged { into: to, .. }) => {
                if !self.within(to, granted) {
                    return Err(IngestError::forbidden(format!(
                        "the token's append scopes ({}) do not cover agency {to}",
                        granted.join(", ")
                    )));
                }
                Some(id)
            }
            E::ServiceLaunched(e) => Some(&e.agency),
            E::DossierReceived(e) => Some(&e.agency),
            E::IctIndexPublished(_)
            | E::RankingPublished(_)
            | E::HolidayDeclared(_)
            | E::WorkdaySwapped(_)
            | E::TokenCreated(_)
            | E::TokenRevoked(_) => None,
            // An unknown service or dossier has no agency yet: the state check answers (409).
            E::ServiceLevelChanged(_) | E::ServiceWithdrawn(_) => match self.services.get(id) {
                Some(service) => Some(&*service.agency),
                None => return Ok(()),
            },
            _ => match self.dossiers.get(id) {
                Some(dossier) => Some(&*dossier.agency),
                None => return Ok(()),
            },
        };
        let covered = agency.is_some_and(|agency| self.within(agency, granted));
        if covered {
            return Ok(());
        }
        let whose = agency.map_or_else(|| "this stream".to_owned(), |a| format!("agency {a}"));
        Err(IngestError::forbidden(format!(
            "the token's append scopes ({}) do not cover {whose}",
            granted.join(", ")
        )))
    }

    /// Whether `agency` is one of `granted` or below one of them.
    fn within(&self, agency: &str, granted: &[String]) -> bool {
        let mut current = Some(agency);
        // Parents must exist before their children, so the chain ends; the bound is a guard.
        for _ in 0..64 {
            let Some(code) = current else { return false };
            if granted.iter().any(|g| g == code) {
                return true;
            }
            current = self.agencies.get(code).and_then(|a| a.parent.as_deref());
        }
        false
    }

    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            match self.undo.pop().expect("len > mark") {
                Undo::Agency(key, previous) => match previous {
                    Some(agency) => {
                        self.agencies.insert(key, agency);
                    }
                    None => {
                        self.agencies.remove(&key);
                    }
                },
                Undo::Service(key, previous) => restore(&mut self.services, key, previous),
                Undo::Dossier(key, previous) => restore(&mut self.dossiers, key, previous),
                Undo::Ict(year, province) => {
                    self.ict.remove(&(year, province));
                }
            }
        }
    }
}

impl DossierStatus {
    fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Paused { .. } => "paused",
            Self::Resolved { rated: false } => "resolved",
            Self::Resolved { rated: true } => "resolved and rated",
            Self::Withdrawn => "withdrawn",
            Self::Voided => "voided",
        }
    }
}

/// A correction or void is made after the dossier was received.
fn not_before_receipt(id: &str, dossier: &Dossier, at: &Timestamp, action: &str) -> Result<()> {
    if at.0.timestamp() >= dossier.received_at {
        return Ok(());
    }
    Err(invalid_transition(format!(
        "cannot {action} dossier {id} before it was received"
    ))
    .at("/data/at"))
}

/// A time in seconds as RFC 3339 UTC, for messages.
fn utc(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| seconds.to_string(), |t| t.to_rfc3339())
}

/// 409 `invalid_transition`: the event does not follow from the current state.
fn invalid_transition(message: impl Into<String>) -> IngestError {
    IngestError::conflict("invalid_transition", message)
}

fn restore<V>(map: &mut Map<Box<str>, V>, key: Box<str>, previous: Option<V>) {
    match previous {
        Some(value) => map.insert(key, value),
        None => map.remove(&key),
    };
}

impl IngestModel {
    /// Brings a dossier's stored state into the group, unless the group already has it.
    fn fetch_dossier(&mut self, id: &str, stored: Option<&[u8]>) -> Result<(), String> {
        if let (false, Some(bytes)) = (self.dossiers.contains_key(id), stored) {
            let dossier = state::decode_dossier(bytes, self)
                .map_err(|reason| format!("stored state of dossier {id}: {reason}"))?;
            self.dossiers.insert(id.into(), dossier);
        }
        Ok(())
    }

    /// The state of every stream the group changed, as `(stream, state)`.
    fn changed_states(&self, changed: &mut Vec<(Box<str>, Vec<u8>)>) {
        let (mut streams, mut years) = (Vec::new(), Vec::new());
        for undo in &self.undo {
            match undo {
                Undo::Agency(code, _) => streams.push((Category::Agency, &**code)),
                Undo::Service(code, _) => streams.push((Category::Service, &**code)),
                Undo::Dossier(id, _) => streams.push((Category::Dossier, &**id)),
                Undo::Ict(year, _) => years.push(*year),
            }
        }
        streams.sort_unstable_by_key(|(category, id)| (category.prefix(), *id));
        streams.dedup();
        for (category, id) in streams {
            let state = match category {
                Category::Agency => self.agencies.get(id).map(state::agency),
                Category::Service => self.services.get(id).map(state::service),
                _ => self.dossiers.get(id).map(state::dossier),
            };
            if let Some(state) = state {
                changed.push((format!("{}-{id}", category.prefix()).into(), state));
            }
        }
        years.sort_unstable();
        years.dedup();
        for year in years {
            let provinces = self
                .ict
                .iter()
                .filter(|(y, _)| *y == year)
                .map(|(_, province)| &**province);
            let stream = format!("{}-{year}", Category::IctIndex.prefix());
            changed.push((stream.into(), state::provinces(provinces)));
        }
    }
}

impl WriteModel for IngestModel {
    /// Every append says what its principal may append: there is no request without a grant.
    type Principal = Grant;
    /// Events come decoded and checked on their own by [`crate::decode`].
    type Decoded = DomainEvent;

    fn state_format(&self) -> u32 {
        state::FORMAT
    }

    fn resident_categories(&self) -> &'static [&'static str] {
        // Agencies first: services share their agencies' codes.
        &["agency", "service", "ictindex"]
    }

    fn fetches(&self, stream: &str) -> bool {
        // The one category whose states are read for each group: there are millions.
        category_of(stream) == Category::Dossier.prefix()
    }

    fn load(&mut self, stream: &str, bytes: &[u8]) -> Result<(), String> {
        let failed = |reason: String| format!("stored state of {stream}: {reason}");
        let (category, id) = stream
            .split_once('-')
            .ok_or_else(|| failed("no id".into()))?;
        match category {
            "agency" => {
                let agency = state::decode_agency(bytes).map_err(failed)?;
                self.agencies.insert(id.into(), agency);
            }
            "service" => {
                let service = state::decode_service(bytes, self).map_err(failed)?;
                self.services.insert(id.into(), service);
            }
            "ictindex" => {
                let year = id.parse().map_err(|_| failed("not a year".into()))?;
                for province in state::decode_provinces(bytes).map_err(failed)? {
                    self.ict.insert((year, province));
                }
            }
            _ => return Err(failed("not a resident category".into())),
        }
        Ok(())
    }

    fn replay(&mut self, event: &RecordedEvent, stored: &StoredStates) -> Result<(), String> {
        let stream = StreamName::new(event.stream.clone()).map_err(|e| e.to_string())?;
        let Ok((category, id)) = Category::of(&stream) else {
            return Ok(());
        };
        if category == Category::Dossier {
            self.fetch_dossier(id, stored.get(&event.stream))?;
        }
        let decoded = decode_stored(&event.event_type, &event.data, &event.metadata)
            .map_err(|e| e.to_string())?;
        self.apply(id, &decoded);
        Ok(())
    }

    fn begin_job(&mut self) {
        self.job_start = self.undo.len();
    }

    fn stage(&mut self, request: &RequestOf<Self>, stored: &StoredStates) -> Result<(), Rejection> {
        let (category, id) = match Category::of(&request.stream) {
            Ok(found) => found,
            Err(error) => return Err(error.into_rejection(0)),
        };
        if category == Category::Dossier {
            if let Err(reason) = self.fetch_dossier(id, stored.get(request.stream.as_str())) {
                tracing::error!(%reason, "a stored dossier state does not decode");
                return Err(Rejection {
                    kind: ErrorKind::Internal,
                    code: "internal",
                    message: "the dossier's stored state could not be read".into(),
                    event: 0,
                    pointer: None,
                });
            }
        }
        for (index, event) in request.events.iter().enumerate() {
            let outcome = self
                .authorize(&request.principal, id, &event.decoded)
                .and_then(|()| self.check(id, &event.decoded));
            outcome.map_err(|error| error.into_rejection(index))?;
            self.apply(id, &event.decoded);
        }
        Ok(())
    }

    fn abort_job(&mut self) {
        self.undo_to(self.job_start);
    }

    fn commit_group(&mut self, changed: &mut Vec<(Box<str>, Vec<u8>)>) {
        self.changed_states(changed);
        self.undo.clear();
        self.job_start = 0;
        self.dossiers.clear();
    }

    fn abort_group(&mut self) {
        self.undo_to(0);
        self.job_start = 0;
        self.dossiers.clear();
    }
}
