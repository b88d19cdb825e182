//! Biểu 06 in the printed form's rows (`/v1/reports/dossiers?layout=form&province=…`): every
//! agency of the province, with zeros where it had nothing, grouped as the form groups them —
//! the Center; the province itself and its departments; each district followed by its
//! communes — each group closed by its subtotal, the province's total last. Written as SQL over
//! `dossier_report` and `agencies`, so every answer format (and `min_position`) works on it.

use chiso_query::REPORT;

/// The counted columns of `dossier_report`, in its order.
fn counts() -> Vec<String> {
    REPORT
        .fields()
        .iter()
        .filter(|field| field.data_type().is_integer())
        .map(|field| field.name().clone())
        .collect()
}

/// The statement of the form's rows over `report` (a `dossier_report(…)` call), for the
/// province bound as `$province`. Columns: `line` (`agency` · `subtotal` · `total`),
/// `agency` (its code, null on a subtotal and the total), `name`, then the counts.
pub fn form_sql(report: &str) -> String {
    let counts = counts();
    let zeroed: Vec<String> = counts
        .iter()
        .map(|c| format!("coalesce(r.{c}, 0) AS {c}"))
        .collect();
    let plain = counts.join(", ");
    let summed: Vec<String> = counts.iter().map(|c| format!("sum({c}) AS {c}")).collect();
    let (zeroed, summed) = (zeroed.join(", "), summed.join(", "));
    // `grp`: the group a unit's row is in (1 the Center, 2 the province and its departments,
    // 3 a district and its communes); `district`: which district's; `depth`: a district's own
    // row before its communes. A commune whose parent is no district is grouped under its parent.
    format!(
        "WITH report AS (SELECT * FROM {report}), \
         units AS (\
           SELECT a.code, a.name, \
             CASE a.kind WHEN 'center' THEN 1 WHEN 'province' THEN 2 WHEN 'department' THEN 2 ELSE 3 END AS grp, \
             CASE a.kind WHEN 'district' THEN a.code WHEN 'commune' THEN coalesce(a.parent, '') ELSE '' END AS district, \
             CASE a.kind WHEN 'commune' THEN 1 ELSE 0 END AS depth, \
             {zeroed} \
           FROM agencies a LEFT JOIN report r ON r.agency = a.code \
           WHERE a.province = $province AND a.kind <> 'ministry'), \
         subtotals AS (\
           SELECT grp, district, {summed} FROM units GROUP BY grp, district), \
         lines AS (\
           SELECT grp, district, depth, code AS sort, 'agency' AS line, code AS agency, name, {plain} FROM units \
           UNION ALL \
           SELECT s.grp, s.district, 9 AS depth, '' AS sort, 'subtotal' AS line, CAST(NULL AS VARCHAR) AS agency, \
             CASE s.grp WHEN 1 THEN 'Cộng Trung tâm (subtotal: the Center)' \
               WHEN 2 THEN 'Cộng cấp tỉnh (subtotal: the province and its departments)' \
               ELSE 'Cộng ' || coalesce(d.name, s.district) || ' (subtotal)' END AS name, \
             {s_plain} \
           FROM subtotals s LEFT JOIN agencies d ON d.code = s.district AND s.grp = 3 \
           UNION ALL \
           SELECT 9 AS grp, '' AS district, 9 AS depth, '' AS sort, 'total' AS line, CAST(NULL AS VARCHAR) AS agency, \
             'Tổng cộng (total)' AS name, {summed} FROM units) \
         SELECT line, agency, name, {plain} FROM lines ORDER BY grp, district, depth, sort",
        s_plain = counts
            .iter()
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}
