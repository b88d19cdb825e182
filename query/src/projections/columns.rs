//! Building Arrow columns from the fold's state, and reading them back from segments.

use crate::local_time::ZONE;
use datafusion::arrow::array::{
    Array, ArrayRef, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// Local time: µs since the epoch, shown at +07:00.
pub fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(ZONE.into()))
}

/// A schema from `(name, type, nullable)`.
pub fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(name, data_type, nullable)| Field::new(*name, data_type.clone(), *nullable))
            .collect::<Vec<_>>(),
    ))
}

pub fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema.clone(), columns).expect("columns match their schema")
}

pub fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

pub fn optional_strings<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

pub fn times(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        values
            .into_iter()
            .collect::<TimestampMicrosecondArray>()
            .with_timezone(ZONE),
    )
}

pub fn ints(values: impl IntoIterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int32Array>())
}

pub fn longs(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<Int64Array>())
}

/// Reads columns of a segment batch by name, checking their types.
pub struct Columns<'a>(pub &'a RecordBatch);

impl Columns<'_> {
    pub fn get<T: 'static>(&self, name: &str) -> Result<&T, String> {
        self.0
            .column_by_name(name)
            .and_then(|column| column.as_any().downcast_ref::<T>())
            .ok_or_else(|| format!("column {name} is missing or has another type"))
    }

    /// A string column that segments written by an older chiso may not have.
    pub fn optional_strings(&self, name: &str) -> Result<Option<&StringArray>, String> {
        match self.0.column_by_name(name) {
            Some(_) => self.strings(name).map(Some),
            None => Ok(None),
        }
    }

    pub fn strings(&self, name: &str) -> Result<&StringArray, String> {
        self.get(name)
    }

    pub fn int32(&self, name: &str) -> Result<&Int32Array, String> {
        self.get(name)
    }

    pub fn int64(&self, name: &str) -> Result<&Int64Array, String> {
        self.get(name)
    }

    pub fn times(&self, name: &str) -> Result<&TimestampMicrosecondArray, String> {
        self.get(name)
    }
}

/// A column of names (agencies, services, provinces, procedures) as a segment reader gave it:
/// plain strings, or a dictionary whose few values are interned once for the whole batch.
pub enum Names<'a> {
    Plain(&'a StringArray),
    Dictionary {
        keys: &'a Int32Array,
        names: Vec<Arc<str>>,
    },
}

impl<'a> Names<'a> {
    /// The column `name` of `columns`, its dictionary's values interned by `intern`; `None`
    /// when a segment written by an older chiso has no such column.
    pub fn of(
        columns: &Columns<'a>,
        name: &str,
        intern: &mut dyn FnMut(&str) -> Arc<str>,
    ) -> Result<Option<Self>, String> {
        let Some(column) = columns.0.column_by_name(name) else {
            return Ok(None);
        };
        if let Some(plain) = column.as_any().downcast_ref::<StringArray>() {
            return Ok(Some(Self::Plain(plain)));
        }
        let dictionary = column
            .as_any()
            .downcast_ref::<DictionaryArray<Int32Type>>()
            .ok_or_else(|| format!("column {name} is not text"))?;
        let values = dictionary
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| format!("column {name} is not text"))?;
        // A null value is never a key of a valid row; it is kept as "" to keep the indexes.
        let names = (0..values.len())
            .map(|i| {
                intern(if values.is_valid(i) {
                    values.value(i)
                } else {
                    ""
                })
            })
            .collect();
        Ok(Some(Self::Dictionary {
            keys: dictionary.keys(),
            names,
        }))
    }

    /// The name at `row` (`None` where it is null), shared.
    pub fn at(&self, row: usize, intern: &mut dyn FnMut(&str) -> Arc<str>) -> Option<Arc<str>> {
        match self {
            Self::Plain(array) => string_at(array, row).map(intern),
            Self::Dictionary { keys, names } => {
                optional(*keys, row, |i| names[keys.value(i) as usize].clone())
            }
        }
    }
}

/// The value at `row`, or `None` where it is null.
pub fn optional<A: Array, T>(array: &A, row: usize, value: impl Fn(usize) -> T) -> Option<T> {
    array.is_valid(row).then(|| value(row))
}

pub fn string_at(array: &StringArray, row: usize) -> Option<&str> {
    optional(array, row, |i| array.value(i))
}
