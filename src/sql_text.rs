//! Just enough of a PostgreSQL lexer to split a script into statements the
//! way psql does, map server error positions back to script lines, and find
//! the `:name` placeholders orch binds as parameters.
//!
//! The lexer assumes `standard_conforming_strings = on` (the default since
//! PostgreSQL 9.1): a backslash escapes a quote only in `E'...'` strings.
//! psql meta-commands (`\gset`, `\i`, ...) are not understood.

/// One statement of a script, without its terminating semicolon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement from its first token to its last one: whitespace and
    /// comments before and after it are left out, so a caller can wrap or
    /// extend the text without a trailing `--` comment swallowing the rest.
    pub text: &'a str,
    /// Byte offset of `text` in the script.
    pub offset: usize,
    /// 1-based line of the statement's first token.
    pub line: usize,
}

/// Split a script into statements at the semicolons psql would split at.
///
/// Semicolons inside strings, quoted identifiers, comments, parentheses
/// (`CREATE RULE ... DO (...; ...)`) and `BEGIN ATOMIC ... END` function
/// bodies do not split. Statements that contain nothing but whitespace and
/// comments are skipped. An unterminated string, comment or dollar quote
/// extends the last statement to the end of the script, so the server, not
/// orch, reports it.
pub fn split_statements(sql: &str) -> Vec<Statement<'_>> {
    let mut statements = Vec::new();
    let mut lines = LineCounter::default();
    let mut current = StatementInProgress::default();

    for token in Lexer::new(sql) {
        if token.kind == TokenKind::Semicolon && current.ends_at_semicolon() {
            if let Some(statement) = current.finish(sql, &mut lines) {
                statements.push(statement);
            }
            current = StatementInProgress::default();
            continue;
        }
        current.push(sql, token);
    }
    if let Some(statement) = current.finish(sql, &mut lines) {
        statements.push(statement);
    }
    statements
}

/// True when `sql` ends where a statement may start: every string, dollar
/// quote, comment and parenthesis is closed and its last statement (if any)
/// ends with `;`. Other tools send a script piece by piece (goose a
/// statement at a time, node-pg-migrate each `pgm.sql` text as a query);
/// orch sends their pieces as one script, which means the same only when
/// each piece ends this way.
pub fn ends_at_statement_boundary(sql: &str) -> bool {
    const PROBE: &str = "SELECT 'orch: probe'";
    let probed = format!("{sql}\n{PROBE}");
    split_statements(&probed)
        .last()
        .is_some_and(|last| last.text == PROBE)
}

/// 1-based line number of a byte offset, counting `\n` (so `\r\n` too);
/// offsets past the end count as the last line.
pub fn line_of_offset(sql: &str, byte_offset: usize) -> usize {
    let end = byte_offset.min(sql.len());
    1 + count_newlines(&sql.as_bytes()[..end])
}

/// Byte offset of the character at a 1-based character position, as found
/// in PostgreSQL error positions (which are relative to the statement text
/// that was sent, not to the whole script).
///
/// Position `chars + 1` maps to `sql.len()`, because the server points just
/// past the end for "syntax error at end of input". Position 0 and positions
/// further out give `None`.
pub fn char_to_byte_offset(sql: &str, char_pos_1based: usize) -> Option<usize> {
    let index = char_pos_1based.checked_sub(1)?;
    sql.char_indices()
        .map(|(offset, _)| offset)
        .chain(std::iter::once(sql.len()))
        .nth(index)
}

/// A `:name` placeholder found outside strings, quoted identifiers and comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The name without its colon.
    pub name: String,
    /// Byte offset of the colon.
    pub start: usize,
    /// Byte offset just past the name.
    pub end: usize,
}

/// Every `:name` placeholder of `sql`, in order.
///
/// Like psql variables, a placeholder may follow any token (`arr[lo:hi]`
/// binds `hi`), but `::` casts, `:=`, psql's `:'x'` and `:"x"`, and a colon
/// followed by a digit (`arr[1:2]`) are not placeholders. A name runs over
/// `[A-Za-z0-9_]`; one that runs on into non-ASCII letters or `$` is not
/// taken as a placeholder at all, rather than binding half a word.
pub fn placeholders(sql: &str) -> Vec<Placeholder> {
    Lexer::new(sql)
        .filter(|token| token.kind == TokenKind::Placeholder)
        .map(|token| Placeholder {
            name: sql[token.start + 1..token.end].to_string(),
            start: token.start,
            end: token.end,
        })
        .collect()
}

/// Replace each distinct `:name` with `$1`, `$2`, ... in order of first
/// appearance; returns the rewritten SQL and the names in parameter order.
///
/// Existing `$n` parameters in `sql` are left alone, so a script should use
/// either placeholders or positional parameters, not both.
/// A placeholder glued to a preceding word or number (`lo:hi`) gets a space
/// before its `$n`, since `$` continues an identifier.
pub fn bind_placeholders(sql: &str) -> (String, Vec<String>) {
    let mut rewritten = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut copied_up_to = 0;
    for placeholder in placeholders(sql) {
        let number = match names.iter().position(|name| *name == placeholder.name) {
            Some(index) => index + 1,
            None => {
                names.push(placeholder.name);
                names.len()
            }
        };
        rewritten.push_str(&sql[copied_up_to..placeholder.start]);
        // `lo:hi` must not become the identifier `lo$2`.
        if rewritten.bytes().last().is_some_and(is_ident_cont) {
            rewritten.push(' ');
        }
        rewritten.push('$');
        rewritten.push_str(&number.to_string());
        copied_up_to = placeholder.end;
    }
    rewritten.push_str(&sql[copied_up_to..]);
    (rewritten, names)
}

/// The statement being accumulated by `split_statements`.
#[derive(Default)]
struct StatementInProgress {
    /// Byte range from the first to the last significant token so far.
    span: Option<(usize, usize)>,
    paren_depth: usize,
    body: AtomicBodyTracker,
}

impl StatementInProgress {
    /// psql sends a statement at `;` only outside parentheses and outside a
    /// `BEGIN ATOMIC` body.
    fn ends_at_semicolon(&self) -> bool {
        self.paren_depth == 0 && self.body.depth == 0
    }

    fn push(&mut self, sql: &str, token: Token) {
        if !token.is_significant() {
            return;
        }
        self.span = Some(match self.span {
            None => (token.start, token.end),
            Some((start, _)) => (start, token.end),
        });
        match token.kind {
            TokenKind::OpenParen => self.paren_depth += 1,
            // A stray `)` must not make later `(` look balanced.
            TokenKind::CloseParen => self.paren_depth = self.paren_depth.saturating_sub(1),
            _ => {}
        }
        self.body
            .observe(&sql[token.start..token.end], token.kind, self.paren_depth);
    }

    fn finish<'a>(&self, sql: &'a str, lines: &mut LineCounter) -> Option<Statement<'a>> {
        let (start, end) = self.span?;
        Some(Statement {
            text: &sql[start..end],
            offset: start,
            line: lines.line_at(sql, start),
        })
    }
}

/// Tracks `BEGIN ATOMIC ... END` bodies of SQL-standard functions, whose
/// semicolons belong to the `CREATE FUNCTION` statement.
///
/// This follows psql's heuristic: only in a statement that starts with
/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, and only outside parentheses,
/// `BEGIN` opens a block, `CASE` opens one when already inside a block
/// (because it, too, closes with `END`), and `END` closes one. Unlike psql we
/// require `ATOMIC` right after `BEGIN`, because `begin` is an unreserved
/// word and may name the function or its language.
#[derive(Default)]
struct AtomicBodyTracker {
    header: RoutineHeader,
    /// The previous significant token was the word `BEGIN`.
    after_begin: bool,
    depth: usize,
}

/// How far the statement's leading words match `CREATE [OR REPLACE]
/// FUNCTION|PROCEDURE`.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum RoutineHeader {
    #[default]
    Start,
    Create,
    CreateOr,
    CreateOrReplace,
    Routine,
    NotRoutine,
}

impl AtomicBodyTracker {
    fn observe(&mut self, text: &str, kind: TokenKind, paren_depth: usize) {
        let after_begin = std::mem::take(&mut self.after_begin);
        if kind != TokenKind::Word {
            return;
        }
        let word = text.to_ascii_lowercase();
        self.header = match (self.header, word.as_str()) {
            (RoutineHeader::Start, "create") => RoutineHeader::Create,
            (RoutineHeader::Create, "or") => RoutineHeader::CreateOr,
            (RoutineHeader::CreateOr, "replace") => RoutineHeader::CreateOrReplace,
            (RoutineHeader::Create | RoutineHeader::CreateOrReplace, "function" | "procedure") => {
                RoutineHeader::Routine
            }
            (RoutineHeader::Routine, _) => RoutineHeader::Routine,
            _ => RoutineHeader::NotRoutine,
        };
        if self.header != RoutineHeader::Routine || paren_depth > 0 {
            return;
        }
        match word.as_str() {
            "begin" => self.after_begin = true,
            "atomic" if after_begin => self.depth += 1,
            "case" if self.depth > 0 => self.depth += 1,
            "end" => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// Computes line numbers for increasing offsets in one pass over the text.
#[derive(Default)]
struct LineCounter {
    counted_up_to: usize,
    newlines: usize,
}

impl LineCounter {
    fn line_at(&mut self, sql: &str, offset: usize) -> usize {
        if offset < self.counted_up_to {
            return line_of_offset(sql, offset);
        }
        self.newlines += count_newlines(&sql.as_bytes()[self.counted_up_to..offset]);
        self.counted_up_to = offset;
        self.newlines + 1
    }
}

fn count_newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Whitespace,
    Comment,
    /// A comment whose end was never found; it is kept in the statement so
    /// the server reports it instead of orch silently dropping the rest.
    UnterminatedComment,
    /// Any string constant, dollar-quoted string or quoted identifier: opaque.
    Quoted,
    /// An identifier or keyword.
    Word,
    Placeholder,
    Semicolon,
    OpenParen,
    CloseParen,
    /// Numbers, operators, `$1` and other punctuation.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    kind: TokenKind,
    start: usize,
    end: usize,
}

impl Token {
    fn is_significant(&self) -> bool {
        !matches!(self.kind, TokenKind::Whitespace | TokenKind::Comment)
    }
}

/// Splits SQL into tokens. It works on bytes: every delimiter it looks for is
/// ASCII and every byte of a multi-byte UTF-8 character is >= 0x80, so token
/// boundaries always fall on character boundaries.
struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(sql: &'a str) -> Self {
        Lexer {
            bytes: sql.as_bytes(),
            pos: 0,
        }
    }

    fn at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    /// Kind and length of the token starting at `self.pos`.
    fn next_token(&self) -> (TokenKind, usize) {
        let rest = &self.bytes[self.pos..];
        let first = rest[0];
        let second = self.at(1);
        match first {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => (
                TokenKind::Whitespace,
                rest.iter().take_while(|&&b| is_space(b)).count(),
            ),
            b'-' if second == Some(b'-') => (
                TokenKind::Comment,
                // Like the server, end the comment at a bare `\r` too.
                rest.iter()
                    .position(|&b| b == b'\n' || b == b'\r')
                    .unwrap_or(rest.len()),
            ),
            b'/' if second == Some(b'*') => block_comment(rest),
            b'\'' => (TokenKind::Quoted, quoted(rest, 0, b'\'', false)),
            b'"' => (TokenKind::Quoted, quoted(rest, 0, b'"', false)),
            b'e' | b'E' if second == Some(b'\'') => {
                (TokenKind::Quoted, quoted(rest, 1, b'\'', true))
            }
            // Bit strings, hex strings and national strings have no escapes
            // beyond the doubled quote.
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if second == Some(b'\'') => {
                (TokenKind::Quoted, quoted(rest, 1, b'\'', false))
            }
            b'u' | b'U' if second == Some(b'&') && matches!(self.at(2), Some(b'\'' | b'"')) => {
                (TokenKind::Quoted, quoted(rest, 2, rest[2], false))
            }
            b'$' => dollar(rest),
            b':' => colon(rest),
            b';' => (TokenKind::Semicolon, 1),
            b'(' => (TokenKind::OpenParen, 1),
            b')' => (TokenKind::CloseParen, 1),
            b if is_ident_start(b) => (
                TokenKind::Word,
                rest.iter().take_while(|&&b| is_ident_cont(b)).count(),
            ),
            // Numbers swallow trailing letters so `1e'x'` is not an E-string.
            b'0'..=b'9' => (
                TokenKind::Other,
                rest.iter()
                    .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                    .count(),
            ),
            _ => (TokenKind::Other, 1),
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let (kind, len) = self.next_token();
        // Every branch of `next_token` consumes at least one byte; the guard makes
        // an endless loop impossible even if one day one does not.
        let len = len.max(1);
        let token = Token {
            kind,
            start: self.pos,
            end: self.pos + len,
        };
        self.pos += len;
        Some(token)
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// PostgreSQL lets any non-ASCII character start an identifier.
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// A dollar-quote tag character: like an identifier, but without `$`.
fn is_tag_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// Length of a quoted token whose opening quote is at `open`; a doubled quote
/// stands for itself, and with `backslash_escapes` a backslash protects the
/// next byte. Unterminated: the rest of the input.
fn quoted(rest: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = open + 1;
    while i < rest.len() {
        match rest[i] {
            b'\\' if backslash_escapes => i += 2,
            b if b == quote => {
                if rest.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    rest.len()
}

/// Block comments nest in PostgreSQL, unlike in C.
fn block_comment(rest: &[u8]) -> (TokenKind, usize) {
    let mut depth = 1;
    let mut i = 2;
    while i < rest.len() {
        if rest[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if rest[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return (TokenKind::Comment, i);
            }
        } else {
            i += 1;
        }
    }
    (TokenKind::UnterminatedComment, rest.len())
}

/// `$1` (a parameter), `$tag$...$tag$` or `$$...$$` (a dollar-quoted string),
/// or a lone `$`.
fn dollar(rest: &[u8]) -> (TokenKind, usize) {
    match rest.get(1) {
        Some(b) if b.is_ascii_digit() => {
            let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            return (TokenKind::Other, 1 + digits);
        }
        Some(&b) if b == b'$' || is_ident_start(b) => {}
        _ => return (TokenKind::Other, 1),
    }
    let tag_len = rest[1..].iter().take_while(|&&b| is_tag_cont(b)).count();
    if rest.get(1 + tag_len) != Some(&b'$') {
        // `$abc` without a closing `$` is not a delimiter; PostgreSQL then
        // lexes the `$` alone.
        return (TokenKind::Other, 1);
    }
    let delimiter = &rest[..tag_len + 2];
    let body = &rest[delimiter.len()..];
    // A plain search is exact here: a body may contain other `$x$` tags, and
    // the first occurrence of our delimiter always closes the string.
    let len = match find(body, delimiter) {
        Some(at) => delimiter.len() + at + delimiter.len(),
        None => rest.len(),
    };
    (TokenKind::Quoted, len)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// `::`, a `:name` placeholder, or a lone `:` (which covers `:=`).
fn colon(rest: &[u8]) -> (TokenKind, usize) {
    match rest.get(1) {
        // A cast: the type name after it is not a placeholder.
        Some(b':') => (TokenKind::Other, 2),
        Some(&b) if b.is_ascii_alphabetic() || b == b'_' => {
            let name_len = rest[1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            match rest.get(1 + name_len) {
                Some(&b) if is_ident_cont(b) => (TokenKind::Other, 1),
                _ => (TokenKind::Placeholder, 1 + name_len),
            }
        }
        _ => (TokenKind::Other, 1),
    }
}

/// What an SQL fragment of a plan is: orch puts it inside its own
/// statement, so it must stay in its place there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// An expression, e.g. a backfill's `where` (orch wraps it in
    /// parentheses and ANDs it with the batch's range).
    Expression,
    /// The assignments after `SET`, e.g. a backfill's `set`.
    Assignments,
}

/// Why `fragment` could escape its place in orch's statement, if it could:
/// a `)` closing a parenthesis it did not open (`true) OR (true` would turn
/// a batch's condition into a whole-table one), a parenthesis left open, a
/// comment that never ends, a `;`, or (in assignments) a top-level `FROM`,
/// `WHERE` or `RETURNING` that would change which rows are updated.
pub fn fragment_problem(fragment: &str, kind: Fragment) -> Option<String> {
    let mut depth = 0i32;
    for token in Lexer::new(fragment) {
        let text = &fragment[token.start..token.end];
        match token.kind {
            TokenKind::OpenParen => depth += 1,
            TokenKind::CloseParen => {
                depth -= 1;
                if depth < 0 {
                    return Some(
                        "closes a parenthesis it did not open, so it would escape its place in orch's statement"
                            .to_string(),
                    );
                }
            }
            TokenKind::UnterminatedComment => {
                return Some("has a comment that never ends (/* without */)".to_string());
            }
            TokenKind::Semicolon => return Some("is an SQL fragment, without ';'".to_string()),
            TokenKind::Word if depth == 0 && kind == Fragment::Assignments => {
                let word = text.to_ascii_lowercase();
                if ["from", "where", "returning"].contains(&word.as_str()) {
                    return Some(format!(
                        "is the list of assignments after SET (e.g. `loc = point(lng, lat)`); a top-level {} would change which rows a batch updates",
                        word.to_uppercase()
                    ));
                }
            }
            _ => {}
        }
    }
    (depth > 0).then(|| "leaves a parenthesis open".to_string())
}

/// The significant tokens of a statement, for recognising its shape:
/// comments and whitespace left out, words lower-cased, quoted identifiers
/// unquoted (as written), other tokens as they are.
pub fn tokens(statement: &str) -> Vec<String> {
    Lexer::new(statement)
        .filter(Token::is_significant)
        .map(|t| {
            let text = &statement[t.start..t.end];
            match t.kind {
                TokenKind::Word => text.to_ascii_lowercase(),
                TokenKind::Quoted
                    if text.starts_with('"') && text.ends_with('"') && text.len() > 1 =>
                {
                    text[1..text.len() - 1].replace("\"\"", "\"")
                }
                _ => text.to_string(),
            }
        })
        .collect()
}

/// The first `n` words of a statement, lower-cased, for classification.
pub fn leading_words(statement: &str, n: usize) -> Vec<String> {
    statement
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        split_statements(sql).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn statement_boundaries_at_the_end() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("-- only a comment", true),
            ("SELECT 1;", true),
            ("SELECT 1; -- done", true),
            ("SELECT 1;\n/* done */\n", true),
            (
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;",
                true,
            ),
            ("SELECT 1", false),
            ("SELECT 1 -- x;", false),
            ("SELECT 'a;", false),
            (
                "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1;",
                false,
            ),
            ("SELECT (1;", false),
            ("SELECT 1; /* open", false),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;",
                false,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(ends_at_statement_boundary(sql), *expected, "{sql:?}");
        }
    }

    #[test]
    fn splits_like_psql() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("empty input", "", &[]),
            ("only whitespace", " \n\t\r\n ", &[]),
            ("only a line comment", "-- nothing here\n", &[]),
            (
                "line comment ends at a bare carriage return",
                "SELECT 1 -- x;\rSELECT 2;",
                &["SELECT 1 -- x;\rSELECT 2"],
            ),
            (
                "line comment with CRLF",
                "SELECT 1; -- x;\r\nSELECT 2;\r\n",
                &["SELECT 1", "SELECT 2"],
            ),
            ("only comments", "/* a */ -- b\n/* c\n d */\n", &[]),
            ("stray semicolons", ";;  ;\n;", &[]),
            ("one statement", "SELECT 1;", &["SELECT 1"]),
            (
                "no final semicolon",
                "SELECT 1;\nSELECT 2",
                &["SELECT 1", "SELECT 2"],
            ),
            (
                "trailing whitespace trimmed",
                "SELECT 1 \n\t;",
                &["SELECT 1"],
            ),
            (
                "leading comments skipped",
                "-- why\n/* how */ SELECT 1;",
                &["SELECT 1"],
            ),
            (
                "trailing comments left out",
                "SELECT 1 -- one\n;SELECT 2 /* two */",
                &["SELECT 1", "SELECT 2"],
            ),
            (
                "comment between tokens kept",
                "SELECT /* ; */ 1;",
                &["SELECT /* ; */ 1"],
            ),
            (
                "semicolon in string",
                "SELECT ';';SELECT 2",
                &["SELECT ';'", "SELECT 2"],
            ),
            (
                "doubled quote in string",
                "SELECT 'it''s; fine';SELECT 2",
                &["SELECT 'it''s; fine'", "SELECT 2"],
            ),
            (
                "backslash is literal in a standard string",
                r"SELECT 'a\';SELECT 2",
                &[r"SELECT 'a\'", "SELECT 2"],
            ),
            (
                "E string backslash-quote",
                r"SELECT E'it\'s; \\';SELECT 2",
                &[r"SELECT E'it\'s; \\'", "SELECT 2"],
            ),
            (
                "lowercase e string",
                r"SELECT e'\';';SELECT 2",
                &[r"SELECT e'\';'", "SELECT 2"],
            ),
            (
                "E string doubled quote",
                r"SELECT E'a'';b';SELECT 2",
                &[r"SELECT E'a'';b'", "SELECT 2"],
            ),
            (
                "identifier ending in e is not an E string",
                r"SELECT some'\';SELECT 2",
                &[r"SELECT some'\'", "SELECT 2"],
            ),
            (
                "U& string",
                r"SELECT U&'d\0061t;a';SELECT 2",
                &[r"SELECT U&'d\0061t;a'", "SELECT 2"],
            ),
            (
                "U& identifier",
                r#"SELECT 1 AS U&"a;b";SELECT 2"#,
                &[r#"SELECT 1 AS U&"a;b""#, "SELECT 2"],
            ),
            (
                "bit and hex strings",
                "SELECT B'10;1', x'1;F', N'na;t';SELECT 2",
                &["SELECT B'10;1', x'1;F', N'na;t'", "SELECT 2"],
            ),
            (
                "quoted identifier",
                r#"SELECT 1 AS "a;""b";SELECT 2"#,
                &[r#"SELECT 1 AS "a;""b""#, "SELECT 2"],
            ),
            (
                "line comment hides semicolon",
                "SELECT 1 -- x; y\n+ 1;SELECT 2",
                &["SELECT 1 -- x; y\n+ 1", "SELECT 2"],
            ),
            (
                "nested block comment",
                "SELECT /* a /* b; */ c; */ 1;SELECT 2",
                &["SELECT /* a /* b; */ c; */ 1", "SELECT 2"],
            ),
            (
                "dollar quote",
                "SELECT $$a;b$$;SELECT 2",
                &["SELECT $$a;b$$", "SELECT 2"],
            ),
            (
                "tagged dollar quote containing $$ and other tags",
                "SELECT $fn$ $$;$$ $x$;$x$ $f$; $fn$;SELECT 2",
                &["SELECT $fn$ $$;$$ $x$;$x$ $f$; $fn$", "SELECT 2"],
            ),
            (
                "dollar quote tag prefix is not the delimiter",
                "SELECT $a$ $ab$; $a$;SELECT 2",
                &["SELECT $a$ $ab$; $a$", "SELECT 2"],
            ),
            (
                "positional parameter is not a dollar quote",
                "SELECT $1;SELECT $2",
                &["SELECT $1", "SELECT $2"],
            ),
            (
                "dollar inside identifier is not a dollar quote",
                "SELECT a$b$c;SELECT 2",
                &["SELECT a$b$c", "SELECT 2"],
            ),
            (
                "lone dollar sign",
                "SELECT $ ;SELECT $abc ;SELECT 2",
                &["SELECT $", "SELECT $abc", "SELECT 2"],
            ),
            (
                "parentheses hold semicolons like psql",
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));SELECT 2",
                &[
                    "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))",
                    "SELECT 2",
                ],
            ),
            (
                "stray close paren does not unbalance",
                "SELECT 1);SELECT 2",
                &["SELECT 1)", "SELECT 2"],
            ),
            (
                "transaction BEGIN splits",
                "BEGIN;\nUPDATE t SET a = 1;\nEND;\nBEGIN ATOMIC;",
                &["BEGIN", "UPDATE t SET a = 1", "END", "BEGIN ATOMIC"],
            ),
            (
                "BEGIN ATOMIC body",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;SELECT 3",
                &[
                    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
                    "SELECT 3",
                ],
            ),
            (
                "BEGIN ATOMIC with CASE ... END inside",
                "create or replace procedure p(x int) begin atomic insert into t values (1); select case when true then 1 else 2 end; update t set a = case x when 1 then 2 end; end; select 3",
                &[
                    "create or replace procedure p(x int) begin atomic insert into t values (1); select case when true then 1 else 2 end; update t set a = case x when 1 then 2 end; end",
                    "select 3",
                ],
            ),
            (
                "CASE in parentheses inside BEGIN ATOMIC",
                "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END; SELECT 3",
                &[
                    "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END",
                    "SELECT 3",
                ],
            ),
            (
                "function named begin",
                "CREATE FUNCTION begin() RETURNS int RETURN 1; SELECT 2",
                &["CREATE FUNCTION begin() RETURNS int RETURN 1", "SELECT 2"],
            ),
            (
                "RETURN CASE ... END outside a body",
                "CREATE FUNCTION f() RETURNS int RETURN CASE WHEN true THEN 1 END; SELECT 2",
                &[
                    "CREATE FUNCTION f() RETURNS int RETURN CASE WHEN true THEN 1 END",
                    "SELECT 2",
                ],
            ),
            (
                "quoted BEGIN does not open a body",
                r#"CREATE FUNCTION f() RETURNS int "begin" atomic; SELECT 2"#,
                &[
                    r#"CREATE FUNCTION f() RETURNS int "begin" atomic"#,
                    "SELECT 2",
                ],
            ),
            (
                "BEGIN ATOMIC outside CREATE FUNCTION",
                "CREATE TABLE t (a int); BEGIN ATOMIC; SELECT 1",
                &["CREATE TABLE t (a int)", "BEGIN ATOMIC", "SELECT 1"],
            ),
            (
                "plpgsql function with $$",
                "CREATE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n  NEW.a := 1;\n  RETURN NEW;\nEND\n$$ LANGUAGE plpgsql;\nSELECT 2;",
                &[
                    "CREATE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n  NEW.a := 1;\n  RETURN NEW;\nEND\n$$ LANGUAGE plpgsql",
                    "SELECT 2",
                ],
            ),
            (
                "plpgsql function with $fn$ containing $$",
                "CREATE OR REPLACE FUNCTION f() RETURNS text AS $fn$\nBEGIN\n  RETURN $$x;y$$;\nEND;\n$fn$ LANGUAGE plpgsql;\nSELECT 2;",
                &[
                    "CREATE OR REPLACE FUNCTION f() RETURNS text AS $fn$\nBEGIN\n  RETURN $$x;y$$;\nEND;\n$fn$ LANGUAGE plpgsql",
                    "SELECT 2",
                ],
            ),
            (
                "CREATE INDEX CONCURRENTLY script",
                "SET lock_timeout = '5s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx\n    ON users (lower(email)) WHERE deleted_at IS NULL;\n-- then validate\nALTER TABLE users VALIDATE CONSTRAINT users_email_check;\n",
                &[
                    "SET lock_timeout = '5s'",
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx\n    ON users (lower(email)) WHERE deleted_at IS NULL",
                    "ALTER TABLE users VALIDATE CONSTRAINT users_email_check",
                ],
            ),
            (
                "multi-byte characters",
                "SELECT 'é;ü' AS \"naïve;\", ünïcode$x FROM tàble;SELECT '日本';",
                &[
                    "SELECT 'é;ü' AS \"naïve;\", ünïcode$x FROM tàble",
                    "SELECT '日本'",
                ],
            ),
            (
                "operator ending before a comment",
                "SELECT 2 */* ; */ 3;SELECT 4",
                &["SELECT 2 */* ; */ 3", "SELECT 4"],
            ),
        ];
        for (name, sql, expected) in cases {
            assert_eq!(&texts(sql), expected, "case {name:?}");
        }
    }

    #[test]
    fn unterminated_constructs_extend_to_the_end() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "string",
                "SELECT 1; SELECT 'abc; SELECT 2;  ",
                &["SELECT 1", "SELECT 'abc; SELECT 2;  "],
            ),
            (
                "E string ending in backslash",
                "SELECT 1; SELECT E'\\",
                &["SELECT 1", "SELECT E'\\"],
            ),
            ("quoted identifier", "SELECT \"x; y", &["SELECT \"x; y"]),
            (
                "dollar quote",
                "SELECT 1; DO $$ BEGIN; ",
                &["SELECT 1", "DO $$ BEGIN; "],
            ),
            ("tagged dollar quote", "DO $a$ x; $b$", &["DO $a$ x; $b$"]),
            (
                "block comment",
                "SELECT 1; SELECT 2 /* x; y",
                &["SELECT 1", "SELECT 2 /* x; y"],
            ),
            (
                "nested block comment",
                "SELECT 1 /* /* */ ; SELECT 2",
                &["SELECT 1 /* /* */ ; SELECT 2"],
            ),
            (
                "comment alone",
                "SELECT 1; /* never closed; \n",
                &["SELECT 1", "/* never closed; \n"],
            ),
            (
                "line comment at the end",
                "SELECT 1 -- no newline",
                &["SELECT 1"],
            ),
            (
                "BEGIN ATOMIC without END",
                "CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; SELECT 2;",
                &["CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; SELECT 2;"],
            ),
            (
                "open parenthesis",
                "SELECT (1; SELECT 2",
                &["SELECT (1; SELECT 2"],
            ),
        ];
        for (name, sql, expected) in cases {
            assert_eq!(&texts(sql), expected, "case {name:?}");
        }
    }

    #[test]
    fn offsets_and_lines() {
        let sql = "/* header\n   spanning\n   lines */\nSELECT 1;\n\nCREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND\n$$ LANGUAGE plpgsql;\n  -- note\n  SELECT 'é'; SELECT\n2";
        let statements = split_statements(sql);
        let got: Vec<(usize, &str)> = statements.iter().map(|s| (s.line, s.text)).collect();
        assert_eq!(
            got,
            vec![
                (4, "SELECT 1"),
                (
                    6,
                    "CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND\n$$ LANGUAGE plpgsql"
                ),
                (12, "SELECT 'é'"),
                (12, "SELECT\n2"),
            ]
        );
        for statement in &statements {
            assert_eq!(
                &sql[statement.offset..statement.offset + statement.text.len()],
                statement.text
            );
            assert_eq!(line_of_offset(sql, statement.offset), statement.line);
        }
        assert_eq!(statements[0].offset, sql.find("SELECT 1").unwrap());
        assert_eq!(statements[3].offset, sql.rfind("SELECT").unwrap());
    }

    #[test]
    fn line_of_offset_cases() {
        let sql = "a\nbc\r\n\nd";
        let cases = [
            (0, 1),
            (1, 1),
            (2, 2),
            (4, 2),
            (5, 2),
            (6, 3),
            (7, 4),
            (8, 4),
            (100, 4),
        ];
        for (offset, line) in cases {
            assert_eq!(line_of_offset(sql, offset), line, "offset {offset}");
        }
        assert_eq!(line_of_offset("", 0), 1);
    }

    #[test]
    fn char_to_byte_offset_cases() {
        let sql = "aé日b";
        let cases = [
            (0, None),
            (1, Some(0)),
            (2, Some(1)),
            (3, Some(3)),
            (4, Some(6)),
            (5, Some(7)),
            (6, None),
        ];
        for (position, offset) in cases {
            assert_eq!(
                char_to_byte_offset(sql, position),
                offset,
                "position {position}"
            );
        }
        assert_eq!(char_to_byte_offset("", 1), Some(0));
        assert_eq!(char_to_byte_offset("", 2), None);
    }

    #[test]
    fn finds_placeholders() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "simple",
                "SELECT :a, :b_2 FROM t WHERE id = :_id",
                &["a", "b_2", "_id"],
            ),
            ("repeated", "SELECT :a + :a", &["a", "a"]),
            ("cast", "SELECT x::text, :v::int", &["v"]),
            ("assignment", "x := 1", &[]),
            ("psql quoted variables", "SELECT :'x', :\"y\"", &[]),
            ("array slice with digits", "SELECT arr[1:2], arr[:3]", &[]),
            (
                "array slice with name",
                "SELECT arr[:lo], arr[lo:hi]",
                &["lo", "hi"],
            ),
            (
                "in string",
                "SELECT ':a', E'\\':b', $$ :c $$, $t$:d$t$",
                &[],
            ),
            ("in identifier", "SELECT 1 AS \":a\"", &[]),
            ("in comments", "SELECT 1 -- :a\n/* :b /* :c */ :d */", &[]),
            ("lone colon", "SELECT : , :", &[]),
            ("runs into non-ASCII", "SELECT :naïve, :ok", &["ok"]),
            ("runs into dollar", "SELECT :a$b", &[]),
            (
                "after other tokens",
                "WHERE id>:lo AND(id<=:hi)",
                &["lo", "hi"],
            ),
            ("triple colon", "SELECT x:::y", &["y"]),
        ];
        for (name, sql, expected) in cases {
            let found = placeholders(sql);
            let names: Vec<&str> = found.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(&names, expected, "case {name:?}");
            for placeholder in &found {
                assert_eq!(
                    &sql[placeholder.start..placeholder.end],
                    format!(":{}", placeholder.name)
                );
            }
        }
    }

    #[test]
    fn placeholder_byte_ranges_with_utf8() {
        let sql = "SELECT 'é', :a";
        assert_eq!(
            placeholders(sql),
            vec![Placeholder {
                name: "a".into(),
                start: 13,
                end: 15
            }]
        );
    }

    #[test]
    fn binds_placeholders() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            ("none", "SELECT 1", "SELECT 1", &[]),
            (
                "distinct names in order of first appearance",
                "UPDATE t SET b = :val WHERE id BETWEEN :lo AND :hi AND b <> :val",
                "UPDATE t SET b = $1 WHERE id BETWEEN $2 AND $3 AND b <> $1",
                &["val", "lo", "hi"],
            ),
            (
                "leaves strings, casts and comments alone",
                "SELECT ':x', :x::int /* :y */, 'é' || :y",
                "SELECT ':x', $1::int /* :y */, 'é' || $2",
                &["x", "y"],
            ),
            ("adjacent", ":a:b", "$1 $2", &["a", "b"]),
            (
                "glued to a word",
                "SELECT arr[lo:hi], arr[:lo], 1:lo",
                "SELECT arr[lo $1], arr[$2], 1 $2",
                &["hi", "lo"],
            ),
        ];
        for (name, sql, rewritten, names) in cases {
            let (got, got_names) = bind_placeholders(sql);
            assert_eq!(got, *rewritten, "case {name:?}");
            assert_eq!(&got_names, names, "case {name:?}");
        }
    }

    /// Statements whose text must come back unchanged from splitting, each a
    /// trap for a naive splitter.
    const FRAGMENTS: &[&str] = &[
        "SELECT 1",
        "SELECT ';' AS \"x;y\"",
        "SELECT E'\\';' || 'a''b'",
        "SELECT $$;$$, $q$ $$ ; $q$",
        "SELECT /* ; /* ; */ */ 2",
        "SELECT 1 -- ;\n+ 2",
        "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END",
        "CREATE INDEX CONCURRENTLY i ON t (a)",
        "BEGIN",
        "COMMIT",
        "SELECT 'é;日' AS ünï$x",
        "UPDATE t SET a = :a WHERE id BETWEEN :lo AND :hi",
        "SELECT arr[1:2]::int[]",
        "DO $do$ BEGIN PERFORM 1; END $do$",
        "SELECT B'1;0', X'F;F', U&'\\0041;'",
    ];

    /// Whitespace and comments that may sit between statements.
    const GAPS: &[&str] = &[
        "",
        " ",
        "\n",
        "\n\n  ",
        "-- c;\n",
        "/* ; */",
        " /* a\n;b */ \n",
        "\t;\n",
    ];

    #[test]
    fn property_split_returns_every_fragment_at_its_offset() {
        let mut rng = fastrand::Rng::with_seed(0x0bc4);
        for _ in 0..500 {
            let count = rng.usize(0..8);
            let mut sql = String::new();
            let mut expected = Vec::new();
            for _ in 0..count {
                sql.push_str(GAPS[rng.usize(..GAPS.len())]);
                let fragment = FRAGMENTS[rng.usize(..FRAGMENTS.len())];
                expected.push((sql.len(), fragment));
                sql.push_str(fragment);
                sql.push_str(GAPS[rng.usize(..GAPS.len())]);
                sql.push(';');
            }
            if rng.bool() {
                sql.push_str(GAPS[rng.usize(..GAPS.len())]);
            }
            let statements = split_statements(&sql);
            let got: Vec<(usize, &str)> = statements.iter().map(|s| (s.offset, s.text)).collect();
            assert_eq!(got, expected, "script {sql:?}");
            for statement in &statements {
                assert_eq!(
                    &sql[statement.offset..statement.offset + statement.text.len()],
                    statement.text
                );
                assert_eq!(statement.line, line_of_offset(&sql, statement.offset));
            }

            // Re-joining the statements splits back into the same texts.
            let rejoined = statements
                .iter()
                .map(|s| s.text)
                .collect::<Vec<_>>()
                .join(";");
            assert_eq!(texts(&rejoined), texts(&sql), "rejoined {rejoined:?}");
        }
    }

    #[test]
    fn never_panics_on_truncated_input() {
        // Cutting a script at every character boundary produces every kind
        // of unterminated construct; each must lex to the end without a panic.
        let sql = FRAGMENTS.join(";\n");
        for (cut, _) in sql.char_indices() {
            let prefix = &sql[..cut];
            for statement in split_statements(prefix) {
                assert_eq!(
                    &prefix[statement.offset..statement.offset + statement.text.len()],
                    statement.text
                );
            }
            let _ = bind_placeholders(prefix);
        }
    }

    #[test]
    fn leading_words_are_lower_case_and_split_at_opening_parentheses() {
        assert_eq!(
            leading_words("CREATE INDEX(a) x;", 4),
            ["create", "index", "a)", "x"]
        );
    }

    #[test]
    fn tokens_skip_comments_and_fold_case() {
        assert_eq!(
            tokens("ALTER TABLE \"Posts\" -- c\n DROP COLUMN lat, drop lng"),
            [
                "alter", "table", "Posts", "drop", "column", "lat", ",", "drop", "lng"
            ]
        );
    }

    #[test]
    fn fragments_stay_in_their_place() {
        use Fragment::{Assignments, Expression};
        let cases: &[(&str, Fragment, Option<&str>)] = &[
            ("loc IS NULL", Expression, None),
            ("a IN (1, 2) AND (b OR c)", Expression, None),
            ("note = ')' -- why", Expression, None),
            (
                "true) OR (true",
                Expression,
                Some("closes a parenthesis it did not open"),
            ),
            ("(a", Expression, Some("leaves a parenthesis open")),
            ("a /* open", Expression, Some("a comment that never ends")),
            ("a; DELETE FROM t", Expression, Some("without ';'")),
            ("loc = point(lng, lat)", Assignments, None),
            ("a = (SELECT b FROM u WHERE u.id = t.id)", Assignments, None),
            ("a = 1 FROM other", Assignments, Some("a top-level FROM")),
            ("a = 1 WHERE true", Assignments, Some("a top-level WHERE")),
            (
                "a = 1 returning *",
                Assignments,
                Some("a top-level RETURNING"),
            ),
            ("\"from\" = 1", Assignments, None),
        ];
        for (fragment, kind, expected) in cases {
            let got = fragment_problem(fragment, *kind);
            match expected {
                None => assert_eq!(got, None, "{fragment}"),
                Some(text) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(text)),
                    "{fragment}: {got:?}"
                ),
            }
        }
    }
}
