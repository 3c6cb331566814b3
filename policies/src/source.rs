//! The policy text as a YAML tree that remembers where every node came from.
//!
//! serde stops at the first problem and forgets positions; this tree keeps the line and
//! column of every key and value so validation can report all problems at once, each where
//! the operator wrote it. Built from saphyr-parser events; aliases are expanded (with a cap,
//! so a hostile file of nested aliases cannot blow up memory).

use std::collections::HashMap;
use std::rc::Rc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle};

/// A position in the source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl From<Marker> for Pos {
    fn from(marker: Marker) -> Self {
        Pos {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: NodeValue,
    /// A tag the author wrote (`!foo`); policies use none, so validation refuses it.
    pub tag: Option<String>,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// A scalar's text and whether it was written plain (unquoted): only plain scalars can
    /// be numbers, booleans or null.
    Scalar {
        text: String,
        plain: bool,
    },
    List(Vec<Rc<Node>>),
    /// Key/value pairs in the order written (duplicates kept so they can be reported).
    Map(Vec<(Rc<Node>, Rc<Node>)>),
}

impl Node {
    /// True for `~`, `null` or an empty plain value.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, NodeValue::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short description of the node's kind, for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            NodeValue::Scalar { .. } if self.is_null() => "nothing (null)",
            NodeValue::Scalar { text, plain: true }
                if text.parse::<f64>().is_ok() && !text.is_empty() =>
            {
                "a number"
            }
            NodeValue::Scalar { text, plain: true }
                if matches!(text.as_str(), "true" | "false" | "True" | "False") =>
            {
                "a boolean"
            }
            NodeValue::Scalar { .. } => "a text value",
            NodeValue::List(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

/// Why the text is not YAML at all (nothing else can be checked then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Most nodes a policy may expand to, aliases included. A bank with 500 branches is about
/// 20,000 nodes; the cap only stops alias bombs.
const MAX_NODES: usize = 2_000_000;

/// Parses YAML text into a tree. `Ok(None)` means the text holds no document at all.
pub fn parse(text: &str) -> Result<Option<Rc<Node>>, SyntaxError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        expanded: 0,
    };
    builder.document()
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, (Rc<Node>, usize)>,
    expanded: usize,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Pos), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok((event, span))) => Ok((event, span.start.into())),
            Some(Err(error)) => Err(SyntaxError {
                pos: (*error.marker()).into(),
                message: format!("this is not valid YAML: {}", error.info()),
            }),
            None => Err(SyntaxError {
                pos: Pos { line: 1, column: 1 },
                message: "the YAML ended unexpectedly".into(),
            }),
        }
    }

    fn document(&mut self) -> Result<Option<Rc<Node>>, SyntaxError> {
        let mut root = None;
        loop {
            let (event, pos) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root),
                Event::DocumentStart(_) => {
                    if root.is_some() {
                        return Err(SyntaxError {
                            pos,
                            message: "the file holds more than one YAML document".into(),
                        });
                    }
                    let (event, pos) = self.next()?;
                    root = Some(self.node(event, pos)?);
                }
                other => {
                    let node = self.node(other, pos)?;
                    root.get_or_insert(node);
                }
            }
        }
    }

    fn count(&mut self, nodes: usize, pos: Pos) -> Result<(), SyntaxError> {
        self.expanded = self.expanded.saturating_add(nodes);
        if self.expanded > MAX_NODES {
            return Err(SyntaxError {
                pos,
                message: format!(
                    "the policy expands to more than {MAX_NODES} values (aliases inside aliases?)"
                ),
            });
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Rc<Node>, size: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (Rc::clone(node), size));
        }
    }

    /// Builds the node that starts with `event`, returning it (sizes are tracked in
    /// `expanded`).
    fn node(&mut self, event: Event<'a>, pos: Pos) -> Result<Rc<Node>, SyntaxError> {
        let before = self.expanded;
        self.count(1, pos)?;
        let node = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let node = Rc::new(Node {
                    pos,
                    value: NodeValue::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    tag: tag.map(|tag| tag.to_string()),
                });
                self.remember(anchor, &node, 1);
                return Ok(node);
            }
            Event::Alias(anchor) => {
                let Some((node, size)) = self.anchors.get(&anchor).cloned() else {
                    return Err(SyntaxError {
                        pos,
                        message: "alias to an anchor that is not defined".into(),
                    });
                };
                self.count(size, pos)?;
                return Ok(node);
            }
            Event::SequenceStart(anchor, tag) => {
                let mut items = Vec::new();
                loop {
                    let (event, item_pos) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(event, item_pos)?);
                }
                let node = Rc::new(Node {
                    pos,
                    value: NodeValue::List(items),
                    tag: tag.map(|tag| tag.to_string()),
                });
                (node, anchor)
            }
            Event::MappingStart(anchor, tag) => {
                let mut pairs = Vec::new();
                loop {
                    let (event, key_pos) = self.next()?;
                    if event == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(event, key_pos)?;
                    let (event, value_pos) = self.next()?;
                    let value = self.node(event, value_pos)?;
                    pairs.push((key, value));
                }
                let node = Rc::new(Node {
                    pos,
                    value: NodeValue::Map(pairs),
                    tag: tag.map(|tag| tag.to_string()),
                });
                (node, anchor)
            }
            other => {
                return Err(SyntaxError {
                    pos,
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        let (node, anchor) = node;
        let size = self.expanded - before;
        self.remember(anchor, &node, size);
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_remember_where_they_were_written() {
        let root = parse("a: 1\nb:\n  - x\n  - \"y\"\n").unwrap().unwrap();
        let NodeValue::Map(pairs) = &root.value else {
            panic!("{root:?}")
        };
        assert_eq!(pairs[1].0.pos, Pos { line: 2, column: 1 });
        let NodeValue::List(items) = &pairs[1].1.value else {
            panic!()
        };
        assert_eq!(items[1].pos, Pos { line: 4, column: 5 });
        assert_eq!(
            items[1].value,
            NodeValue::Scalar {
                text: "y".into(),
                plain: false
            }
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let previous = level - 1;
            text.push_str(&format!(
                "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
            ));
        }
        let error = parse(&text).unwrap_err();
        assert!(error.message.contains("aliases"), "{error:?}");
    }

    #[test]
    fn empty_text_has_no_document() {
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn syntax_errors_are_located() {
        let error = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(error.pos.line >= 1, "{error:?}");
    }
}
