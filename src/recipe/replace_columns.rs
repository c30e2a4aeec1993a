//! `replace-columns`: replace columns by one new column computed from them
//! (the posts example: `lat, lng` -> `loc point`). The new column is added,
//! a sync trigger computes it from the old ones (`--using`) and, with
//! `--reverse`, the old ones from it, so the old application version keeps
//! working while the new one writes only the new column; existing rows are
//! backfilled, then the old columns are dropped in a guarded contract.
//! Without `--reverse`, nothing fills the old columns once the new version
//! stops writing them: their NOT NULL is dropped in the expand step, and
//! the old version must no longer read rows the new one writes.

use crate::error::{Error, Result};
use crate::recipe::carry::{self, Carried};
use crate::recipe::names;
use crate::recipe::shape::TableShape;
use crate::recipe::swap::{Gate, NewColumn, Swap};
use crate::recipe::{Catalog, Draft, Recent, Recipe, column, refuse, table};

const NAME: &str = "replace-columns";

/// `orch plan new replace-columns NAME --table T --columns C1,C2 --with "NEW TYPE" --using EXPR [--reverse C1=EXPR,C2=EXPR]`.
#[derive(Debug, Clone)]
pub struct ReplaceColumns {
    table: String,
    columns: Vec<String>,
    new: String,
    new_type: String,
    using: String,
    reverse: Vec<(String, String)>,
    old_types: Vec<(String, String)>,
    created_at: Option<String>,
}

/// What the old columns are, as the catalog (or the options) tell.
struct OldColumns {
    /// Each column and its type.
    types: Vec<(String, String)>,
    /// Those whose NOT NULL the expand step drops.
    relax: Vec<String>,
    /// Indexes dropped along with them.
    taken_along: Vec<String>,
}

/// `text` split at the commas outside parentheses, brackets and quotes.
fn split_top(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for ch in text.chars() {
        match (quote, ch) {
            (Some(q), _) if ch == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(ch),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut part));
                continue;
            }
            _ => {}
        }
        part.push(ch);
    }
    parts.push(part);
    parts
}

/// `C1=X,C2=Y` for exactly `columns`, each value checked by `value`.
fn assignments(
    option: &str,
    text: &str,
    columns: &[String],
    value: fn(&str, &str) -> Result<String>,
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in split_top(text) {
        let Some((column, expression)) = part.split_once('=') else {
            return Err(Error::Usage(format!(
                "{option} {text:?}: expected COLUMN=EXPR for each of {}, separated by commas",
                columns.join(", ")
            )));
        };
        let column = names::identifier(option, column.trim())?;
        if !columns.contains(&column) || out.iter().any(|(c, _)| *c == column) {
            return Err(Error::Usage(format!(
                "{option} {text:?}: {column} is not one of --columns {} or is given twice",
                columns.join(",")
            )));
        }
        out.push((column, value(option, expression)?));
    }
    let mut ordered = Vec::new();
    for c in columns {
        let Some(found) = out.iter().find(|(x, _)| x == c) else {
            return Err(Error::Usage(format!(
                "{option} {text:?}: give {c}=... too (every one of --columns)"
            )));
        };
        ordered.push(found.clone());
    }
    Ok(ordered)
}

impl ReplaceColumns {
    pub fn new(
        table: &str,
        columns: &str,
        with: &str,
        using: &str,
        reverse: Option<&str>,
        old_types: Option<&str>,
        created_at: Option<&str>,
    ) -> Result<ReplaceColumns> {
        let columns = names::columns("--columns", columns)?;
        let Some((new, new_type)) = with.trim().split_once(char::is_whitespace) else {
            return Err(Error::Usage(format!(
                "--with {with:?}: expected the new column and its type, e.g. --with \"loc point\""
            )));
        };
        let new = names::identifier("--with", new)?;
        if columns.contains(&new) {
            return Err(Error::Usage(format!(
                "--with {with:?}: {new} is one of the columns it replaces; choose a new name"
            )));
        }
        Ok(ReplaceColumns {
            table: names::table("--table", table)?,
            new,
            new_type: names::type_name("--with", new_type)?,
            using: names::expression("--using", using)?,
            reverse: reverse
                .map(|r| assignments("--reverse", r, &columns, names::expression))
                .transpose()?
                .unwrap_or_default(),
            old_types: old_types
                .map(|r| assignments("--old-types", r, &columns, names::type_name))
                .transpose()?
                .unwrap_or_default(),
            columns,
            created_at: created_at
                .map(|c| names::identifier("--created-at", c))
                .transpose()?,
        })
    }

    /// The old columns' types and which must be relaxed, from the catalog.
    fn read(&self, shape: &TableShape) -> Result<OldColumns> {
        if shape.column(&self.new).is_some() {
            return Err(refuse(
                NAME,
                format!("table {} has a column {} already", shape.name, self.new),
                "choose another name in --with, or drop that column first",
            ));
        }
        carry::require_key(NAME, shape)?;
        let mut types = Vec::new();
        let mut relax = Vec::new();
        let mut taken_along = Vec::new();
        let mut blocking = Vec::new();
        for c in &self.columns {
            let col = column(shape, "--columns", c)?;
            types.push((c.clone(), col.type_name.clone()));
            if col.not_null && self.reverse.is_empty() {
                relax.push(c.clone());
            }
            let carried = carry::carry(NAME, shape, c, &self.new, false, false)?;
            for index in carried.indexes {
                match index.constraint {
                    Some(kind) => blocking.push(format!(
                        "the {} {} on {c} (the new column cannot take it over)",
                        kind.label(),
                        index.final_name
                    )),
                    None => taken_along.push(index.replaces),
                }
            }
        }
        if !blocking.is_empty() {
            return Err(refuse(
                NAME,
                format!("{}: {}", shape.name, blocking.join(", ")),
                "move the key to another column first (in a plan of its own), then generate this plan again",
            ));
        }
        Ok(OldColumns {
            types,
            relax,
            taken_along,
        })
    }
}

impl Recipe for ReplaceColumns {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone()]
    }

    fn generate(&self, plan: &str, catalog: Option<&Catalog>) -> Result<Draft> {
        let (t, new) = (&self.table, &self.new);
        let mut notes = Vec::new();
        let shape = catalog.map(|cat| table(cat, "--table", t)).transpose()?;
        let shown = self.columns.join(", ");
        let OldColumns {
            types,
            relax,
            taken_along,
        } = match shape {
            Some(shape) => self.read(shape)?,
            None => {
                if self.old_types.is_empty() {
                    return Err(Error::Usage(format!(
                        "{NAME}: give --old-types {} (the columns' types, for the contract's down section); without a database orch cannot read them",
                        self.columns
                            .iter()
                            .map(|c| format!("{c}=TYPE"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )));
                }
                notes.push(format!(
                    "generated without a database: orch did not check that the columns exist, whether they are NOT NULL{}, or what depends on them (an index, constraint, view or foreign key on {shown} would go with them); generate with a database to have them checked",
                    if self.reverse.is_empty() {
                        " (the first phase drops NOT NULL on each either way)"
                    } else {
                        ""
                    }
                ));
                let relax = match self.reverse.is_empty() {
                    true => self.columns.clone(),
                    false => Vec::new(),
                };
                OldColumns {
                    types: self.old_types.clone(),
                    relax,
                    taken_along: Vec::new(),
                }
            }
        };
        if self.reverse.is_empty() {
            notes.push(format!(
                "without --reverse, nothing fills {shown} in the rows the new version writes: the old version must no longer read those rows once the new one runs (deploy the new version everywhere at once, or give --reverse)"
            ));
        }
        if !taken_along.is_empty() {
            notes.push(format!(
                "the contract drops {} with the columns",
                taken_along.join(", ")
            ));
        }
        let recent = Recent::choose(NAME, self.created_at.as_deref(), shape)?;
        let swap = Swap {
            recipe: NAME,
            table: t.clone(),
            old: types,
            new: vec![NewColumn {
                name: new.clone(),
                type_name: self.new_type.clone(),
                final_name: None,
                carried: Carried::default(),
            }],
            up: vec![(new.clone(), self.using.clone())],
            down: self.reverse.clone(),
            relax,
            app_writes_new: true,
            recent,
            gate: Gate {
                id: format!("deploy-uses-{}", names::id_part(new)),
                title: format!("Deploy the app version that reads and writes only {t}.{new}"),
                instructions: format!(
                    "Deploy the application version that reads and writes {new} and\n\
                     never {shown} (no SELECT *, no ORM field mapped to them). {}\n\
                     Wait until no older instance is left, then confirm: the next\n\
                     phase drops {shown}.",
                    if self.reverse.is_empty() {
                        format!(
                            "The trigger computes {new} from the old version's writes,\n\
                             but nothing computes {shown} from {new}: the old version must\n\
                             not read the rows the new one writes."
                        )
                    } else {
                        "While both versions run, the trigger computes each side\n\
                         from the other, so the old version keeps working."
                            .to_string()
                    }
                ),
            },
            contract_id: format!("drop-{}", names::id_part(&self.columns.join("-"))),
            contract_title: format!("Drop {shown}"),
            description: format!(
                "Replace {t}.{shown} by one column {new} {} = {} while the application keeps writing: {new} is added, a trigger keeps it in step with {shown} while the old and the new version run, existing rows are copied, then {shown} are dropped in a guarded contract.",
                self.new_type, self.using
            ),
            notes,
        };
        Ok(swap.draft(plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::shape::ColumnShape;
    use crate::recipe::testing::{assert_checks_clean, catalog, col, index, table_with};

    const SCHEMA: &str = "CREATE TABLE posts (id serial PRIMARY KEY, url varchar(300), lat numeric, lng numeric, created_at timestamptz NOT NULL DEFAULT now());";

    fn posts() -> Catalog {
        catalog(vec![table_with(
            "posts",
            vec![
                col("url", "character varying(300)"),
                col("lat", "numeric"),
                col("lng", "numeric"),
            ],
        )])
    }

    fn posts_recipe(reverse: Option<&str>) -> ReplaceColumns {
        ReplaceColumns::new(
            "posts",
            "lat,lng",
            "loc point",
            "point(lng, lat)",
            reverse,
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn the_posts_example_has_the_posts_plans_shape() {
        let draft = posts_recipe(Some("lat=loc[1],lng=loc[0]"))
            .generate("posts-loc", Some(&posts()))
            .unwrap();
        let ids: Vec<&str> = draft.phases.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "add-loc",
                "sync-loc",
                "backfill-loc",
                "deploy-uses-loc",
                "drop-lat-lng"
            ]
        );
        assert_eq!(
            draft.migrations[0].content.up,
            "ALTER TABLE posts ADD COLUMN loc point;"
        );
        let sync = draft.phases[1].raw.as_deref().unwrap();
        assert!(
            sync.contains("down: {lat: \"loc[1]\", lng: \"loc[0]\"}"),
            "{sync}"
        );
        let backfill = draft.phases[2].backfill.as_ref().unwrap();
        assert_eq!(backfill.set, "loc = point(lng, lat)");
        assert_eq!(
            draft.migrations[1].content.up.lines().last().unwrap(),
            "ALTER TABLE posts DROP COLUMN lat, DROP COLUMN lng;"
        );
        assert!(
            draft.migrations[1]
                .content
                .down
                .ends_with("ADD COLUMN lat numeric, ADD COLUMN lng numeric;")
        );
        assert_checks_clean(&draft, "posts-loc", SCHEMA);
    }

    #[test]
    fn without_reverse_the_old_columns_not_null_is_dropped_first() {
        let mut cat = posts();
        for c in &mut cat.tables.get_mut("posts").unwrap().columns {
            if c.name == "lat" {
                *c = ColumnShape {
                    not_null: true,
                    ..col("lat", "numeric")
                };
            }
        }
        let draft = posts_recipe(None)
            .generate("posts-loc", Some(&cat))
            .unwrap();
        assert_eq!(
            draft.migrations[0].content.up,
            "ALTER TABLE posts ALTER COLUMN lat DROP NOT NULL;\nALTER TABLE posts ADD COLUMN loc point;"
        );
        let gate = &draft.phases[3].checks[0].sql;
        assert!(
            gate.contains("loc IS NOT NULL AND lat IS NULL AND lng IS NULL"),
            "{gate}"
        );
        assert!(draft.notes.iter().any(|n| n.contains("without --reverse")));
        assert_checks_clean(&draft, "posts-loc", SCHEMA);
    }

    #[test]
    fn options_and_refusals() {
        for (reverse, expected) in [
            ("lat=loc[1]", "give lng=... too"),
            ("lat=loc[1],lat=loc[0]", "given twice"),
            ("lat", "expected COLUMN=EXPR"),
            ("lat=round(loc[1], 2),url=x", "url is not one of"),
        ] {
            let err = ReplaceColumns::new(
                "posts",
                "lat,lng",
                "loc point",
                "point(lng, lat)",
                Some(reverse),
                None,
                None,
            )
            .unwrap_err();
            assert!(err.to_string().contains(expected), "{reverse}: {err}");
        }
        assert!(ReplaceColumns::new("posts", "lat,lng", "loc", "x", None, None, None).is_err());
        let mut cat = posts();
        cat.tables.get_mut("posts").unwrap().indexes.push(index(
            "posts_lat_lng_idx",
            &["lat", "lng"],
            false,
            false,
        ));
        let err = posts_recipe(None).generate("p", Some(&cat)).unwrap_err();
        assert!(err.to_string().contains("index posts_lat_lng_idx"), "{err}");
        let err = posts_recipe(None).generate("p", None).unwrap_err();
        assert!(
            err.to_string().contains("--old-types lat=TYPE,lng=TYPE"),
            "{err}"
        );
        let draft = ReplaceColumns::new(
            "posts",
            "lat,lng",
            "loc point",
            "point(lng, lat)",
            None,
            Some("lat=numeric(9,6),lng=numeric(9,6)"),
            Some("created_at"),
        )
        .unwrap()
        .generate("posts-loc", None)
        .unwrap();
        assert!(
            draft.migrations[1]
                .content
                .down
                .ends_with("ADD COLUMN lat numeric(9,6), ADD COLUMN lng numeric(9,6);")
        );
        assert_checks_clean(&draft, "posts-loc", SCHEMA);
    }
}
