//! A dbmate-style file's sections: `-- migrate:up [transaction:false]` and
//! `-- migrate:down [transaction:false]` marker lines, each starting a
//! section that runs to the next marker.

use std::path::Path;

use crate::error::Result;
use crate::migration::file::{Section, invalid};
use crate::sql_text;

/// Which section a marker line starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SectionKind {
    Up,
    Down,
}

impl SectionKind {
    fn marker(self) -> &'static str {
        match self {
            SectionKind::Up => "up",
            SectionKind::Down => "down",
        }
    }
}

/// A `-- migrate:up [transaction:false]` line, or None for other lines.
fn parse_marker(line: &str) -> Option<std::result::Result<(SectionKind, bool), String>> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("migrate:")?;
    let mut words = rest.split_whitespace();
    let kind = match words.next() {
        Some("up") => SectionKind::Up,
        Some("down") => SectionKind::Down,
        other => {
            return Some(Err(format!(
                "unknown marker \"-- migrate:{}\" (expected \"-- migrate:up\" or \"-- migrate:down\")",
                other.unwrap_or("")
            )));
        }
    };
    let mut transactional = true;
    for option in words {
        match option {
            "transaction:false" => transactional = false,
            "transaction:true" => transactional = true,
            other => {
                return Some(Err(format!(
                    "unknown option {other:?} on the migrate marker (expected transaction:false)"
                )));
            }
        }
    }
    Some(Ok((kind, transactional)))
}

/// The up section and the optional down section of the file at `path`.
pub fn parse_sections(path: &Path, text: &str) -> Result<(Section, Option<Section>)> {
    let mut up: Option<Section> = None;
    let mut down: Option<Section> = None;
    // (kind, marker line, transactional, byte offset where its SQL starts)
    let mut current: Option<(SectionKind, usize, bool, usize)> = None;
    let mut preamble_end = text.len();
    let mut offset = 0;

    let mut close = |current: Option<(SectionKind, usize, bool, usize)>,
                     end: usize|
     -> Result<()> {
        if let Some((kind, marker_line, transactional, start)) = current {
            let section = Section {
                path: path.to_path_buf(),
                sql: text[start..end].to_string(),
                marker_line,
                transactional,
                exact_columns: true,
            };
            let slot = match kind {
                SectionKind::Up => &mut up,
                SectionKind::Down => &mut down,
            };
            if let Some(first) = slot {
                return Err(invalid(
                    path,
                    marker_line,
                    format!(
                        "a second \"-- migrate:{}\" section (the first is at line {}); a file has one of each",
                        kind.marker(),
                        first.marker_line
                    ),
                ));
            }
            *slot = Some(section);
        }
        Ok(())
    };

    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_start = offset;
        offset += line.len();
        if let Some(marker) = parse_marker(line) {
            let (kind, transactional) = marker.map_err(|msg| invalid(path, index + 1, msg))?;
            if current.is_none() {
                preamble_end = line_start;
            }
            close(current.take(), line_start)?;
            current = Some((kind, index + 1, transactional, offset));
        }
    }
    close(current.take(), text.len())?;

    if let Some(statement) = sql_text::split_statements(&text[..preamble_end]).first() {
        return Err(invalid(
            path,
            sql_text::line_of_offset(text, statement.offset),
            "SQL before the first \"-- migrate:up\" marker would never run; move it into a section",
        ));
    }
    let up = up.ok_or_else(|| {
        invalid(
            path,
            1,
            "no \"-- migrate:up\" section (a migration file needs one; run `orch migrate create NAME` for a template)",
        )
    })?;
    Ok((up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(text: &str) -> (Section, Option<Section>) {
        parse_sections(Path::new("migrations/1_a.sql"), text).unwrap()
    }

    #[test]
    fn both_sections_name_the_file() {
        let (up, down) = sections("-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n");
        assert_eq!(up.path, Path::new("migrations/1_a.sql"));
        assert_eq!(down.unwrap().path, up.path);
    }

    #[test]
    fn markers_inside_dollar_quotes_are_still_markers_by_line() {
        // dbmate treats marker lines anywhere as markers; so do we, which keeps the
        // rule simple to explain.
        let (_, down) = sections("-- migrate:up\nSELECT 1;\n  -- migrate:down  \nSELECT 2;\n");
        assert_eq!(down.unwrap().marker_line, 3);
    }
}
