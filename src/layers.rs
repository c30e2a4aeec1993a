//! The layering of orch's top-level modules, as data, and the test that
//! keeps the imports true to it. A module may import only modules of lower
//! layers (never its own layer, never a higher one), so the import graph
//! between top-level modules has no cycle.

/// Top to bottom. `docs/architecture.md` explains each layer.
pub(crate) const LAYERS: &[&[&str]] = &[
    // Tests only: property tests of every parser of untrusted text.
    &["fuzz"],
    // The command line: argument parsing, printing.
    &["cli"],
    // The demo: a throwaway server, a simulated application, the plan walk.
    &["demo"],
    // What orch decides and in which order: migrations, plans, phase kinds.
    &["engine"],
    // The batched backfill and its walks.
    &["backfill"],
    // Every SQL statement orch itself issues.
    &["store"],
    // No database: recipes generate plans from options and catalog facts.
    &["recipe"],
    // No database: the events the engine emits (they name phase kinds and
    // states)...
    &["events"],
    // ...and plans (format, rules, state machine, audit actions, rows).
    &["plan"],
    // The migration lint (no database): squawk's parser, orch's rules.
    &["lint"],
    // orch.toml and .env (no database): the project's defaults and targets.
    &["config"],
    // Pure: migration folders and their sources.
    &["migration"],
    // Leaves.
    &[
        "sql_text",
        "yaml_locate",
        "identity",
        "pg_server",
        "stop",
        "text_file",
        "timefmt",
    ],
    &["connect"],
    &["error"],
];

/// Imports the layering forbids although they point down: the CLI never
/// talks to the database or runs a backfill itself; it goes through the
/// engine.
pub(crate) const FORBIDDEN: &[(&str, &str)] = &[("cli", "store"), ("cli", "backfill")];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                rust_files(&entry.unwrap().path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
    }

    /// The top-level modules named after `crate::` in `text`, including
    /// grouped imports (`use crate::{a::X, b}`); comments are skipped.
    fn crate_imports(text: &str) -> BTreeSet<String> {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        let mut found = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let name = ident(item.trim());
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                found.insert(ident(rest));
            }
        }
        found
    }

    /// Module -> the other top-level modules it imports.
    fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph = BTreeMap::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if ["lib", "main", "layers"].contains(&name.as_str()) {
                continue;
            }
            let mut files = Vec::new();
            rust_files(&path, &mut files);
            let imports: &mut BTreeSet<String> = graph.entry(name.clone()).or_default();
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                imports.extend(crate_imports(&text).into_iter().filter(|m| *m != name));
            }
        }
        graph
    }

    #[test]
    fn imports_point_down_the_layers() {
        let graph = import_graph();
        let mut problems = Vec::new();
        for (module, imports) in &graph {
            let Some(own) = layer_of(module) else {
                problems.push(format!("src/{module} is in no layer of src/layers.rs"));
                continue;
            };
            for import in imports {
                // `crate::Error` / `crate::Result` are the error module's.
                let target = match import.as_str() {
                    "Error" | "Result" => "error",
                    other => other,
                };
                match layer_of(target) {
                    Some(layer) if layer > own => {}
                    Some(_) => problems.push(format!(
                        "{module} imports {target}, which is not in a lower layer"
                    )),
                    None => problems.push(format!("{module} imports unknown module {target}")),
                }
                if FORBIDDEN.contains(&(module.as_str(), target)) {
                    problems.push(format!("{module} may not import {target}"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // Every layered module exists: the list stays true as files move.
        for module in LAYERS.iter().flat_map(|l| l.iter()) {
            assert!(graph.contains_key(*module), "src/{module} is gone");
        }
    }

    #[test]
    fn the_parser_sees_every_form_of_import() {
        let text = "use crate::a::B;\n// crate::commented\nuse crate::{c::D, e};\nfn f() { crate::g::h(); }";
        let got: Vec<String> = crate_imports(text).into_iter().collect();
        assert_eq!(got, ["a", "c", "e", "g"]);
    }
}
