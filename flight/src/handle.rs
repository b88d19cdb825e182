//! Statement handles. A handle is the statement itself: its SQL and, once bound, its
//! parameters' values as an Arrow IPC stream of one row, signed by the server (HMAC-SHA256
//! with a key drawn at start), so the server only ever decodes values it wrote itself. The
//! server keeps nothing between calls; whoever presents a handle runs it under their own
//! token. Handles last as long as the server runs.

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{ParamValues, ScalarValue};
use hmac::{Hmac, KeyInit, Mac};
use prost::Message;
use sha2::Sha256;
use tonic::Status;

/// The key handles are signed with, drawn when the server starts.
pub(crate) struct Signer([u8; 32]);

impl Signer {
    pub(crate) fn new() -> Self {
        Self(rand::random())
    }

    fn mac(&self, handle: &Handle) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key size");
        let unsigned = Handle {
            tag: Bytes::new(),
            ..handle.clone()
        };
        mac.update(&unsigned.encode_to_vec());
        mac
    }
}

/// A statement as its handle carries it.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Handle {
    /// The statement's SQL.
    #[prost(string, tag = "1")]
    pub sql: String,
    /// The values bound to its parameters: one row, `$1` the first column.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub params: Option<Bytes>,
    /// The server's signature of the two.
    #[prost(bytes = "bytes", tag = "3")]
    pub tag: Bytes,
}

impl Handle {
    /// A statement with nothing bound.
    pub(crate) fn new(sql: String) -> Self {
        Self {
            sql,
            params: None,
            tag: Bytes::new(),
        }
    }

    /// The handle's bytes, signed.
    pub(crate) fn encode(&self, signer: &Signer) -> Bytes {
        let signed = Handle {
            tag: signer.mac(self).finalize().into_bytes().to_vec().into(),
            ..self.clone()
        };
        signed.encode_to_vec().into()
    }

    /// A handle from its bytes, if this server signed them.
    pub(crate) fn decode_from(bytes: &[u8], signer: &Signer) -> Result<Self, Status> {
        let refused = || {
            Status::invalid_argument(
                "not a statement handle this server made (handles last as long as the server runs: prepare the statement again)",
            )
        };
        let handle = <Self as Message>::decode(bytes).map_err(|_| refused())?;
        signer
            .mac(&handle)
            .verify_slice(&handle.tag)
            .map_err(|_| refused())?;
        Ok(handle)
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
            tag: Bytes::new(),
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
            if batch.num_rows() != 1 || !values.is_empty() {
                return Err(invalid(&"not one row"));
            }
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
        let signer = Signer::new();
        let handle = Handle::new("SELECT $1, $2".into()).bind(&row).unwrap();
        let bytes = handle.encode(&signer);
        let again = Handle::decode_from(&bytes, &signer).unwrap();
        assert_eq!((&again.sql, &again.params), (&handle.sql, &handle.params));
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
        assert!(Handle::decode_from(b"\xff\xff", &signer).is_err());
        // Another server's handle, or one with other values, is refused.
        assert!(Handle::decode_from(&bytes, &Signer::new()).is_err());
        let forged = Handle {
            sql: "SELECT 1".into(),
            ..Handle::decode_from(&bytes, &signer).unwrap()
        };
        assert!(Handle::decode_from(&forged.encode_to_vec(), &signer).is_err());
    }
}
