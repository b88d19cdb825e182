//! What a PostgreSQL client's statement asks for: a query for the engine, a `COPY (…) TO
//! STDOUT`, a session setting, a transaction boundary, or something chiso refuses.

use crate::session::canonical;
use crate::sqlstate::error;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Expr, Query, Set,
    Statement, Value,
};
use pgwire::error::PgWireResult;

/// One statement, classified.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// For the engine (which refuses anything but a read).
    Query(Box<Statement>),
    /// `COPY (query) TO STDOUT`.
    Copy(Box<Query>, CopyFormat),
    /// `SET name = value`, `RESET name` (`None`), `RESET ALL` (name `all`).
    Set(String, Option<String>),
    /// `SHOW name`.
    Show(String),
    /// `BEGIN`, `COMMIT`, `ROLLBACK`: chiso only reads, so a transaction changes nothing.
    Transaction(Boundary),
    /// `DISCARD ALL`: settings back to their defaults.
    Discard,
    /// `DEALLOCATE name` (a prepared statement), `DEALLOCATE ALL` (`None`).
    Deallocate(Option<String>),
    /// Accepted and answered with this tag, changing nothing (`SET TRANSACTION READ ONLY`,
    /// savepoints, `DISCARD PLANS`).
    Nothing(&'static str),
}

/// A transaction's start or end.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Boundary {
    Begin,
    Commit,
    Rollback,
}

/// How `COPY … TO STDOUT` writes rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct CopyFormat {
    pub kind: CopyKind,
    pub header: bool,
    pub delimiter: Option<char>,
    pub null: Option<String>,
    pub quote: Option<char>,
    pub escape: Option<char>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum CopyKind {
    #[default]
    Text,
    Csv,
    Binary,
}

/// Classifies a parsed statement; refuses what chiso does not do, with its SQLSTATE.
pub(crate) fn classify(mut statement: Statement) -> PgWireResult<Command> {
    without_descriptions(&mut statement);
    Ok(match statement {
        Statement::Set(set) => classify_set(set)?,
        Statement::Reset(reset) => match reset.reset {
            datafusion::sql::sqlparser::ast::Reset::ALL => Command::Set("all".into(), None),
            datafusion::sql::sqlparser::ast::Reset::ConfigurationParameter(name) => {
                Command::Set(setting_name(&name), None)
            }
        },
        Statement::ShowVariable { variable } => {
            let name: Vec<String> = variable.iter().map(|i| i.value.clone()).collect();
            Command::Show(canonical(&name.join(" ")))
        }
        Statement::StartTransaction { modes, .. } => {
            read_only(&modes)?;
            Command::Transaction(Boundary::Begin)
        }
        Statement::Commit { .. } => Command::Transaction(Boundary::Commit),
        Statement::Rollback { savepoint: None, .. } => Command::Transaction(Boundary::Rollback),
        // Savepoints inside a transaction that reads only: nothing to keep or undo.
        Statement::Rollback { .. } => Command::Nothing("ROLLBACK"),
        Statement::Savepoint { .. } => Command::Nothing("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Command::Nothing("RELEASE"),
        Statement::Discard { object_type } => match object_type {
            datafusion::sql::sqlparser::ast::DiscardObject::ALL => Command::Discard,
            // No plans are cached, no temporary tables or sequences made.
            _ => Command::Nothing("DISCARD"),
        },
        Statement::Deallocate { name, .. } => match name.quote_style {
            None if name.value.eq_ignore_ascii_case("all") => Command::Deallocate(None),
            _ => Command::Deallocate(Some(name.value)),
        },
        Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => match (source, to, target) {
            (CopySource::Query(query), true, CopyTarget::Stdout) => {
                Command::Copy(query, copy_format(&options, &legacy_options)?)
            }
            _ => {
                return Err(error(
                    "25006",
                    "chiso's SQL is read-only: only COPY (SELECT …) TO STDOUT is served",
                ))
            }
        },
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => {
            return Err(error(
                "0A000",
                "chiso has no cursors: read the answer as it streams, or page with LIMIT and OFFSET",
            ))
        }
        other => Command::Query(Box::new(other)),
    })
}

/// chiso keeps no comments on its tables and columns: `col_description(…)`,
/// `obj_description(…)` and `shobj_description(…)` are NULL, whatever their arguments (whose
/// `'schema.table'::regclass` casts chiso could not evaluate).
fn without_descriptions(statement: &mut Statement) {
    use datafusion::sql::sqlparser::ast::visit_expressions_mut;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr {
            let name = function
                .name
                .0
                .last()
                .map(|part| part.to_string().to_ascii_lowercase());
            if matches!(
                name.as_deref(),
                Some("col_description" | "obj_description" | "shobj_description")
            ) {
                *expr = Expr::Value(Value::Null.into());
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

fn classify_set(set: Set) -> PgWireResult<Command> {
    Ok(match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = setting_name(&variable);
            // The keyword DEFAULT resets; the string 'default' is a value.
            let reset = matches!(values.as_slice(), [Expr::Identifier(ident)]
                if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"));
            let value = values.iter().map(value_text).collect::<Vec<_>>().join(", ");
            match reset {
                true => Command::Set(name, None),
                false => Command::Set(name, Some(value)),
            }
        }
        Set::SetTimeZone { value, .. } => {
            let value = value_text(&value);
            match value.eq_ignore_ascii_case("default") || value.eq_ignore_ascii_case("local") {
                true => Command::Set("timezone".into(), None),
                false => Command::Set("timezone".into(), Some(value)),
            }
        }
        Set::SetNames { charset_name, .. } => {
            Command::Set("client_encoding".into(), Some(charset_name.value))
        }
        Set::SetTransaction { modes, .. } => {
            read_only(&modes)?;
            Command::Nothing("SET")
        }
        other => {
            return Err(error(
                "0A000",
                format!("chiso does not take this setting: {other}"),
            ))
        }
    })
}

/// A setting's name as PostgreSQL reads it: `"DateStyle"` is `datestyle` too.
fn setting_name(name: &datafusion::sql::sqlparser::ast::ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.clone(),
            None => part.to_string(),
        })
        .collect();
    canonical(&parts.join("."))
}

/// Refuses a transaction that asks to write.
fn read_only(modes: &[datafusion::sql::sqlparser::ast::TransactionMode]) -> PgWireResult<()> {
    use datafusion::sql::sqlparser::ast::{TransactionAccessMode, TransactionMode};
    let writes = modes.iter().any(|mode| {
        matches!(
            mode,
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite)
        )
    });
    match writes {
        true => Err(error(
            "25006",
            "chiso's SQL is read-only: transactions cannot write",
        )),
        false => Ok(()),
    }
}

/// A setting's value as text: `'x'`, `x`, `5`, `-1`.
fn value_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<CopyFormat> {
    let mut format = CopyFormat::default();
    for option in options {
        match option {
            CopyOption::Format(kind) => {
                format.kind = match kind.value.to_ascii_lowercase().as_str() {
                    "text" => CopyKind::Text,
                    "csv" => CopyKind::Csv,
                    "binary" => CopyKind::Binary,
                    other => {
                        return Err(error(
                            "22023",
                            format!("COPY format \"{other}\" not recognized"),
                        ))
                    }
                }
            }
            CopyOption::Header(header) => format.header = *header,
            CopyOption::Delimiter(c) => format.delimiter = Some(*c),
            CopyOption::Null(null) => format.null = Some(null.clone()),
            CopyOption::Quote(c) => format.quote = Some(*c),
            CopyOption::Escape(c) => format.escape = Some(*c),
            other => return Err(unsupported_copy_option(other)),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Binary => format.kind = CopyKind::Binary,
            CopyLegacyOption::Delimiter(c) => format.delimiter = Some(*c),
            CopyLegacyOption::Null(null) => format.null = Some(null.clone()),
            CopyLegacyOption::Header => format.header = true,
            CopyLegacyOption::Csv(csv) => {
                format.kind = CopyKind::Csv;
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => format.header = true,
                        CopyLegacyCsvOption::Quote(c) => format.quote = Some(*c),
                        CopyLegacyCsvOption::Escape(c) => format.escape = Some(*c),
                        other => return Err(unsupported_copy_option(other)),
                    }
                }
            }
            other => return Err(unsupported_copy_option(other)),
        }
    }
    check_copy_format(&format)?;
    Ok(format)
}

/// Refuses what PostgreSQL refuses (the encoder writes one byte of each option).
fn check_copy_format(format: &CopyFormat) -> PgWireResult<()> {
    let invalid = |message: &str| Err(error("22023", message.to_owned()));
    if format.kind == CopyKind::Binary {
        if format.header {
            return Err(error("0A000", "cannot specify HEADER in BINARY mode"));
        }
        if format.delimiter.is_some() || format.null.is_some() {
            return invalid("cannot specify DELIMITER or NULL in BINARY mode");
        }
    }
    if format.kind != CopyKind::Csv && (format.quote.is_some() || format.escape.is_some()) {
        return invalid("COPY QUOTE and ESCAPE are available only in CSV mode");
    }
    let single_byte = |c: Option<char>| c.is_none_or(|c| c.is_ascii());
    if !single_byte(format.delimiter) {
        return invalid("COPY delimiter must be a single one-byte character");
    }
    if !single_byte(format.quote) {
        return invalid("COPY quote must be a single one-byte character");
    }
    if !single_byte(format.escape) {
        return invalid("COPY escape must be a single one-byte character");
    }
    if matches!(format.delimiter, Some('\r' | '\n' | '\\')) {
        return invalid("COPY delimiter cannot be newline, carriage return or backslash");
    }
    let delimiter = format.delimiter.unwrap_or(match format.kind {
        CopyKind::Csv => ',',
        _ => '\t',
    });
    let quote = format.quote.unwrap_or('"');
    if format.kind == CopyKind::Csv && delimiter == quote {
        return invalid("COPY delimiter and quote must be different");
    }
    // pgwire escapes a quote inside a value by doubling it; another escape it would not use.
    if format.escape.is_some_and(|escape| escape != quote) {
        return Err(error(
            "0A000",
            "COPY ESCAPE other than the QUOTE character is not supported",
        ));
    }
    if let Some(null) = &format.null {
        if null.contains(['\r', '\n']) {
            return invalid("COPY null representation cannot use newline or carriage return");
        }
        if null.contains(delimiter) {
            return invalid("COPY delimiter must not appear in the NULL specification");
        }
    }
    Ok(())
}

fn unsupported_copy_option(option: &dyn std::fmt::Display) -> pgwire::error::PgWireError {
    error("0A000", format!("COPY option {option} is not supported"))
}
