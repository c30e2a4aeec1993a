//! One finding of the lint, where it is, and how people and CI read it.

use std::fmt::Write;

use serde::Serialize;

use crate::lint::rules::{Rule, Severity};

/// One finding, at its file:line:column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub rule: Rule,
    pub severity: Severity,
    pub message: String,
    /// What lock the statement takes and for how long.
    pub lock: &'static str,
    /// The safe way.
    pub recipe: &'static str,
    /// The reason of the `-- orch:allow RULE-ID: reason` comment that
    /// allows it, if one does.
    pub allowed: Option<String>,
}

impl Finding {
    /// An error nobody allowed: it stops `migrate up` and `advance`.
    pub fn blocks(&self) -> bool {
        self.severity == Severity::Error && self.allowed.is_none()
    }

    /// `file:line:col: rule-id: error: message`.
    pub fn headline(&self) -> String {
        let weight = match &self.allowed {
            Some(reason) => format!("allowed ({reason})"),
            None => self.severity.name().to_string(),
        };
        format!(
            "{}:{}:{}: {}: {weight}: {}",
            self.file,
            self.line,
            self.column,
            self.rule.id(),
            self.message
        )
    }

    /// The headline, then the lock and the recipe on their own lines.
    pub fn render(&self) -> String {
        let mut out = self.headline();
        if self.rule != Rule::SyntaxError && self.rule != Rule::AllowComment {
            let _ = write!(out, "\n  lock: {}\n  fix: {}", self.lock, self.recipe);
        }
        out
    }
}

/// Findings, one after the other, for an error message or a report.
pub fn render_all<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> String {
    findings
        .into_iter()
        .map(Finding::render)
        .collect::<Vec<_>>()
        .join("\n")
}
