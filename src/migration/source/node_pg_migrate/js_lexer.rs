//! Just enough of a JavaScript tokenizer to read node-pg-migrate migration
//! files of the plain shape orch accepts: identifiers, punctuation, string
//! and template literals (with their escapes cooked into the text they
//! stand for), numbers and comments. There are no regular expression
//! literals: a `/` is punctuation, which the reader then refuses. A template
//! literal with `${...}` is refused here, wherever it is.

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Ident,
    /// `=>`, or one character of punctuation.
    Punct,
    Number,
    /// A `'...'` or `"..."` string, with the text it stands for.
    Str(String),
    /// A template literal without `${...}`, with the text it stands for.
    Template(String),
    /// A `//` or `/* */` comment, with its text inside the delimiters.
    Comment(String),
}

/// One token of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    /// The token's source text.
    pub text: String,
    /// Byte offset of the token's start in the file.
    pub start: usize,
    /// 1-based line of the token's start (lines end at `\n`, as orch counts).
    pub line: usize,
    /// A line terminator comes between this token and the one before
    /// (what JavaScript's automatic semicolons depend on).
    pub newline_before: bool,
}

impl Token {
    /// Whether this is the punctuation or identifier `text`.
    pub fn is(&self, text: &str) -> bool {
        matches!(self.kind, Kind::Ident | Kind::Punct) && self.text == text
    }
}

/// A problem at a 1-based line.
pub type LexError = (usize, String);

/// The tokens of `source`, comments included.
pub fn tokenize(source: &str) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer {
        source,
        pos: 0,
        line: 1,
    };
    if source.starts_with("#!") {
        lexer.pos = source.find('\n').unwrap_or(source.len());
    }
    let mut tokens = Vec::new();
    let mut newline_before = false;
    while let Some(c) = lexer.peek() {
        if is_line_terminator(c) {
            newline_before = true;
            lexer.bump();
            continue;
        }
        if c.is_whitespace() || c == '\u{feff}' {
            lexer.bump();
            continue;
        }
        let start = lexer.pos;
        let line = lexer.line;
        let kind = lexer.token(c)?;
        if let Kind::Comment(text) = &kind
            && text.contains(is_line_terminator)
        {
            // A comment across lines separates like a line break.
            tokens.push(Token {
                kind,
                text: source[start..lexer.pos].to_string(),
                start,
                line,
                newline_before,
            });
            newline_before = true;
            continue;
        }
        tokens.push(Token {
            kind,
            text: source[start..lexer.pos].to_string(),
            start,
            line,
            newline_before,
        });
        newline_before = false;
    }
    Ok(tokens)
}

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$' || (!c.is_ascii() && c.is_alphabetic())
}

fn is_ident_continue(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || (!c.is_ascii() && c.is_alphanumeric())
}

struct Lexer<'a> {
    source: &'a str,
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.source[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.source[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn token(&mut self, c: char) -> Result<Kind, LexError> {
        let line = self.line;
        match c {
            '/' if self.peek_at(1) == Some('/') => {
                self.pos += 2;
                let start = self.pos;
                while self.peek().is_some_and(|c| !is_line_terminator(c)) {
                    self.bump();
                }
                Ok(Kind::Comment(self.source[start..self.pos].to_string()))
            }
            '/' if self.peek_at(1) == Some('*') => {
                self.pos += 2;
                let start = self.pos;
                loop {
                    if self.source[self.pos..].starts_with("*/") {
                        let text = self.source[start..self.pos].to_string();
                        self.pos += 2;
                        return Ok(Kind::Comment(text));
                    }
                    if self.bump().is_none() {
                        return Err((line, "a /* comment that never ends".to_string()));
                    }
                }
            }
            '\'' | '"' => {
                self.bump();
                self.string(c, line).map(Kind::Str)
            }
            '`' => {
                self.bump();
                self.template(line).map(Kind::Template)
            }
            '=' if self.peek_at(1) == Some('>') => {
                self.pos += 2;
                Ok(Kind::Punct)
            }
            c if is_ident_start(c) => {
                while self.peek().is_some_and(is_ident_continue) {
                    self.bump();
                }
                Ok(Kind::Ident)
            }
            c if c.is_ascii_digit() => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    self.bump();
                }
                Ok(Kind::Number)
            }
            _ => {
                self.bump();
                Ok(Kind::Punct)
            }
        }
    }

    /// The rest of a `'`/`"` string after its opening quote.
    fn string(&mut self, quote: char, line: usize) -> Result<String, LexError> {
        let mut cooked = String::new();
        loop {
            match self.bump() {
                None | Some('\n' | '\r') => {
                    return Err((line, "a string that never ends on its line".to_string()));
                }
                Some(c) if c == quote => return Ok(cooked),
                Some('\\') => self.escape(&mut cooked, false)?,
                Some(c) => cooked.push(c),
            }
        }
    }

    /// The rest of a template literal after its opening backtick.
    fn template(&mut self, line: usize) -> Result<String, LexError> {
        let mut cooked = String::new();
        loop {
            match self.bump() {
                None => return Err((line, "a template literal that never ends".to_string())),
                Some('`') => return Ok(cooked),
                Some('$') if self.peek() == Some('{') => {
                    return Err((
                        self.line,
                        "a ${...} substitution in a template literal: orch runs the SQL as written in the file, so the SQL must not be computed; write the value into the SQL".to_string(),
                    ));
                }
                Some('\\') => self.escape(&mut cooked, true)?,
                // Template literals read `\r\n` and `\r` as `\n`.
                Some('\r') => {
                    if self.peek() == Some('\n') {
                        self.bump();
                    }
                    cooked.push('\n');
                }
                Some(c) => cooked.push(c),
            }
        }
    }

    /// The escape after a `\`, pushed onto `cooked`.
    fn escape(&mut self, cooked: &mut String, template: bool) -> Result<(), LexError> {
        let line = self.line;
        let Some(c) = self.bump() else {
            return Err((line, "a \\ at the end of the file".to_string()));
        };
        match c {
            'n' => cooked.push('\n'),
            't' => cooked.push('\t'),
            'r' => cooked.push('\r'),
            'b' => cooked.push('\u{8}'),
            'f' => cooked.push('\u{c}'),
            'v' => cooked.push('\u{b}'),
            '0' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => cooked.push('\0'),
            '0'..='9' => {
                let what = if template {
                    "is not allowed in a template literal"
                } else {
                    "is a legacy octal escape orch does not read"
                };
                return Err((line, format!("\\{c} {what}; write the character itself")));
            }
            'x' => {
                let value = self.hex_digits(2, line)?;
                cooked.push(char_of(value, line)?);
            }
            'u' => {
                let value = self.unicode_escape(line)?;
                if (0xD800..0xDC00).contains(&value) && self.source[self.pos..].starts_with("\\u") {
                    // A surrogate pair written as two escapes.
                    self.pos += 2;
                    let low = self.unicode_escape(line)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err((line, "a \\u escape of half a character".to_string()));
                    }
                    let value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00);
                    cooked.push(char_of(value, line)?);
                } else {
                    cooked.push(char_of(value, line)?);
                }
            }
            // A line continuation stands for nothing.
            '\r' => {
                if self.peek() == Some('\n') {
                    self.bump();
                }
            }
            '\n' | '\u{2028}' | '\u{2029}' => {}
            c => cooked.push(c),
        }
        Ok(())
    }

    fn unicode_escape(&mut self, line: usize) -> Result<u32, LexError> {
        if self.peek() == Some('{') {
            self.bump();
            let mut value: u32 = 0;
            let mut digits = 0;
            while let Some(c) = self.peek().filter(|c| *c != '}') {
                let digit = c
                    .to_digit(16)
                    .ok_or_else(|| (line, "a malformed \\u{...} escape".to_string()))?;
                value = value.saturating_mul(16).saturating_add(digit);
                digits += 1;
                self.bump();
            }
            if self.bump() != Some('}') || digits == 0 || value > 0x10FFFF {
                return Err((line, "a malformed \\u{...} escape".to_string()));
            }
            Ok(value)
        } else {
            self.hex_digits(4, line)
        }
    }

    fn hex_digits(&mut self, count: usize, line: usize) -> Result<u32, LexError> {
        let mut value = 0;
        for _ in 0..count {
            let digit = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| (line, "a malformed \\x or \\u escape".to_string()))?;
            value = value * 16 + digit;
            self.bump();
        }
        Ok(value)
    }
}

fn char_of(value: u32, line: usize) -> Result<char, LexError> {
    char::from_u32(value).ok_or_else(|| (line, "a \\u escape of half a character".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<(Kind, usize, bool)> {
        tokenize(source)
            .unwrap()
            .into_iter()
            .map(|t| (t.kind, t.line, t.newline_before))
            .collect()
    }

    #[test]
    fn tokens_lines_and_line_breaks() {
        assert_eq!(
            kinds("exports.up = pgm => {\n  pgm.sql(`SELECT 1`);\n};"),
            [
                (Kind::Ident, 1, false),
                (Kind::Punct, 1, false),
                (Kind::Ident, 1, false),
                (Kind::Punct, 1, false),
                (Kind::Ident, 1, false),
                (Kind::Punct, 1, false),
                (Kind::Punct, 1, false),
                (Kind::Ident, 2, true),
                (Kind::Punct, 2, false),
                (Kind::Ident, 2, false),
                (Kind::Punct, 2, false),
                (Kind::Template("SELECT 1".into()), 2, false),
                (Kind::Punct, 2, false),
                (Kind::Punct, 2, false),
                (Kind::Punct, 3, true),
                (Kind::Punct, 3, false),
            ]
        );
        let tokens = tokenize("#!/usr/bin/env node\n/* a\nb */ x // c\ny").unwrap();
        let texts: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["/* a\nb */", "x", "// c", "y"]);
        assert!(tokens[1].newline_before && tokens[1].line == 3);
        assert_eq!(tokens[0].kind, Kind::Comment(" a\nb ".into()));
    }

    #[test]
    fn strings_and_templates_are_cooked() {
        let cooked = |source: &str| match tokenize(source).unwrap().remove(0).kind {
            Kind::Str(s) | Kind::Template(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(cooked(r#"'it''s'"#), "it");
        assert_eq!(cooked(r"'a\'b\\c\nd'"), "a'b\\c\nd");
        assert_eq!(cooked(r#""\x41\u0042\u{43}\uD83D\uDE00""#), "ABC😀");
        assert_eq!(cooked("`a\r\nb\rc`"), "a\nb\nc");
        assert_eq!(cooked("`E'\\\\n' \\` \\$ $x $ {`"), "E'\\n' ` $ $x $ {");
        assert_eq!(cooked("'a\\\nb'"), "ab");
        assert_eq!(cooked(r"'\0'"), "\0");
    }

    #[test]
    fn refusals_at_their_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("x\n`SELECT ${a}`", 2, "${...} substitution"),
            ("`\n\n${a}`", 3, "${...} substitution"),
            ("'abc\n'", 1, "never ends on its line"),
            ("\n`abc", 2, "template literal that never ends"),
            ("/* abc", 1, "comment that never ends"),
            (r"'\1'", 1, "legacy octal escape"),
            (r"`\01`", 1, "not allowed in a template literal"),
            (r"'\xZZ'", 1, "malformed"),
            (r"'\u{110000}'", 1, "malformed"),
            (r"'\uD800'", 1, "half a character"),
            ("'\\", 1, "at the end of the file"),
        ];
        for (source, line, message) in cases {
            let (got_line, got) = tokenize(source).unwrap_err();
            assert_eq!(got_line, *line, "{source:?}: {got}");
            assert!(got.contains(message), "{source:?}: {got}");
        }
    }
}
