//! DataFusion table providers over the projections and the log.
//!
//! Time-series tables prune their monthly partitions from time filters on their partition
//! column (`received_at` for `dossiers`, `day` for `agency_daily`); `events` reads the log
//! itself, in position order, from the position range its filters allow.

use crate::local_parquet::{LocalParquetReaderFactory, LocalPath};
use crate::local_time::{local_day, month_of_day, MonthKey, DAY_LIMIT, ZONE};
use crate::projections::{self, Projections, SealedFile, TableName};
use crate::sealed_filter::{self, DictionaryFilter};
use async_trait::async_trait;
use chiso_store::EventStore;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt64Array,
};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderMetadata;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use std::collections::{BTreeSet, HashSet};
use std::ops::RangeInclusive;
use std::sync::{Arc, LazyLock};

/// `events`: one row per event of the log.
pub static EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    let fields = [
        ("position", Int64),
        ("stream", Utf8),
        ("revision", Int64),
        ("event_id", Utf8),
        ("type", Utf8),
        (
            "recorded_at",
            Timestamp(TimeUnit::Microsecond, Some(ZONE.into())),
        ),
        // Who appended it; NULL for events written before authors were recorded.
        ("recorded_by", Utf8),
        ("data", Utf8),
        ("metadata", Utf8),
    ];
    Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(name, data_type)| Field::new(name, data_type, name == "recorded_by"))
            .collect::<Vec<_>>(),
    ))
});

/// A table folded by the projections.
#[derive(Clone)]
pub struct ProjectionTable {
    table: TableName,
    schema: SchemaRef,
    projections: Projections,
}

impl std::fmt::Debug for ProjectionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProjectionTable({:?})", self.table)
    }
}

impl ProjectionTable {
    /// Every table of ARCHITECTURE.md §5 but `events`, by name.
    pub fn all(projections: &Projections) -> Vec<(&'static str, Self)> {
        use TableName as T;
        [
            ("agencies", T::Agencies, &projections::AGENCIES),
            ("services", T::Services, &projections::SERVICES),
            (
                "service_levels",
                T::ServiceLevels,
                &projections::SERVICE_LEVELS,
            ),
            ("dossiers", T::Dossiers, &projections::DOSSIERS_SQL),
            ("agency_daily", T::AgencyDaily, &projections::AGENCY_DAILY),
            ("ict_index", T::IctIndex, &projections::ICT_INDEX),
            ("rankings", T::Rankings, &projections::RANKINGS),
        ]
        .into_iter()
        .map(|(name, table, schema)| {
            let provider = Self {
                table,
                schema: (*schema).clone(),
                projections: projections.clone(),
            };
            (name, provider)
        })
        .collect()
    }

    /// The column naming the agency a row belongs to, for tables a read scope narrows
    /// (published ones, `agencies`, `ict_index` and `rankings`, are read by every scope).
    fn scope_column(&self) -> Option<&'static str> {
        match self.table {
            TableName::Dossiers
            | TableName::AgencyDaily
            | TableName::Services
            | TableName::ServiceLevels => Some("agency"),
            TableName::Agencies | TableName::IctIndex | TableName::Rankings => None,
        }
    }

    /// The column whose local month names the partition.
    fn partition_column(&self) -> Option<&'static str> {
        match self.table {
            TableName::Dossiers => Some("received_at"),
            TableName::AgencyDaily => Some("day"),
            _ => None,
        }
    }
}

#[async_trait]
impl TableProvider for ProjectionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Pruning is by whole months: DataFusion still applies every filter to the rows, but
        // those the scan applies itself, on the sealed files' dictionaries and the rows in
        // memory (see `stored_scan`).
        let dictionaries = self.dictionaries();
        Ok(filters
            .iter()
            .map(
                |filter| match sealed_filter::exact(filter, &self.schema, dictionaries) {
                    true => TableProviderFilterPushDown::Exact,
                    false => TableProviderFilterPushDown::Inexact,
                },
            )
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scope = crate::scope::of(state)?;
        let Some(column) = self.scope_column() else {
            return self.scan_all(state, projection, filters);
        };
        // The scope's codes also prune sealed files and row groups.
        let mut filters = filters.to_vec();
        filters.extend(crate::scope::pruning_filters(&scope, column));
        crate::scope::narrowed(&scope, &self.schema, column, projection, |projection| {
            self.scan_all(state, projection, &filters)
        })
    }
}

impl ProjectionTable {
    /// The string columns its sealed files store as dictionaries (sealed `dossiers` store
    /// their names and codes so).
    fn dictionaries(&self) -> &'static [&'static str] {
        match self.table {
            TableName::Dossiers => &projections::sealed::DICTIONARY_COLUMNS,
            _ => &[],
        }
    }

    /// Every row the filters do not rule out, whatever the caller's scope.
    fn scan_all(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.table == TableName::Dossiers {
            return dossiers_scan(self, state, projection, filters);
        }
        self.stored_scan(state, &self.schema, projection, filters)
    }

    /// The rows in memory and in sealed files, with the columns `schema` stores.
    fn stored_scan(
        &self,
        state: &dyn Session,
        schema: &SchemaRef,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let months = match self.partition_column() {
            Some(column) => month_range(filters, column),
            None => MonthKey::MIN..=MonthKey::MAX,
        };
        let n = state.config().target_partitions();
        let (batches, files) = match self.table {
            TableName::Dossiers => self.projections.dossier_sources(months),
            TableName::AgencyDaily => self.projections.daily_sources(months),
            table => (self.projections.batches(table, months), Vec::new()),
        };
        // The filters taken as exact are applied here, to both parts: their columns are read
        // even when the query does not select them, and dropped after.
        let dictionaries = self.dictionaries();
        let exact: Vec<Expr> = filters
            .iter()
            .filter(|f| sealed_filter::exact(f, &self.schema, dictionaries))
            .cloned()
            .collect();
        let read = sealed_filter::widened(projection, schema, &exact)?;
        let asked = projection.map(Vec::len);
        let memory =
            MemorySourceConfig::try_new_exec(&spread(batches, n), schema.clone(), read.clone())?;
        let memory: Arc<dyn ExecutionPlan> = match conjunction(exact) {
            Some(filter) => {
                let columns = DFSchema::try_from(memory.schema().as_ref().clone())?;
                let predicate = state.create_physical_expr(filter, &columns)?;
                let kept = asked.map(|asked| (0..asked).collect());
                Arc::new(
                    FilterExecBuilder::new(predicate, memory)
                        .apply_projection(kept)?
                        .build()?,
                )
            }
            None => memory,
        };
        let sealed = Sealed {
            files,
            read: read.as_ref(),
            asked,
            filters,
            partitions: n,
            dictionaries,
        };
        match sealed_scan(state, schema, sealed)? {
            Some(sealed) => UnionExec::try_new(vec![memory, sealed]),
            None => Ok(memory),
        }
    }
}

/// `dossiers`: the stored columns, and `working_days_late` computed over them when asked for
/// — `working_days(effective_due_at, resolved_at)` for late dossiers, 0 for the others
/// resolved, null while open or withdrawn — with the calendar in force.
fn dossiers_scan(
    table: &ProjectionTable,
    state: &dyn Session,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
) -> Result<Arc<dyn ExecutionPlan>> {
    let stored = &projections::DOSSIERS;
    let late = table.schema.index_of(projections::WORKING_DAYS_LATE)?;
    let wanted: Vec<usize> = match projection {
        Some(columns) => columns.clone(),
        None => (0..table.schema.fields().len()).collect(),
    };
    // Filters on the computed column prune nothing: DataFusion applies them above the scan.
    let filters: Vec<Expr> = filters
        .iter()
        .filter(|f| {
            !f.column_refs()
                .iter()
                .any(|c| c.name == projections::WORKING_DAYS_LATE)
        })
        .cloned()
        .collect();
    if !wanted.contains(&late) {
        return table.stored_scan(state, stored, Some(&wanted), &filters);
    }
    let mut read: Vec<usize> = wanted.iter().copied().filter(|&i| i != late).collect();
    for name in ["effective_due_at", "resolved_at", "timeliness"] {
        let i = stored.index_of(name)?;
        if !read.contains(&i) {
            read.push(i);
        }
    }
    let input = table.stored_scan(state, stored, Some(&read), &filters)?;
    let input_schema = DFSchema::try_from(input.schema().as_ref().clone())?;
    let Some(working_days) = state.scalar_functions().get("working_days").cloned() else {
        return Err(DataFusionError::Internal(
            "working_days is not registered".into(),
        ));
    };
    use datafusion::prelude::{col, lit, when};
    let late_expr = when(
        col("timeliness").eq(lit("late")),
        working_days.call(vec![col("effective_due_at"), col("resolved_at")]),
    )
    .when(col("timeliness").is_not_null(), lit(0i32))
    .end()?;
    let mut columns: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(wanted.len());
    for &i in &wanted {
        let name = table.schema.field(i).name().clone();
        let expr = if i == late {
            state.create_physical_expr(late_expr.clone(), &input_schema)?
        } else {
            let at = read
                .iter()
                .position(|&r| r == i)
                .expect("read holds every stored column");
            Arc::new(datafusion::physical_expr::expressions::Column::new(
                &name, at,
            ))
        };
        columns.push((expr, name));
    }
    Ok(Arc::new(ProjectionExec::try_new(columns, input)?))
}

/// What a scan of sealed months reads.
struct Sealed<'a> {
    files: Vec<SealedFile>,
    /// The columns read: those asked for, then those only the exact filters need.
    read: Option<&'a Vec<usize>>,
    /// How many of `read` the scan returns (`None`: all of the schema's).
    asked: Option<usize>,
    filters: &'a [Expr],
    partitions: usize,
    /// The string columns the files store as dictionaries.
    dictionaries: &'a [&'a str],
}

/// DataFusion's Parquet scan over sealed months: projection, the filters as a pruning
/// predicate (row groups and pages by their statistics), each file's deletion vector as a
/// row selection, and its exact row count. Files whose footers show that no row group can
/// match are left out before the scan is planned (`None` when that leaves none). The
/// dictionaries a filter compares with constants are read and filtered as dictionaries
/// first ([`DictionaryFilter`]): every filter taken as exact is applied here.
fn sealed_scan(
    state: &dyn Session,
    schema: &SchemaRef,
    sealed: Sealed<'_>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Sealed {
        files,
        read,
        asked,
        filters,
        partitions: n,
        dictionaries,
    } = sealed;
    // Footers and page indexes parsed once per file, not once per query: the runtime's
    // metadata cache (sealed files never change; a compaction writes a new name).
    let runtime = state.runtime_env();
    let store = runtime.object_store(ObjectStoreUrl::local_filesystem())?;
    let footers =
        CachedParquetFileReaderFactory::new(store, runtime.cache_manager.get_file_metadata_cache());
    let reader = LocalParquetReaderFactory { footers };
    // The session's Parquet options (`DATAFUSION_EXECUTION_PARQUET_*`), as a listing table
    // would read them, but for Bloom filters.
    let mut options = state.table_options().parquet.clone();
    // Sealed files have no Bloom filters: looking for them cost a tenth of a scan.
    options.global.bloom_filter_on_read = false;
    let physical = |filter: Option<Expr>, schema: &SchemaRef| {
        let columns = DFSchema::try_from(schema.as_ref().clone()).ok()?;
        state.create_physical_expr(filter?, &columns).ok()
    };
    let predicate = physical(conjunction(filters.iter().cloned()), schema);
    let files = match &predicate {
        Some(predicate) => prune_files(files, predicate, schema),
        None => files,
    };
    if files.is_empty() {
        return Ok(None);
    }
    let on_dictionaries = DictionaryFilter::of(filters, schema, dictionaries);
    let (scan_schema, predicate) = match &on_dictionaries {
        Some(filter) => {
            let scan_schema = filter.scan_schema(schema);
            let predicate = physical(filter.pruning(filters), &scan_schema);
            (scan_schema, predicate)
        }
        None => (schema.clone(), predicate),
    };
    let mut source = ParquetSource::new(scan_schema.clone())
        .with_table_parquet_options(options)
        .with_parquet_file_reader_factory(Arc::new(reader));
    if let Some(predicate) = predicate {
        source = source.with_predicate(predicate);
    }
    let mut groups = vec![Vec::new(); n.clamp(1, files.len())];
    let count = groups.len();
    for (i, file) in files.into_iter().enumerate() {
        let mut statistics = Statistics::new_unknown(&scan_schema);
        statistics.num_rows = Precision::Exact(file.base.live_rows() as usize);
        statistics.total_byte_size = Precision::Inexact(file.base.bytes as usize);
        let mut partitioned = PartitionedFile::new(file.path.to_string_lossy(), file.base.bytes)
            .with_statistics(Arc::new(statistics))
            // The scan holds the file: a compaction removes it only once the scan is gone.
            .with_extension(file.base.file.clone())
            .with_extension(LocalPath(file.path.into()));
        if let Some(selection) = file.base.selection() {
            partitioned = partitioned.with_extension(ParquetRowSelection::new(selection));
        }
        if let (Some(filter), Some(footer)) = (&on_dictionaries, &file.base.footer) {
            partitioned = partitioned.with_arrow_schema(filter.file_hint(footer.schema()));
        }
        groups[i % count].push(partitioned);
    }
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
        .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
        .with_projection_indices(read.cloned())?
        .build();
    let scan = DataSourceExec::from_data_source(config);
    match on_dictionaries {
        Some(filter) => filter.apply(state, scan, read, asked, schema).map(Some),
        None => Ok(Some(scan)),
    }
}

/// The files of which some row group may hold a row `predicate` accepts, by the statistics
/// of their footers (all of them when a footer is missing or the predicate proves nothing):
/// a lookup by `id` opens none of a decade's files.
fn prune_files(
    files: Vec<SealedFile>,
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
) -> Vec<SealedFile> {
    let pruning = PruningPredicateBuilder::new()
        .with_file_schema(schema.clone())
        .build(predicate.clone());
    let Some(pruning) = pruning else {
        return files;
    };
    let footers: Option<Vec<&ArrowReaderMetadata>> =
        files.iter().map(|file| file.base.footer.as_ref()).collect();
    let Some(footers) = footers else {
        return files;
    };
    let Ok(keep) = pruning.prune(&RowGroups(&footers)) else {
        return files;
    };
    let mut keep = keep.into_iter();
    let wanted: Vec<bool> = footers
        .iter()
        .map(|footer| {
            let groups = footer.metadata().num_row_groups();
            keep.by_ref()
                .take(groups)
                .fold(false, |any, kept| any | kept)
        })
        .collect();
    files
        .into_iter()
        .zip(wanted)
        .filter_map(|(file, wanted)| wanted.then_some(file))
        .collect()
}

/// Every row group of some sealed files, in order, as containers a pruning predicate reads.
struct RowGroups<'a>(&'a [&'a ArrowReaderMetadata]);

impl RowGroups<'_> {
    /// One value per row group, each file's read by `read`; `None` when a file cannot say.
    fn each(
        &self,
        column: &Column,
        read: impl Fn(&StatisticsConverter, &ParquetMetaData) -> Option<ArrayRef>,
    ) -> Option<ArrayRef> {
        let arrays = self
            .0
            .iter()
            .map(|footer| {
                let converter = StatisticsConverter::try_new(
                    &column.name,
                    footer.schema(),
                    footer.parquet_schema(),
                )
                .ok()?;
                read(&converter, footer.metadata())
            })
            .collect::<Option<Vec<_>>>()?;
        let arrays: Vec<&dyn Array> = arrays.iter().map(|array| array.as_ref()).collect();
        concat(&arrays).ok()
    }
}

impl PruningStatistics for RowGroups<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.each(column, |c, m| c.row_group_mins(m.row_groups()).ok())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.each(column, |c, m| c.row_group_maxes(m.row_groups()).ok())
    }

    fn num_containers(&self) -> usize {
        self.0.iter().map(|f| f.metadata().num_row_groups()).sum()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.each(column, |c, m| {
            let counts = c.row_group_null_counts(m.row_groups()).ok()?;
            Some(Arc::new(counts) as ArrayRef)
        })
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let rows = self.0.iter().flat_map(|f| f.metadata().row_groups());
        let counts: UInt64Array = rows.map(|group| group.num_rows() as u64).collect();
        Some(Arc::new(counts))
    }

    fn contained(&self, _: &Column, _: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// Deals batches round-robin over `n` partitions so both cores scan.
fn spread(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let n = n.clamp(1, batches.len().max(1));
    let mut partitions = vec![Vec::new(); n];
    for (i, batch) in batches.into_iter().enumerate() {
        partitions[i % n].push(batch);
    }
    partitions
}

/// The local months a conjunction of filters allows for a time column.
fn month_range(filters: &[Expr], column: &str) -> RangeInclusive<MonthKey> {
    let (mut low, mut high) = (i32::MIN, i32::MAX);
    for filter in filters {
        for (bound_low, bound_high) in day_bounds(filter, column) {
            low = low.max(bound_low);
            high = high.min(bound_high);
        }
    }
    let to_month = |day: i32, fallback| {
        if day == i32::MIN || day == i32::MAX {
            fallback
        } else {
            month_of_day(day)
        }
    };
    to_month(low, MonthKey::MIN)..=to_month(high, MonthKey::MAX)
}

/// Bounds on the local day of `column` that `filter` implies (none when it implies nothing).
fn day_bounds(filter: &Expr, column: &str) -> Vec<(i32, i32)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
            let mut bounds = day_bounds(left, column);
            bounds.extend(day_bounds(right, column));
            bounds
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let bound = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => {
                    comparison(*op, scalar_day(v))
                }
                (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => {
                    op.swap().and_then(|op| comparison(op, scalar_day(v)))
                }
                _ => None,
            };
            bound.into_iter().collect()
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (expr.as_ref(), low.as_ref(), high.as_ref()) {
            (Expr::Column(c), Expr::Literal(l, _), Expr::Literal(h, _)) if c.name == column => {
                match (scalar_day(l), scalar_day(h)) {
                    (Some(l), Some(h)) => vec![(l, h)],
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn comparison(op: Operator, day: Option<i32>) -> Option<(i32, i32)> {
    let day = day?;
    match op {
        Operator::Eq => Some((day, day)),
        Operator::Gt | Operator::GtEq => Some((day, i32::MAX)),
        Operator::Lt | Operator::LtEq => Some((i32::MIN, day)),
        _ => None,
    }
}

/// The local day of a time or date literal.
fn scalar_day(value: &ScalarValue) -> Option<i32> {
    let micros = match value {
        ScalarValue::Date32(Some(day)) => return Some((*day).clamp(-DAY_LIMIT, DAY_LIMIT)),
        ScalarValue::Date64(Some(ms)) => ms.checked_mul(1_000)?,
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000)?,
        ScalarValue::TimestampMillisecond(Some(ms), _) => ms.checked_mul(1_000)?,
        ScalarValue::TimestampMicrosecond(Some(us), _) => *us,
        ScalarValue::TimestampNanosecond(Some(ns), _) => ns.div_euclid(1_000),
        _ => return None,
    };
    Some(local_day(micros))
}

/// `events`: the log itself.
#[derive(Clone)]
pub struct EventsTable {
    store: EventStore,
}

impl std::fmt::Debug for EventsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventsTable")
    }
}

impl EventsTable {
    /// Reads `store`.
    pub fn new(store: EventStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl TableProvider for EventsTable {
    fn schema(&self) -> SchemaRef {
        EVENTS.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scope = crate::scope::of(state)?.0;
        let (mut from, mut to) = (0u64, self.store.head());
        for filter in filters {
            for (low, high) in position_bounds(filter) {
                from = from.max(low);
                to = to.min(high);
            }
        }
        let partition = LogRange {
            store: self.store.clone(),
            from,
            to,
            // Under a scope the events read are more than the rows kept.
            limit: limit.filter(|_| scope.is_none()),
            scope,
        };
        let exec = StreamingTableExec::try_new(
            EVENTS.clone(),
            vec![Arc::new(partition)],
            projection,
            Vec::new(),
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
    }
}

/// `[low, high)` bounds on `position` a filter implies.
fn position_bounds(filter: &Expr) -> Vec<(u64, u64)> {
    match filter {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
            let mut bounds = position_bounds(left);
            bounds.extend(position_bounds(right));
            bounds
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) if c.name == "position" => (Some(*op), v),
                (Expr::Literal(v, _), Expr::Column(c)) if c.name == "position" => (op.swap(), v),
                _ => return Vec::new(),
            };
            let Some(value) = integer(value) else {
                return Vec::new();
            };
            let at = value.max(0) as u64;
            let bound = match op {
                Some(Operator::Eq) if value >= 0 => (at, at + 1),
                Some(Operator::Eq) => (0, 0),
                Some(Operator::Gt) => (at + u64::from(value >= 0), u64::MAX),
                Some(Operator::GtEq) => (at, u64::MAX),
                Some(Operator::Lt) if value > 0 => (0, at),
                Some(Operator::Lt) => (0, 0),
                Some(Operator::LtEq) if value >= 0 => (0, at + 1),
                Some(Operator::LtEq) => (0, 0),
                _ => return Vec::new(),
            };
            vec![bound]
        }
        _ => Vec::new(),
    }
}

fn integer(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::Int32(Some(v)) => Some((*v).into()),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A range of log positions read as record batches, narrowed to a read scope's events.
struct LogRange {
    store: EventStore,
    from: u64,
    to: u64,
    limit: Option<usize>,
    scope: Option<Arc<BTreeSet<String>>>,
}

impl std::fmt::Debug for LogRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogRange({}..{})", self.from, self.to)
    }
}

const EVENTS_PER_BATCH: usize = 4096;

impl PartitionStream for LogRange {
    fn schema(&self) -> &SchemaRef {
        &EVENTS
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (store, to) = (self.store.clone(), self.to);
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        let scope = self.scope.clone().map(crate::scope::LogScope::new);
        let batches = futures_util::stream::unfold((self.from, scope), move |(next, scope)| {
            let store = store.clone();
            let want = (to.saturating_sub(next) as usize)
                .min(EVENTS_PER_BATCH)
                .min(remaining);
            remaining -= want;
            async move {
                if want == 0 {
                    return None;
                }
                let read = tokio::task::spawn_blocking(move || {
                    let mut events = store.read_all(next, want)?;
                    let after = events.last().map_or(u64::MAX, |e| e.position + 1);
                    let mut scope = scope;
                    if let Some(scope) = &mut scope {
                        let mut kept = Vec::with_capacity(events.len());
                        for event in events {
                            if scope.sees(&store, &event)? {
                                kept.push(event);
                            }
                        }
                        events = kept;
                    }
                    Ok::<_, chiso_store::Error>((events, after, scope))
                })
                .await;
                match read {
                    Ok(Ok((events, after, scope))) => {
                        Some((Ok(events_batch(&events)), (after, scope)))
                    }
                    Ok(Err(error)) => Some((Err(external(error)), (u64::MAX, None))),
                    Err(error) => Some((Err(external(error)), (u64::MAX, None))),
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(EVENTS.clone(), batches))
    }
}

fn external(error: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

fn events_batch(events: &[chiso_store::RecordedEvent]) -> RecordBatch {
    let strings = |get: fn(&chiso_store::RecordedEvent) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(get)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            events.iter().map(|e| e.position as i64),
        )),
        strings(|e| &e.stream),
        Arc::new(Int64Array::from_iter_values(
            events.iter().map(|e| e.revision as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.id.to_string()),
        )),
        strings(|e| &e.event_type),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                events.iter().map(|e| e.recorded_at_micros),
            )
            .with_timezone(crate::local_time::ZONE),
        ),
        Arc::new(StringArray::from_iter(events.iter().map(|e| {
            Some(e.recorded_by.as_str()).filter(|by| !by.is_empty())
        }))),
        strings(|e| &e.data),
        strings(|e| &e.metadata),
    ];
    RecordBatch::try_new(EVENTS.clone(), columns).expect("columns match")
}

/// A table whose rows are one batch, taken when a scan is planned (`system.queries`,
/// `calendar`).
pub(crate) struct SnapshotTable {
    schema: SchemaRef,
    table_type: TableType,
    batch: Box<dyn Fn() -> Result<RecordBatch> + Send + Sync>,
}

impl SnapshotTable {
    pub(crate) fn new(
        schema: SchemaRef,
        table_type: TableType,
        batch: impl Fn() -> Result<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        Self {
            schema,
            table_type,
            batch: Box::new(batch),
        }
    }
}

impl std::fmt::Debug for SnapshotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotTable({:?})", self.schema.fields().len())
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.table_type
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = (self.batch)()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
