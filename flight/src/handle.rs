//! Statement handles. A handle is the statement itself: its SQL and, once bound, its
//! parameters' values as an Arrow IPC stream of one row. The server keeps nothing between
//! calls; whoever presents a handle runs it under their own token.

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{ParamValues, ScalarValue};
use prost::Message;
use tonic::Status;

/// A statement as its handle carries it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Handle {
    /// The statement's SQL.
    #[prost(string, tag = "1")]
    pub sql: String,
    /// The values bound to its parameters: one row, `$1` the first column.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub params: Option<Bytes>,
}

impl Handle {
    /// A statement with nothing bound.
    pub(crate) fn new(sql: String) -> Self {
        Self { sql, params: None }
    }

    /// The handle's bytes.
    pub(crate) fn encode(&self) -> Bytes {
        self.encode_to_vec().into()
    }

    /// A handle from its bytes.
    pub(crate) fn decode_from(bytes: &[u8]) -> Result<Self, Status> {
        <Self as Message>::decode(bytes)
            .map_err(|_| Status::invalid_argument("not a statement handle chiso made"))
    }

    /// The same statement with `row` (one row) bound to its parameters.
    pub(crate) fn bind(&self, row: &RecordBatch) -> Result<Self, Status> {
        if row.num_rows() != 1 {
            return Err(Status::invalid_argument(format!(
                "bind one row of parameters at a time (this batch has {})",
                row.num_rows()
            )));
        }
        let mut bytes = Vec::new();
        let mut writer = StreamWriter::try_new(&mut bytes, &row.schema())
            .and_then(|mut writer| writer.write(row).map(|()| writer))
            .map_err(|error| Status::invalid_argument(format!("parameters: {error}")))?;
        writer
            .finish()
            .map_err(|error| Status::invalid_argument(format!("parameters: {error}")))?;
        drop(writer);
        Ok(Self {
            sql: self.sql.clone(),
            params: Some(bytes.into()),
        })
    }

    /// The bound values, `$1` first (by column position: clients name the columns as
    /// they like).
    pub(crate) fn values(&self) -> Result<Option<ParamValues>, Status> {
        let Some(bytes) = &self.params else {
            return Ok(None);
        };
        let invalid = |error: &dyn std::fmt::Display| {
            Status::invalid_argument(format!("the handle's parameters: {error}"))
        };
        let reader = StreamReader::try_new(bytes.as_ref(), None).map_err(|e| invalid(&e))?;
        let mut values = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| invalid(&e))?;
            for column in batch.columns() {
                values.push(ScalarValue::try_from_array(column, 0).map_err(|e| invalid(&e))?);
            }
        }
        Ok(Some(values.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn a_bound_handle_gives_its_values_back_in_column_order() {
        let row = RecordBatch::try_from_iter([
            ("b", Arc::new(Int64Array::from(vec![3])) as _),
            ("a", Arc::new(StringArray::from(vec!["x"])) as _),
        ])
        .unwrap();
        let handle = Handle::new("SELECT $1, $2".into()).bind(&row).unwrap();
        let again = Handle::decode_from(&handle.encode()).unwrap();
        assert_eq!(again, handle);
        let ParamValues::List(values) = again.values().unwrap().unwrap() else {
            panic!("positional");
        };
        let values: Vec<ScalarValue> = values.into_iter().map(|v| v.value).collect();
        assert_eq!(
            values,
            [
                ScalarValue::Int64(Some(3)),
                ScalarValue::Utf8(Some("x".into()))
            ]
        );
        assert!(Handle::decode_from(b"\xff\xff").is_err());
    }
}
