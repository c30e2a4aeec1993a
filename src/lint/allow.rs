//! `-- orch:allow RULE-ID: reason`: a comment on the line(s) before a
//! statement that accepts one rule's finding on it, with the reason kept
//! in the audit log and shown in the checklist.

use crate::lint::rules::Rule;

/// The comment's marker.
pub const MARKER: &str = "orch:allow";

/// One allow comment, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allow {
    /// Byte offset of the comment in the section.
    pub offset: usize,
    pub rule: Result<Rule, String>,
    pub reason: String,
}

/// The allow comments of `sql[from..to]` (the text between two
/// statements).
pub(crate) fn allows_in(sql: &str, from: usize, to: usize) -> Vec<Allow> {
    let Some(gap) = sql.get(from..to) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = from;
    for line in gap.split_inclusive('\n') {
        let offset = at + (line.len() - line.trim_start().len());
        at += line.len();
        let Some(rest) = line
            .trim()
            .strip_prefix("--")
            .map(str::trim_start)
            .and_then(|c| c.strip_prefix(MARKER))
        else {
            continue;
        };
        let (id, reason) = rest.split_once(':').unwrap_or((rest, ""));
        let id = id.trim();
        out.push(Allow {
            offset,
            rule: Rule::parse(id).ok_or_else(|| id.to_string()),
            reason: reason.trim().to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_name_a_rule_and_a_reason() {
        let sql = "SELECT 1;\n-- a note\n-- orch:allow drop-column: nothing reads it since v41\n--orch:allow nope: typo\n-- orch:allow lock-table\nALTER TABLE t DROP COLUMN c;";
        let got = allows_in(sql, 9, sql.find("ALTER").unwrap());
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].rule, Ok(Rule::DropColumn));
        assert_eq!(got[0].reason, "nothing reads it since v41");
        assert_eq!(&sql[got[0].offset..got[0].offset + 2], "--");
        assert_eq!(got[1].rule, Err("nope".to_string()));
        assert_eq!(got[2].rule, Ok(Rule::LockTable));
        assert_eq!(got[2].reason, "");
    }
}
