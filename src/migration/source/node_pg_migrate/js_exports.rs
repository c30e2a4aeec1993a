//! The exports of a node-pg-migrate JavaScript (or TypeScript) migration,
//! read from its tokens without running it: `up`, `down` and `shorthands`,
//! assigned CommonJS-style (`exports.up = ...`, `module.exports.up = ...`)
//! or exported as an ES module (`export const up = ...`, `export function
//! up`), each a plain value or a function whose body only calls
//! `pgm.sql(...)` with SQL written out, `pgm.noTransaction()` or its `run`
//! callback. Anything else is refused at its line, with how to convert it.

use std::path::Path;

use super::js_lexer::{Kind, Token, tokenize};
use crate::error::{Error, Result};
use crate::migration::file::invalid;
use crate::sql_text;

/// What to do about a migration orch will not read.
pub const CONVERT: &str = "orch reads node-pg-migrate migrations whose up and down only call pgm.sql(`...`) with the SQL written out (no ${...}) and pgm.noTransaction(); convert this one by hand (put the SQL it runs, which `node-pg-migrate up --dry-run` prints, in pgm.sql calls) or rewrite it as an .sql migration (-- Up Migration / -- Down Migration)";

/// The exports of the file at `path`, in file order, and its comments.
pub fn read(path: &Path, text: &str, typescript: bool) -> Result<(Vec<Export>, Vec<Token>)> {
    let tokens = tokenize(text).map_err(|(line, message)| invalid(path, line, message))?;
    let (comments, tokens): (Vec<Token>, Vec<Token>) = tokens
        .into_iter()
        .partition(|t| matches!(t.kind, Kind::Comment(_)));
    let mut parser = Parser {
        path,
        tokens,
        pos: 0,
        typescript,
        last_line: sql_text::line_of_offset(text, text.len()),
    };
    Ok((parser.program()?, comments))
}

/// An export and the line it is at.
pub struct Export {
    pub name: String,
    pub value: Value,
    pub line: usize,
}

/// What an export is, as far as orch reads it.
pub enum Value {
    Undefined,
    Null,
    False,
    True,
    EmptyObject,
    Function(Function),
}

/// An up or down function, reduced to what it does.
pub struct Function {
    /// Line of the function's `{`, or of its arrow for an expression body.
    pub body_line: usize,
    /// Byte range of its body, where comments count.
    pub body: (usize, usize),
    /// Each `pgm.sql` text and the line of its literal.
    pub sql: Vec<(String, usize)>,
    /// It calls `pgm.noTransaction()`.
    pub no_transaction: bool,
}

struct Parser<'a> {
    path: &'a Path,
    tokens: Vec<Token>,
    pos: usize,
    typescript: bool,
    last_line: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_is(&self, text: &str) -> bool {
        self.peek().is_some_and(|t| t.is(text))
    }

    fn peek_at_is(&self, ahead: usize, text: &str) -> bool {
        self.tokens
            .get(self.pos + ahead)
            .is_some_and(|t| t.is(text))
    }

    fn line(&self) -> usize {
        self.peek().map_or(self.last_line, |t| t.line)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    /// Refuse what is at the current token.
    fn unexpected(&self, context: &str) -> Error {
        let what = match self.peek() {
            None => "the end of the file".to_string(),
            Some(token) => describe(token),
        };
        invalid(
            self.path,
            self.line(),
            format!("{what} {context}; {CONVERT}"),
        )
    }

    fn expect(&mut self, text: &str, context: &str) -> Result<Token> {
        if self.peek_is(text) {
            Ok(self.next().expect("peeked"))
        } else {
            Err(self.unexpected(context))
        }
    }

    fn ident(&mut self, context: &str) -> Result<Token> {
        match self.peek() {
            Some(token) if token.kind == Kind::Ident => Ok(self.next().expect("peeked")),
            _ => Err(self.unexpected(context)),
        }
    }

    /// A statement ends at `;`, a line break, `}` or the end (JavaScript's
    /// automatic semicolons, for the statements orch reads).
    fn end_statement(&mut self, context: &str) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(token) if token.is(";") => {
                self.pos += 1;
                Ok(())
            }
            Some(token) if token.newline_before || token.is("}") => Ok(()),
            Some(_) => Err(self.unexpected(context)),
        }
    }

    fn program(&mut self) -> Result<Vec<Export>> {
        let mut exports: Vec<Export> = Vec::new();
        let mut prologue = true;
        while let Some(token) = self.peek() {
            if token.is(";") {
                self.pos += 1;
                continue;
            }
            let line = token.line;
            if let Kind::Str(text) = &token.kind
                && prologue
                && text == "use strict"
            {
                self.pos += 1;
                self.end_statement("after \"use strict\"")?;
                continue;
            }
            prologue = false;
            let export = if token.is("exports") {
                self.pos += 1;
                self.assigned_export(line)?
            } else if token.is("module") {
                self.pos += 1;
                self.expect(".", "after `module`")?;
                self.expect("exports", "after `module.`")?;
                if self.peek_is("=") {
                    return Err(invalid(
                        self.path,
                        line,
                        format!(
                            "module.exports = ...: orch reads each export assigned by itself (exports.up = ..., exports.down = ...); {CONVERT}"
                        ),
                    ));
                }
                self.assigned_export(line)?
            } else if token.is("export") {
                self.pos += 1;
                self.es_export(line)?
            } else if token.is("import") && self.typescript {
                self.pos += 1;
                self.type_import()?;
                continue;
            } else {
                return Err(self.unexpected(
                    "at the top level, where orch reads only the exports up, down and shorthands",
                ));
            };
            if let Some(first) = exports.iter().find(|e| e.name == export.name) {
                return Err(invalid(
                    self.path,
                    export.line,
                    format!(
                        "{} is exported a second time (the first is at line {}); export it once",
                        export.name, first.line
                    ),
                ));
            }
            exports.push(export);
        }
        Ok(exports)
    }

    /// `.name = value` after `exports` or `module.exports`.
    fn assigned_export(&mut self, line: usize) -> Result<Export> {
        self.expect(".", "after `exports`")?;
        let name = self.ident("after `exports.`")?.text;
        self.expect("=", &format!("after `exports.{name}`"))?;
        let value = self.value(&name)?;
        self.end_statement("after an export")?;
        Ok(Export { name, value, line })
    }

    /// `export const name = value` or `export [async] function name(...) {...}`.
    fn es_export(&mut self, line: usize) -> Result<Export> {
        if self.peek_is("const") || self.peek_is("let") || self.peek_is("var") {
            self.pos += 1;
            let name = self.ident("after `export const`")?.text;
            if self.typescript && self.peek_is(":") {
                self.pos += 1;
                self.type_annotation()?;
            }
            self.expect("=", &format!("after `export const {name}`"))?;
            let value = self.value(&name)?;
            self.end_statement("after an export")?;
            return Ok(Export { name, value, line });
        }
        if self.peek_is("async") {
            self.pos += 1;
        }
        self.expect("function", "after `export`")?;
        let name = self.ident("after `export function`")?.text;
        let function = self.function_rest()?;
        Ok(Export {
            name,
            value: Value::Function(function),
            line,
        })
    }

    /// `import [type] { A, B } from 'node-pg-migrate'` in TypeScript: types
    /// only, which change nothing.
    fn type_import(&mut self) -> Result<()> {
        let line = self.line();
        while let Some(token) = self.peek() {
            if token.is("from") {
                break;
            }
            let allowed = token.kind == Kind::Ident
                || token.is("{")
                || token.is("}")
                || token.is(",")
                || token.is("*");
            if !allowed {
                return Err(self.unexpected("in an import"));
            }
            self.pos += 1;
        }
        self.expect("from", "in an import")?;
        match self.next() {
            Some(Token {
                kind: Kind::Str(module),
                ..
            }) if module == "node-pg-migrate" => self.end_statement("after an import"),
            _ => Err(invalid(
                self.path,
                line,
                format!("an import of other code than node-pg-migrate's types; {CONVERT}"),
            )),
        }
    }

    /// A TypeScript type after `:`: names, `.`, `<...>`, `|`, `&`, `[]`.
    fn type_annotation(&mut self) -> Result<()> {
        let mut depth = 0usize;
        let mut any = false;
        while let Some(token) = self.peek() {
            let part = token.kind == Kind::Ident
                || [".", "|", "&", "[", "]"].iter().any(|p| token.is(p))
                || (token.is(",") && depth > 0);
            if token.is("<") {
                depth += 1;
            } else if token.is(">") && depth > 0 {
                depth -= 1;
            } else if !part {
                break;
            }
            any = true;
            self.pos += 1;
        }
        if any && depth == 0 {
            Ok(())
        } else {
            Err(self.unexpected("in a type annotation"))
        }
    }

    fn value(&mut self, name: &str) -> Result<Value> {
        let Some(token) = self.peek() else {
            return Err(self.unexpected(&format!("as the value of {name}")));
        };
        let simple = match token.text.as_str() {
            "undefined" => Some(Value::Undefined),
            "null" => Some(Value::Null),
            "false" => Some(Value::False),
            "true" => Some(Value::True),
            _ => None,
        };
        if token.kind == Kind::Ident
            && let Some(value) = simple
        {
            self.pos += 1;
            return Ok(value);
        }
        if token.is("{") {
            if self.peek_at_is(1, "}") {
                self.pos += 2;
                return Ok(Value::EmptyObject);
            }
            if name == "shorthands" {
                return Err(invalid(
                    self.path,
                    token.line,
                    "orch reads `shorthands = undefined` only: shorthands serve pgm.createTable and the other builders, which orch does not read",
                ));
            }
        }
        let is_async = self.peek_is("async") && !self.peek_at_is(1, "=>");
        if is_async {
            self.pos += 1;
        }
        if self.peek_is("function") {
            self.pos += 1;
            if self.peek().is_some_and(|t| t.kind == Kind::Ident) {
                self.pos += 1;
            }
            return self.function_rest().map(Value::Function);
        }
        let arrow_line = self.line();
        let params = if self.peek_is("(") {
            let params = self.params()?;
            if self.typescript && self.peek_is(":") {
                self.pos += 1;
                self.type_annotation()?;
            }
            params
        } else if self.peek().is_some_and(|t| t.kind == Kind::Ident) && self.peek_at_is(1, "=>") {
            vec![self.next().expect("peeked").text]
        } else {
            return Err(self.unexpected(&format!("as the value of {name}")));
        };
        self.expect("=>", "after the parameters")?;
        if self.peek_is("{") {
            return self.block(&params).map(Value::Function);
        }
        // An expression body: one call.
        let start = self.peek().map_or(0, |t| t.start);
        let mut function = Function {
            body_line: arrow_line,
            body: (start, start),
            sql: Vec::new(),
            no_transaction: false,
        };
        self.call(&params, &mut function)?;
        Ok(Value::Function(function))
    }

    /// `(params) [: Type] { body }` after `function [name]`.
    fn function_rest(&mut self) -> Result<Function> {
        let params = self.params()?;
        if self.typescript && self.peek_is(":") {
            self.pos += 1;
            self.type_annotation()?;
        }
        self.block(&params)
    }

    /// `(pgm)` or `(pgm, run)`, with TypeScript types.
    fn params(&mut self) -> Result<Vec<String>> {
        self.expect("(", "where the parameters start")?;
        let mut params = Vec::new();
        while !self.peek_is(")") {
            if params.len() == 2 {
                return Err(self.unexpected("as a third parameter (up and down take pgm and run)"));
            }
            params.push(self.ident("as a parameter")?.text);
            if self.typescript && self.peek_is(":") {
                self.pos += 1;
                self.type_annotation()?;
            }
            if !self.peek_is(",") {
                break;
            }
            self.pos += 1;
        }
        self.expect(")", "after the parameters")?;
        Ok(params)
    }

    /// `{ calls }`.
    fn block(&mut self, params: &[String]) -> Result<Function> {
        let open = self.expect("{", "where the function body starts")?;
        let mut function = Function {
            body_line: open.line,
            body: (open.start, open.start),
            sql: Vec::new(),
            no_transaction: false,
        };
        loop {
            match self.peek() {
                None => return Err(self.unexpected("in a function body that never ends")),
                Some(token) if token.is("}") => {
                    function.body.1 = token.start;
                    self.pos += 1;
                    return Ok(function);
                }
                Some(token) if token.is(";") => self.pos += 1,
                Some(_) => {
                    self.call(params, &mut function)?;
                    self.end_statement("after a call")?;
                }
            }
        }
    }

    /// `pgm.sql(...)`, `pgm.noTransaction()` or `run()`.
    fn call(&mut self, params: &[String], function: &mut Function) -> Result<()> {
        if self.peek_is("await") {
            self.pos += 1;
        }
        let pgm = params.first().map(String::as_str);
        let run = params.get(1).map(String::as_str);
        let Some(token) = self.peek().cloned() else {
            return Err(self.unexpected("in a function body"));
        };
        if token.kind == Kind::Ident && Some(token.text.as_str()) == run {
            self.pos += 1;
            self.expect("(", &format!("after `{}`", token.text))?;
            self.expect(")", &format!("in `{}(`", token.text))?;
            return Ok(());
        }
        if token.kind != Kind::Ident || Some(token.text.as_str()) != pgm {
            return Err(self.unexpected("in a function body"));
        }
        self.pos += 1;
        self.expect(".", &format!("after `{}`", token.text))?;
        let method = self.ident(&format!("after `{}.`", token.text))?;
        match method.text.as_str() {
            "sql" => {
                self.expect("(", "after `pgm.sql`")?;
                let literal = self.peek().cloned();
                let sql = match literal.as_ref().map(|t| &t.kind) {
                    Some(Kind::Template(sql) | Kind::Str(sql)) => sql.clone(),
                    _ => {
                        return Err(self.unexpected(
                            "as the SQL of pgm.sql: it takes one template literal or string written out",
                        ));
                    }
                };
                let literal = literal.expect("matched");
                self.pos += 1;
                if self.peek_is(",") && !self.peek_at_is(1, ")") {
                    return Err(invalid(
                        self.path,
                        self.line(),
                        format!(
                            "pgm.sql with values to put into its SQL: orch runs the SQL as written; write the values into it; {CONVERT}"
                        ),
                    ));
                }
                if self.peek_is(",") {
                    self.pos += 1;
                }
                self.expect(")", "after the SQL of pgm.sql")?;
                function.sql.push((sql, literal.line));
            }
            "noTransaction" => {
                self.expect("(", "after `pgm.noTransaction`")?;
                self.expect(")", "in `pgm.noTransaction(`")?;
                function.no_transaction = true;
            }
            other => {
                return Err(invalid(
                    self.path,
                    method.line,
                    format!(
                        "{}.{other}(...) builds its SQL in JavaScript, which orch does not run: replace it with pgm.sql(`...`) holding the SQL it generates (`node-pg-migrate up --dry-run` prints it), or rewrite the migration as an .sql file (-- Up Migration / -- Down Migration)",
                        token.text
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A token as a message names it.
fn describe(token: &Token) -> String {
    match &token.kind {
        Kind::Ident => match token.text.as_str() {
            "require" => "require(...), which loads other code,".to_string(),
            "const" | "let" | "var" => format!("a variable (`{}`)", token.text),
            "if" | "for" | "while" | "do" | "switch" | "try" | "return" => {
                format!("`{}`", token.text)
            }
            name => format!("`{name}`"),
        },
        Kind::Punct => format!("`{}`", token.text),
        Kind::Number => format!("the number {}", token.text),
        Kind::Str(_) => "a string".to_string(),
        Kind::Template(_) => "a template literal".to_string(),
        Kind::Comment(_) => "a comment".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_file_line_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            (
                "exports.up = (pgm) => {\n  pgm.createTable('t', { id: 'id' });\n};\n",
                ":2: pgm.createTable(...) builds its SQL in JavaScript, which orch does not run: replace it with pgm.sql(`...`)",
            ),
            (
                "exports.up = (pgm) => {\n  pgm.sql(`SELECT ${1}`);\n};\n",
                ":2: a ${...} substitution",
            ),
            (
                "const x = require('x');\nexports.up = (pgm) => {};\n",
                ":1: a variable (`const`) at the top level",
            ),
            (
                "require('x');\n",
                ":1: require(...), which loads other code, at the top level",
            ),
            (
                "exports.up = (pgm) => {\n  for (const t of ts) pgm.sql(t);\n};\n",
                ":2: `for` in a function body",
            ),
            (
                "exports.up = (pgm) => {\n  pgm.sql(sql);\n};\n",
                ":2: `sql` as the SQL of pgm.sql",
            ),
            (
                "exports.up = (pgm) => {\n  pgm.sql('a' + 'b');\n};\n",
                ":2: `+` after the SQL of pgm.sql",
            ),
            (
                "exports.up = (pgm) => {\n  pgm.sql(`UPDATE t SET a = {a}`, { a: 1 });\n};\n",
                ":2: pgm.sql with values to put into its SQL",
            ),
            (
                "exports.up = (pgm) => {\n  pgm.db.query(`SELECT 1`);\n};\n",
                ":2: pgm.db(...) builds its SQL in JavaScript",
            ),
            (
                "module.exports = { up: (pgm) => {} };\n",
                ":1: module.exports = ...: orch reads each export assigned by itself",
            ),
            (
                "exports.shorthands = { id: { type: 'uuid' } };\nexports.up = (pgm) => {};\n",
                ":1: orch reads `shorthands = undefined` only",
            ),
            (
                "exports.up = (pgm) => {};\nexports.up = (pgm) => {};\n",
                ":2: up is exported a second time (the first is at line 1)",
            ),
            (
                "exports.up = (pgm) => {};\nexports.helper = 1;\n",
                ":2: the number 1 as the value of helper",
            ),
            (
                "exports.up = (pgm) => { pgm.sql(`SELECT 1`) pgm.sql(`SELECT 2`) };\n",
                ":1: `pgm` after a call",
            ),
            (
                "exports.up = (pgm) => {\n  pgm.sql(`SELECT 1`)\n  .then(() => {});\n};\n",
                ":3: `.` in a function body",
            ),
            (
                "exports.up = (pgm) => {\n",
                ":2: the end of the file in a function body",
            ),
            (
                "exports.up = (pgm: MigrationBuilder) => {};\n",
                ":1: `:` after the parameters",
            ),
            (
                "exports.up = (pgm) => {\n  if (x) pgm.sql(`SELECT 1`);\n};\n",
                ":2: `if` in a function body",
            ),
            ("exports.up = up;\n", ":1: `up` as the value of up"),
            (
                "exports.up = (pgm) => { pgm.sql(/x/) };\n",
                ":1: `/` as the SQL of pgm.sql",
            ),
        ];
        let path = Path::new("migrations/1700000000000_a.js");
        for (source, expected) in cases {
            let err = match read(path, source, false) {
                Ok(_) => panic!("{source:?} was read"),
                Err(err) => err.to_string(),
            };
            assert!(
                err.contains(&format!("migrations/1700000000000_a.js{expected}")),
                "{source:?}: {err:?} should contain {expected:?}"
            );
        }
    }
}
