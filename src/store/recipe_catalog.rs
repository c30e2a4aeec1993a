//! What `orch plan new` reads of a table for its recipe: columns, indexes,
//! constraints, the foreign keys that reference it and the views that read
//! it (`recipe::TableShape`), and the recipe's counts over the rows
//! (`recipe::Probe`), all read-only.

use crate::error::{Error, Result};
use crate::recipe::shape::{
    ColumnShape, ConstraintKind, ConstraintShape, IndexShape, Probe, ProbeCount, TableShape,
    ViewShape,
};
use crate::store::Store;
use crate::store::backfill::quote_ident;

/// `a.b` -> `"a"."b"`.
fn quoted(table: &str) -> String {
    table
        .split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

const CONSTRAINTS: &str = "
    SELECT k.conname::text, k.contype::text, k.conrelid::regclass::text,
           ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS u(n, o)
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o),
           CASE WHEN k.confrelid = 0 THEN NULL ELSE k.confrelid::regclass::text END,
           ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY AS u(n, o)
                 JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.o),
           k.convalidated, pg_get_constraintdef(k.oid)
    FROM pg_constraint k";

fn constraint(row: &tokio_postgres::Row) -> ConstraintShape {
    let contype: String = row.get(1);
    let references: Option<String> = row.get(4);
    ConstraintShape {
        name: row.get(0),
        kind: ConstraintKind::from_contype(contype.chars().next().unwrap_or(' ')),
        table: row.get(2),
        columns: row.get(3),
        references: references.map(|t| (t, row.get(5))),
        validated: row.get(6),
        definition: row.get(7),
    }
}

impl Store {
    /// The shape of `table` (`name` or `schema.name`, as given to a
    /// recipe); None when there is no such table.
    pub async fn table_shape(&self, table: &str) -> Result<Option<TableShape>> {
        let name = quoted(table);
        let fail = |e| Error::db(format!("cannot read the catalog entries of {table}"), e);
        let client = self.client();
        let Some(head) = client
            .query_opt(
                "SELECT c.oid::regclass::text, c.reltuples::float8, c.relkind = 'p' FROM pg_class c
                 WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
                &[&name],
            )
            .await
            .map_err(fail)?
        else {
            return Ok(None);
        };
        let reltuples: f64 = head.get(1);
        let columns = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                        pg_get_expr(d.adbin, d.adrelid), a.attidentity <> ''
                 FROM pg_attribute a
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum",
                &[&name],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|r| ColumnShape {
                name: r.get(0),
                type_name: r.get(1),
                not_null: r.get(2),
                default: r.get(3),
                identity: r.get(4),
            })
            .collect();
        let indexes = client
            .query(
                "SELECT c.relname::text,
                        ARRAY(SELECT a.attname::text
                              FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS u(n, o)
                              LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.n
                              WHERE u.o <= i.indnkeyatts ORDER BY u.o),
                        i.indisunique, i.indisprimary, i.indisvalid, i.indpred IS NOT NULL,
                        pg_get_indexdef(i.indexrelid)
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = to_regclass($1)
                 ORDER BY c.relname",
                &[&name],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|r| IndexShape {
                name: r.get(0),
                columns: r.get(1),
                unique: r.get(2),
                primary: r.get(3),
                valid: r.get(4),
                partial: r.get(5),
                definition: r.get(6),
            })
            .collect();
        let constraints = client
            .query(
                &format!("{CONSTRAINTS} WHERE k.conrelid = to_regclass($1) ORDER BY k.conname"),
                &[&name],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(constraint)
            .collect();
        let referenced_by = client
            .query(
                &format!(
                    "{CONSTRAINTS} WHERE k.confrelid = to_regclass($1) AND k.contype = 'f' ORDER BY k.conname"
                ),
                &[&name],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(constraint)
            .collect();
        let mut views: Vec<ViewShape> = Vec::new();
        for row in client
            .query(
                "SELECT DISTINCT v.oid::regclass::text, a.attname::text
                 FROM pg_depend d
                 JOIN pg_rewrite r ON r.oid = d.objid
                 JOIN pg_class v ON v.oid = r.ev_class
                 JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND d.refobjid = to_regclass($1) AND v.oid <> d.refobjid
                 ORDER BY 1, 2",
                &[&name],
            )
            .await
            .map_err(fail)?
        {
            let (view, column): (String, String) = (row.get(0), row.get(1));
            match views.last_mut() {
                Some(last) if last.name == view => last.columns.push(column),
                _ => views.push(ViewShape {
                    name: view,
                    columns: vec![column],
                }),
            }
        }
        Ok(Some(TableShape {
            name: head.get(0),
            rows_estimate: (reltuples >= 0.0).then_some(reltuples as i64),
            columns,
            indexes,
            constraints,
            referenced_by,
            views,
            partitioned: head.get(2),
        }))
    }

    /// Count what `probe` asks for, in a read-only transaction.
    pub async fn probe(&self, probe: &Probe) -> Result<ProbeCount> {
        let sql = match probe {
            Probe::Nulls { table, column } => format!(
                "SELECT count(*)::int8, NULL::text FROM {} WHERE {} IS NULL",
                quoted(table),
                quote_ident(column)
            ),
            Probe::Duplicates { table, columns } => {
                let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
                let list = list.join(", ");
                let not_null: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{} IS NOT NULL", quote_ident(c)))
                    .collect();
                format!(
                    "SELECT count(*)::int8, min(example) FROM (
                         SELECT concat_ws(', ', {list}) AS example FROM {} WHERE {}
                         GROUP BY {list} HAVING count(*) > 1) AS duplicates",
                    quoted(table),
                    not_null.join(" AND ")
                )
            }
            Probe::Orphans {
                table,
                column,
                target,
                target_column,
            } => format!(
                "SELECT count(*)::int8, min(t.{c}::text) FROM {} AS t
                 WHERE t.{c} IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM {} AS p WHERE p.{} = t.{c})",
                quoted(table),
                quoted(target),
                quote_ident(target_column),
                c = quote_ident(column)
            ),
        };
        let fail = |e| Error::db(format!("cannot count {probe:?}"), e);
        let client = self.client();
        client
            .batch_execute("BEGIN READ ONLY")
            .await
            .map_err(fail)?;
        let row = client.query_one(&sql, &[]).await;
        client.batch_execute("ROLLBACK").await.map_err(fail)?;
        let row = row.map_err(fail)?;
        Ok(ProbeCount {
            rows: row.get(0),
            example: row.get(1),
        })
    }
}
