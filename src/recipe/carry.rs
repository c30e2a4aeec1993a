//! What an old column brings along to the new column that replaces it in
//! a sync-based recipe (`swap.rs`), read from the catalog: NOT NULL, its
//! default and sequence, its one-column indexes, key and unique
//! constraints; or a refusal naming every object that cannot be carried.

use crate::error::Result;
use crate::recipe::names;
use crate::recipe::refuse;
use crate::recipe::shape::{ConstraintKind, TableShape};

/// What a new column takes over from the old one, read from the catalog.
#[derive(Debug, Clone, Default)]
pub struct Carried {
    /// NOT NULL: a CHECK NOT VALID, VALIDATE, then SET NOT NULL in the
    /// contract (no scan).
    pub not_null: bool,
    /// The default, set in the contract (while the trigger runs, a default
    /// on a synced column would make every insert look written).
    pub default: Option<String>,
    /// The sequence of a `nextval(...)` default, made owned by the new
    /// column before the old one is dropped (which would drop it).
    pub sequence: Option<String>,
    /// The old column's one-column indexes, rebuilt on the new column.
    pub indexes: Vec<IndexCopy>,
}

/// An index (and the key or unique constraint it backs) rebuilt on the new
/// column concurrently, adopted or renamed in the contract.
#[derive(Debug, Clone)]
pub struct IndexCopy {
    /// The name it is built under.
    pub build_name: String,
    /// Its name after the contract (the old index's or constraint's name,
    /// free once the old column is dropped), when that differs.
    pub final_name: String,
    pub unique: bool,
    /// A primary key or unique constraint the contract makes of it.
    pub constraint: Option<ConstraintKind>,
    /// What it replaces, for the instructions.
    pub replaces: String,
}

/// What the old column `c` of `shape` brings to a new column named
/// `new_name` (indexes rebuilt under names made from it; when `keep_names`,
/// they get the old names back in the contract), or a refusal naming every
/// object that cannot be carried: views, foreign keys (either way), CHECK
/// and exclusion constraints, indexes over other columns too, partial or
/// expression indexes, an identity column; and, unless `allow_default`, a
/// default (see docs/recipes.md).
pub fn carry(
    recipe: &str,
    shape: &TableShape,
    c: &str,
    new_name: &str,
    keep_names: bool,
    allow_default: bool,
) -> Result<Carried> {
    let mut blocking = Vec::new();
    let Some(col) = shape.column(c) else {
        return Ok(Carried::default());
    };
    if col.identity {
        blocking.push(
            "its identity (GENERATED ... AS IDENTITY: the sequence belongs to the column and cannot move to another)"
                .to_string(),
        );
    }
    let mut carried = Carried {
        not_null: col.not_null,
        ..Carried::default()
    };
    if let Some(default) = &col.default
        && !col.identity
    {
        if allow_default {
            carried.default = Some(default.clone());
            carried.sequence = sequence_of(default);
        } else {
            blocking.push(format!(
                "its default {default} (while the trigger runs, a synced column with a default looks written by every insert)"
            ));
        }
    }
    let mut constraints_by_index = std::collections::HashMap::new();
    for k in shape
        .constraints
        .iter()
        .filter(|k| k.columns.iter().any(|x| x == c))
    {
        let alone = k.columns.len() == 1;
        match k.kind {
            ConstraintKind::PrimaryKey | ConstraintKind::Unique if alone => {
                constraints_by_index.insert(k.name.clone(), k.kind);
            }
            _ => blocking.push(format!("{} {} ({})", k.kind.label(), k.name, k.definition)),
        }
    }
    for index in &shape.indexes {
        let uses = index.columns.iter().any(|ic| ic.as_deref() == Some(c))
            || ((index.columns.iter().any(Option::is_none) || index.partial)
                && mentions(&index.definition, c));
        if !uses {
            continue;
        }
        if index.columns.len() != 1 || index.partial || !index.valid {
            blocking.push(format!("index {} ({})", index.name, index.definition));
            continue;
        }
        let constraint = constraints_by_index.get(&index.name).copied();
        let suffix = match (constraint, index.unique) {
            (Some(ConstraintKind::PrimaryKey), _) => "pkey",
            (_, true) => "key",
            (_, false) => "idx",
        };
        let build_name = names::object_name(&shape.name, &[new_name.to_string()], suffix);
        if shape.indexes.iter().any(|i| i.name == build_name)
            || shape.constraints.iter().any(|k| k.name == build_name)
        {
            blocking.push(format!(
                "index {} (the index that would replace it, {build_name}, exists already)",
                index.name
            ));
            continue;
        }
        carried.indexes.push(IndexCopy {
            final_name: if keep_names {
                index.name.clone()
            } else {
                build_name.clone()
            },
            build_name,
            unique: index.unique,
            constraint,
            replaces: match constraint {
                Some(kind) => format!("the {} {}", kind.label(), index.name),
                None => format!("index {}", index.name),
            },
        });
    }
    for fk in &shape.referenced_by {
        if fk
            .references
            .as_ref()
            .is_some_and(|(_, cols)| cols.iter().any(|x| x == c))
        {
            blocking.push(format!(
                "foreign key {} of {} ({})",
                fk.name, fk.table, fk.definition
            ));
        }
    }
    for view in shape
        .views
        .iter()
        .filter(|v| v.columns.iter().any(|x| x == c))
    {
        blocking.push(format!("view {}", view.name));
    }
    if !blocking.is_empty() {
        return Err(refuse(
            recipe,
            format!(
                "{}.{c} cannot be carried over to a new column: {}",
                shape.name,
                blocking.join(", ")
            ),
            "change or drop what uses the column first (in a plan of its own), then generate this plan again",
        ));
    }
    Ok(carried)
}

/// The sequence of a `nextval('seq'::regclass)` default, as SQL.
fn sequence_of(default: &str) -> Option<String> {
    let rest = default.strip_prefix("nextval('")?;
    let end = rest.find("'::regclass)")?;
    Some(rest[..end].replace("''", "'"))
}

/// Whether an index definition mentions column `c` as a word.
fn mentions(definition: &str, c: &str) -> bool {
    definition
        .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
        .any(|w| w == c)
}

/// The table's key for the backfill, or a refusal.
pub fn require_key(recipe: &str, shape: &TableShape) -> Result<()> {
    match shape.key() {
        Some(_) => Ok(()),
        None => Err(refuse(
            recipe,
            format!(
                "table {} has no primary key and no unique index over NOT NULL columns: the backfill that copies the old values walks the table by such a key",
                shape.name
            ),
            format!(
                "add a primary key to {} first (e.g. with `orch plan new add-unique`), then generate this plan again",
                shape.name
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nextval_default_names_its_sequence() {
        assert_eq!(
            sequence_of("nextval('orders_id_seq'::regclass)").as_deref(),
            Some("orders_id_seq")
        );
        assert_eq!(
            sequence_of("nextval('app.\"Odd''s\"'::regclass)").as_deref(),
            Some("app.\"Odd's\"")
        );
        assert_eq!(sequence_of("0"), None);
    }
}
