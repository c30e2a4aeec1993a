//! Line and column of every node of a YAML document, so that errors found
//! after serde_yaml has deserialized a plan (which keeps no positions) can
//! still point at `plans/x.yaml:14:5`.
//!
//! Positions are where yaml-rust2's parser puts its events, with these
//! adjustments and caveats:
//!
//! - A block mapping is placed at its first key (the parser marks it at the
//!   first `:`); a flow mapping or sequence at its `{` or `[`; a block
//!   sequence at its first `-`, except an indentless one (`key:\n- a`), which
//!   the parser marks at its first item's content.
//! - A block scalar (`|`, `>`) is placed at its first line of content, not at
//!   the indicator, because that is what the parser reports.
//! - A node with an anchor or tag is placed after them, at its content.
//! - An alias (`*name`) is placed at the alias itself; the anchored node's
//!   children are not indexed again under the alias's path.
//! - An empty value (`key:` with nothing after it, an implicit null) is
//!   placed at its key, because the parser marks it at whatever token
//!   follows. An empty sequence item (`-` alone) keeps that mark, which is on
//!   or after the next item's `-`; serde_yaml rejects a null item before any
//!   semantic check would need its position.
//! - Columns count characters, not bytes.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One step from a node to a child: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    /// A mapping key; non-string keys (`3:`, `true:`) are their scalar text.
    Key(String),
    /// A 0-based sequence index.
    Index(usize),
}

/// A place in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Where each node of a document is, by path from the root.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    nodes: HashMap<Vec<PathSeg>, NodePlace>,
}

#[derive(Debug, Clone, Copy)]
struct NodePlace {
    value: Position,
    /// Set for mapping entries: where the key is.
    #[cfg_attr(not(test), allow(dead_code))] // for errors about a field's name
    key: Option<Position>,
}

impl Locations {
    /// Index every node of the first document. Returns None if the text is
    /// not valid YAML (serde_yaml reports that error itself).
    ///
    /// The whole stream is parsed, so a syntax error in a later document
    /// also gives `None`; serde_yaml rejects such input too.
    pub fn index(source: &str) -> Option<Locations> {
        let mut recorder = EventRecorder::default();
        Parser::new_from_str(source)
            .load(&mut recorder, true)
            .ok()?;
        Some(Indexer::new().run(&recorder.events))
    }

    /// Position of the VALUE at `path` (e.g. [Key("phases"), Index(2),
    /// Key("kind")] -> where the kind's value starts).
    pub fn value(&self, path: &[PathSeg]) -> Option<Position> {
        self.nodes.get(path).map(|place| place.value)
    }

    /// Position of the KEY at `path` (the last segment must be a Key), e.g.
    /// to point at an unknown field name.
    pub fn key(&self, path: &[PathSeg]) -> Option<Position> {
        self.nodes.get(path).and_then(|place| place.key)
    }

    /// The deepest existing ancestor's value position (the node itself if it
    /// exists): used when a field is missing, to point at the mapping that
    /// lacks it. An empty document gives 1:1.
    pub fn nearest(&self, path: &[PathSeg]) -> Position {
        (0..=path.len())
            .rev()
            .find_map(|len| self.value(&path[..len]))
            .unwrap_or(Position { line: 1, column: 1 })
    }
}

/// Render a path as `phases[2].kind` (root = empty string).
///
/// This matches serde_yaml's error paths except at the root, which
/// serde_yaml writes as `.` (and a root sequence item as `.[0]`).
pub fn render_path(path: &[PathSeg]) -> String {
    let mut rendered = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(key) => {
                if !rendered.is_empty() {
                    rendered.push('.');
                }
                rendered.push_str(key);
            }
            PathSeg::Index(index) => {
                rendered.push('[');
                rendered.push_str(&index.to_string());
                rendered.push(']');
            }
        }
    }
    rendered
}

/// Collects the event stream; the index is built afterwards because a block
/// mapping's position depends on its first key, which comes after it.
#[derive(Default)]
struct EventRecorder {
    events: Vec<(Event, Marker)>,
}

impl MarkedEventReceiver for EventRecorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        self.events.push((event, mark));
    }
}

/// A collection being walked, with what its next child will be.
enum Frame {
    Sequence {
        path: Vec<PathSeg>,
        next_index: usize,
    },
    Mapping {
        path: Vec<PathSeg>,
        /// The key just read, waiting for its value; `None` means the next
        /// node is a key.
        pending_key: Option<PendingKey>,
    },
    /// A collection used as a mapping key (`? [a, b]`), or the value of such
    /// a key: it has no path of its own, so nothing inside it is indexed.
    Skipped,
}

enum PendingKey {
    Scalar {
        text: String,
        position: Position,
    },
    /// A key that is a collection; its value is skipped as well.
    Complex,
}

struct Indexer {
    locations: Locations,
    stack: Vec<Frame>,
}

impl Indexer {
    fn new() -> Self {
        Indexer {
            locations: Locations::default(),
            stack: Vec::new(),
        }
    }

    fn run(mut self, events: &[(Event, Marker)]) -> Locations {
        let mut seen_document = false;
        for (i, (event, mark)) in events.iter().enumerate() {
            match event {
                Event::DocumentStart if seen_document => break,
                Event::DocumentStart => seen_document = true,
                Event::Scalar(text, style, _, tag) => {
                    let is_empty =
                        text.is_empty() && *style == TScalarStyle::Plain && tag.is_none();
                    self.node(NodeKind::Scalar { text, is_empty }, to_position(mark));
                }
                Event::Alias(_) => self.node(NodeKind::Alias, to_position(mark)),
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    let position = collection_position(mark, events.get(i + 1));
                    let kind = match event {
                        Event::SequenceStart(..) => NodeKind::Sequence,
                        _ => NodeKind::Mapping,
                    };
                    self.node(kind, position);
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    self.stack.pop();
                }
                Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            }
        }
        self.locations
    }

    /// Handle a node event: either a mapping key, or a value to record.
    fn node(&mut self, kind: NodeKind, position: Position) {
        let (path, key) = match self.stack.last_mut() {
            None => (Some(Vec::new()), None),
            Some(Frame::Skipped) => (None, None),
            Some(Frame::Sequence { path, next_index }) => {
                let mut child = path.clone();
                child.push(PathSeg::Index(*next_index));
                *next_index += 1;
                (Some(child), None)
            }
            Some(Frame::Mapping { path, pending_key }) => match pending_key.take() {
                None => {
                    *pending_key = Some(match kind {
                        NodeKind::Scalar { text, .. } => PendingKey::Scalar {
                            text: text.to_string(),
                            position,
                        },
                        // An alias as a key has no text of its own to name it by.
                        NodeKind::Alias | NodeKind::Sequence | NodeKind::Mapping => {
                            PendingKey::Complex
                        }
                    });
                    if kind.is_collection() {
                        self.stack.push(Frame::Skipped);
                    }
                    return;
                }
                Some(PendingKey::Complex) => (None, None),
                Some(PendingKey::Scalar {
                    text,
                    position: key_position,
                }) => {
                    let mut child = path.clone();
                    child.push(PathSeg::Key(text));
                    (Some(child), Some(key_position))
                }
            },
        };

        let Some(path) = path else {
            if kind.is_collection() {
                self.stack.push(Frame::Skipped);
            }
            return;
        };
        let value = match (&kind, key) {
            (NodeKind::Scalar { is_empty: true, .. }, Some(key_position)) => key_position,
            _ => position,
        };
        if kind.is_collection() {
            self.stack.push(match kind {
                NodeKind::Sequence => Frame::Sequence {
                    path: path.clone(),
                    next_index: 0,
                },
                _ => Frame::Mapping {
                    path: path.clone(),
                    pending_key: None,
                },
            });
        }
        // serde_yaml rejects duplicate keys; keeping the first is as good as any.
        self.locations
            .nodes
            .entry(path)
            .or_insert(NodePlace { value, key });
    }
}

enum NodeKind<'e> {
    Scalar { text: &'e str, is_empty: bool },
    Alias,
    Sequence,
    Mapping,
}

impl NodeKind<'_> {
    fn is_collection(&self) -> bool {
        matches!(self, NodeKind::Sequence | NodeKind::Mapping)
    }
}

/// yaml-rust2 markers have a 1-based line but a 0-based column.
fn to_position(mark: &Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

/// A collection starts at its own mark or at its first child, whichever is
/// earlier: a block mapping is marked at its first `:`, after its first key.
fn collection_position(mark: &Marker, next: Option<&(Event, Marker)>) -> Position {
    match next {
        Some((Event::SequenceEnd | Event::MappingEnd, _)) | None => to_position(mark),
        Some((_, child_mark)) if child_mark.index() < mark.index() => to_position(child_mark),
        Some(_) => to_position(mark),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse `phases[2].kind` back into segments; test-only, so keys must not
    /// contain `.` or `[`.
    fn path(rendered: &str) -> Vec<PathSeg> {
        let mut segs = Vec::new();
        for part in rendered.split('.').filter(|part| !part.is_empty()) {
            let (key, indexes) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                segs.push(PathSeg::Key(key.to_string()));
            }
            for index in indexes.split('[').filter(|i| !i.is_empty()) {
                segs.push(PathSeg::Index(index.trim_end_matches(']').parse().unwrap()));
            }
        }
        segs
    }

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    /// Check `(path, value position, key position)` rows against a document.
    fn check(source: &str, rows: &[(&str, Option<Position>, Option<Position>)]) {
        let locations = Locations::index(source).expect("valid YAML");
        for (rendered, value, key) in rows {
            let p = path(rendered);
            assert_eq!(render_path(&p), *rendered, "path helper round trip");
            assert_eq!(locations.value(&p), *value, "value of {rendered:?}");
            assert_eq!(locations.key(&p), *key, "key of {rendered:?}");
        }
    }

    const PLAN: &str = "\
# plan for adding a column
name: add_email
phases:
  - kind: expand
    sql: |
      ALTER TABLE users
        ADD COLUMN email text;
  - kind: backfill
    batch_size: 1000
    where: >
      email IS NULL
  -   kind: contract
      checks:
        - name: not_null
          sql: \"SELECT 1\"
tags: [a, b]
options: {lock_timeout: 5s, retries: 3}
";

    #[test]
    fn block_style_plan() {
        check(
            PLAN,
            &[
                ("", at(2, 1), None),
                ("name", at(2, 7), at(2, 1)),
                ("phases", at(4, 3), at(3, 1)),
                ("phases[0]", at(4, 5), None),
                ("phases[0].kind", at(4, 11), at(4, 5)),
                // Block scalars are placed at their first line of content.
                ("phases[0].sql", at(6, 7), at(5, 5)),
                ("phases[1]", at(8, 5), None),
                ("phases[1].batch_size", at(9, 17), at(9, 5)),
                ("phases[1].where", at(11, 7), at(10, 5)),
                ("phases[2]", at(12, 7), None),
                ("phases[2].kind", at(12, 13), at(12, 7)),
                ("phases[2].checks", at(14, 9), at(13, 7)),
                ("phases[2].checks[0]", at(14, 11), None),
                ("phases[2].checks[0].name", at(14, 17), at(14, 11)),
                ("phases[2].checks[0].sql", at(15, 16), at(15, 11)),
                ("tags", at(16, 7), at(16, 1)),
                ("tags[0]", at(16, 8), None),
                ("tags[1]", at(16, 11), None),
                ("options", at(17, 10), at(17, 1)),
                ("options.lock_timeout", at(17, 25), at(17, 11)),
                ("options.retries", at(17, 38), at(17, 29)),
                ("phases[3]", None, None),
                ("phases[0].missing", None, None),
                ("name[0]", None, None),
            ],
        );
    }

    #[test]
    fn flow_style_over_several_lines() {
        let source = "\
{
  name: x,
  phases: [
    {kind: expand},
    { kind: contract, sql: 'SELECT 1' },
    []
  ]
}
";
        check(
            source,
            &[
                ("", at(1, 1), None),
                ("name", at(2, 9), at(2, 3)),
                ("phases", at(3, 11), at(3, 3)),
                ("phases[0]", at(4, 5), None),
                ("phases[0].kind", at(4, 12), at(4, 6)),
                ("phases[1]", at(5, 5), None),
                ("phases[1].kind", at(5, 13), at(5, 7)),
                ("phases[1].sql", at(5, 28), at(5, 23)),
                ("phases[2]", at(6, 5), None),
            ],
        );
    }

    #[test]
    fn anchors_aliases_and_odd_keys() {
        let source = "\
defaults: &defaults
  batch_size: 500
  sleep: &pause 1s
phase:
  settings: *defaults
  pause: *pause
3: three
true: yes
\"quoted key\": 'v'
? complex
: explicit
? [a, b]
: ignored
list:
- first
- second
\u{e9}t\u{e9}: \u{fc}ber
";
        check(
            source,
            &[
                // A block mapping is placed at its first key, even when anchored.
                ("defaults", at(2, 3), at(1, 1)),
                ("defaults.batch_size", at(2, 15), at(2, 3)),
                // An anchored scalar is placed at its content, after the anchor.
                ("defaults.sleep", at(3, 17), at(3, 3)),
                ("phase.settings", at(5, 13), at(5, 3)),
                ("phase.pause", at(6, 10), at(6, 3)),
                // The alias is not expanded into paths of its own.
                ("phase.settings.batch_size", None, None),
                ("3", at(7, 4), at(7, 1)),
                ("true", at(8, 7), at(8, 1)),
                ("quoted key", at(9, 15), at(9, 1)),
                ("complex", at(11, 3), at(10, 3)),
                // An indentless sequence is placed at its first item's content.
                ("list", at(15, 3), at(14, 1)),
                ("list[0]", at(15, 3), None),
                ("list[1]", at(16, 3), None),
                // Columns count characters: `été` is three of them.
                ("\u{e9}t\u{e9}", at(17, 6), at(17, 1)),
            ],
        );
        let locations = Locations::index(source).unwrap();
        // A collection used as a key has no path; nothing under it is indexed.
        assert_eq!(locations.nodes.len(), 15);
    }

    #[test]
    fn empty_values_point_at_their_key() {
        let source = "\
name:
phases:
  -
  - kind:
    sql: x
  - # a comment
  -\t
tail: ~
";
        check(
            source,
            &[
                ("name", at(1, 1), at(1, 1)),
                ("phases", at(3, 3), at(2, 1)),
                // Empty items keep the parser's mark: the next item's
                // content, or the token after the sequence.
                ("phases[0]", at(4, 5), None),
                ("phases[1]", at(4, 5), None),
                ("phases[1].kind", at(4, 5), at(4, 5)),
                ("phases[1].sql", at(5, 10), at(5, 5)),
                ("phases[2]", at(7, 5), None),
                ("phases[3]", at(8, 1), None),
                ("tail", at(8, 7), at(8, 1)),
            ],
        );
    }

    #[test]
    fn block_scalar_styles_and_crlf() {
        let source = "a: |-\r\n  one\r\n  two\r\nb: >+\r\n\r\n  three\r\nc: plain\r\n";
        check(
            source,
            &[
                ("a", at(2, 3), at(1, 1)),
                ("b", at(6, 3), at(4, 1)),
                ("c", at(7, 4), at(7, 1)),
            ],
        );
    }

    #[test]
    fn root_sequence_with_explicit_document_markers() {
        let source = "\
%YAML 1.2
---
- one
- two: 2
...
---
- second document is ignored
- x
- y
";
        check(
            source,
            &[
                ("", at(3, 1), None),
                ("[0]", at(3, 3), None),
                ("[1]", at(4, 3), None),
                ("[1].two", at(4, 8), at(4, 3)),
                ("[2]", None, None),
            ],
        );
    }

    #[test]
    fn nested_sequences() {
        let source = "\
matrix:
  - - a
    - b
  - [c,
     d]
  -
    - e
";
        check(
            source,
            &[
                ("matrix", at(2, 3), at(1, 1)),
                ("matrix[0]", at(2, 5), None),
                ("matrix[0][0]", at(2, 7), None),
                ("matrix[0][1]", at(3, 7), None),
                ("matrix[1]", at(4, 5), None),
                ("matrix[1][0]", at(4, 6), None),
                ("matrix[1][1]", at(5, 6), None),
                ("matrix[2]", at(7, 5), None),
                ("matrix[2][0]", at(7, 7), None),
            ],
        );
    }

    #[test]
    fn scalar_document() {
        check("\n\n   just text\n", &[("", at(3, 4), None)]);
    }

    #[test]
    fn invalid_yaml_gives_none() {
        let cases = [
            "a: [1, 2\nb: 3\n",
            "a: 'unterminated\n",
            "a: b\n c: d: e\n",
            "- a\nb: c\n",
            "ok: 1\n---\nbad: [\n",
            "a: *undefined\n",
        ];
        for source in cases {
            assert!(Locations::index(source).is_none(), "{source:?}");
        }
    }

    #[test]
    fn empty_document() {
        let locations = Locations::index("").unwrap();
        assert_eq!(locations.value(&[]), None);
        assert_eq!(
            locations.nearest(&path("phases[0].kind")),
            Position { line: 1, column: 1 }
        );
        let locations = Locations::index("# only a comment\n").unwrap();
        assert_eq!(locations.nearest(&[]), Position { line: 1, column: 1 });
    }

    #[test]
    fn nearest_falls_back_to_deepest_ancestor() {
        let locations = Locations::index(PLAN).unwrap();
        let cases = [
            ("phases[1].kind", (8, 11)),
            ("phases[1].missing", (8, 5)),
            ("phases[1].missing.deeper[3]", (8, 5)),
            ("phases[9].kind", (4, 3)),
            ("options.nope", (17, 10)),
            ("nothing", (2, 1)),
            ("", (2, 1)),
        ];
        for (rendered, (line, column)) in cases {
            assert_eq!(
                locations.nearest(&path(rendered)),
                Position { line, column },
                "{rendered:?}"
            );
        }
    }

    #[test]
    fn renders_paths() {
        let cases: &[(&[PathSeg], &str)] = &[
            (&[], ""),
            (&[PathSeg::Key("name".into())], "name"),
            (&[PathSeg::Index(0)], "[0]"),
            (&[PathSeg::Index(1), PathSeg::Index(2)], "[1][2]"),
            (
                &[
                    PathSeg::Key("phases".into()),
                    PathSeg::Index(2),
                    PathSeg::Key("kind".into()),
                ],
                "phases[2].kind",
            ),
            (
                &[
                    PathSeg::Index(0),
                    PathSeg::Key("a".into()),
                    PathSeg::Key("b".into()),
                ],
                "[0].a.b",
            ),
            (&[PathSeg::Key("3".into())], "3"),
        ];
        for (segs, rendered) in cases {
            assert_eq!(render_path(segs), *rendered);
        }
    }
}
