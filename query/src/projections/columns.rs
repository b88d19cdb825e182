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

/// A column of few distinct values (names of agencies, services, provinces, procedures; a
/// channel, an outcome) as a segment reader gave it: plain strings, each read at its row, or
/// a dictionary whose values are read once for the whole batch.
pub enum Coded<'a, T> {
    Plain(&'a StringArray),
    Dictionary {
        keys: &'a Int32Array,
        /// Each value of the dictionary, read (`None`: a null value).
        values: Vec<Result<Option<T>, String>>,
    },
}

/// A column of names, shared: [`Coded`] with each name interned.
pub type Names<'a> = Coded<'a, Arc<str>>;

impl<'a, T: Clone> Coded<'a, T> {
    /// The column `name` of `columns`, its dictionary's values read by `read`; `None` when a
    /// segment written by an older chiso has no such column.
    pub fn of(
        columns: &Columns<'a>,
        name: &str,
        read: &mut dyn FnMut(&str) -> Result<T, String>,
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
        // A value no row uses that cannot be read is no error: a row that uses it is.
        let values = (0..values.len())
            .map(|i| string_at(values, i).map(&mut *read).transpose())
            .collect();
        Ok(Some(Self::Dictionary {
            keys: dictionary.keys(),
            values,
        }))
    }

    /// The value at `row` (`None` where it is null).
    pub fn at(
        &self,
        row: usize,
        read: &mut dyn FnMut(&str) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self {
            Self::Plain(array) => string_at(array, row).map(read).transpose(),
            Self::Dictionary { keys, values } => {
                optional(*keys, row, |i| values[keys.value(i) as usize].clone()).unwrap_or(Ok(None))
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::DictionaryArray;

    #[test]
    fn a_dictionary_value_is_read_once_and_fails_only_the_rows_that_use_it() {
        let values = StringArray::from(vec![Some("1"), Some("two"), None]);
        let keys = Int32Array::from(vec![Some(0), None, Some(0), Some(2), Some(1)]);
        let column = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        let schema = Schema::new(vec![Field::new("n", column.data_type().clone(), true)]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(column)]).unwrap();
        let mut reads = 0;
        let mut read = |text: &str| {
            reads += 1;
            text.parse::<i32>().map_err(|e| e.to_string())
        };
        let coded = Coded::of(&Columns(&batch), "n", &mut read)
            .unwrap()
            .unwrap();
        let at: Vec<_> = (0..5).map(|row| coded.at(row, &mut read)).collect();
        assert_eq!(at[..4], [Ok(Some(1)), Ok(None), Ok(Some(1)), Ok(None)]);
        assert!(at[4].is_err(), "{:?}", at[4]);
        assert!(Coded::of(&Columns(&batch), "missing", &mut read)
            .unwrap()
            .is_none());
        // Each value of the dictionary once, the null value not at all.
        assert_eq!(reads, 2);
    }
}
