//! A YAML document as a tree, built from yaml-rust2's events with bounds an untrusted
//! manifest cannot get past: nesting depth, and the size the document reaches through
//! aliases. Integers keep their digits (any size); plain scalars resolve by the YAML 1.2
//! core schema.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Collections nested deeper than this are refused (`serde_yaml`'s recursion limit).
pub(crate) const MAX_NESTING: usize = 128;

/// Nodes a document may expand to through aliases (see `MAX_ALIAS_EXPANSION`).
pub(crate) use crate::manifest::MAX_ALIAS_EXPANSION;

/// Scalar bytes a document may expand to through aliases: sixteen times the largest
/// manifest, so that a few aliases of long strings still load.
pub(crate) const MAX_ALIAS_EXPANSION_BYTES: usize = 16 * 1024 * 1024;

/// A YAML node. Collections are shared, so an alias costs no copy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer, exactly as written (normalised to decimal).
    Int(serde_json::Number),
    /// A floating-point number, as written (`1.10`, `.inf`).
    Float(String),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Rc<Vec<Node>>),
    /// A mapping, in document order.
    Map(Rc<Vec<(Node, Node)>>),
}

impl Node {
    /// The entries, when this is a mapping.
    pub(crate) fn as_map(&self) -> Option<&[(Node, Node)]> {
        match self {
            Self::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value of the string key `key`, when this is a mapping that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| matches!(k, Self::Str(s) if s == key)).map(|(_, v)| v)
    }

    /// Whether this is `null`.
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The float's value; `None` for `.nan` and the infinities, which JSON cannot carry.
    pub(crate) fn finite_float(raw: &str) -> Option<f64> {
        raw.parse::<f64>().ok().filter(|f| f.is_finite())
    }
}

/// Why a document was not turned into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum YamlError {
    /// Not YAML, or YAML this reader does not take (several documents, duplicate keys).
    Syntax(String),
    /// Collections nested deeper than [`MAX_NESTING`].
    TooDeep,
    /// More than [`MAX_ALIAS_EXPANSION`] nodes after expanding aliases.
    AliasNodes,
    /// More than [`MAX_ALIAS_EXPANSION_BYTES`] scalar bytes after expanding aliases.
    AliasBytes,
}

/// A collection being built.
struct Frame {
    /// The sequence's items, or the mapping's keys and values in turn.
    items: Vec<Node>,
    is_map: bool,
    anchor: usize,
    /// The totals when the collection started, to size it for its anchor.
    nodes_before: usize,
    bytes_before: usize,
    /// The mapping's string keys so far.
    keys: HashSet<String>,
}

/// The size of a subtree, as an alias to it adds to the document.
#[derive(Clone, Copy)]
struct Size {
    nodes: usize,
    bytes: usize,
}

/// Parses one YAML document (none gives `Null`).
pub(crate) fn parse_document(text: &str) -> Result<Node, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, Size)> = HashMap::new();
    let (mut nodes, mut bytes, mut aliased) = (0usize, 0usize, false);
    let mut root: Option<Node> = None;
    let mut documents = 0;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError::Syntax(e.to_string()))?;
        let node = match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::Syntax(format!(
                        "a second document starts at {}; a manifest is one document",
                        at(mark)
                    )));
                }
                continue;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => continue,
            Event::Alias(id) => {
                let Some((node, size)) = anchors.get(&id) else {
                    return Err(YamlError::Syntax(format!("unknown alias at {}", at(mark))));
                };
                nodes = nodes.saturating_add(size.nodes);
                bytes = bytes.saturating_add(size.bytes);
                aliased = true;
                node.clone()
            }
            Event::Scalar(value, style, anchor, tag) => {
                nodes += 1;
                bytes += value.len();
                let is_str_tag = tag.is_some_and(|t| t.handle == "tag:yaml.org,2002:" && t.suffix == "str");
                let node = if style == TScalarStyle::Plain && !is_str_tag {
                    resolve_plain(value)
                } else {
                    Node::Str(value)
                };
                if anchor > 0 {
                    anchors.insert(anchor, (node.clone(), Size { nodes: 1, bytes: node_bytes(&node) }));
                }
                node
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_NESTING {
                    return Err(YamlError::TooDeep);
                }
                let is_map = matches!(event, Event::MappingStart(..));
                stack.push(Frame {
                    items: Vec::new(),
                    is_map,
                    anchor,
                    nodes_before: nodes,
                    bytes_before: bytes,
                    keys: HashSet::new(),
                });
                nodes += 1;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else {
                    return Err(YamlError::Syntax(format!("unbalanced collection end at {}", at(mark))));
                };
                let node = if frame.is_map {
                    let mut entries = Vec::with_capacity(frame.items.len() / 2);
                    let mut items = frame.items.into_iter();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        entries.push((k, v));
                    }
                    Node::Map(Rc::new(entries))
                } else {
                    Node::Seq(Rc::new(frame.items))
                };
                if frame.anchor > 0 {
                    let size = Size { nodes: nodes - frame.nodes_before, bytes: bytes - frame.bytes_before };
                    anchors.insert(frame.anchor, (node.clone(), size));
                }
                node
            }
        };
        if aliased && nodes > MAX_ALIAS_EXPANSION {
            return Err(YamlError::AliasNodes);
        }
        if aliased && bytes > MAX_ALIAS_EXPANSION_BYTES {
            return Err(YamlError::AliasBytes);
        }
        match stack.last_mut() {
            Some(frame) => {
                let is_key = frame.is_map && frame.items.len() % 2 == 0;
                if is_key
                    && let Node::Str(key) = &node
                    && !frame.keys.insert(key.clone())
                {
                    return Err(YamlError::Syntax(format!("duplicate key `{key}` at {}", at(mark))));
                }
                frame.items.push(node);
            }
            None => root = Some(node),
        }
    }
    Ok(root.unwrap_or(Node::Null))
}

fn at(mark: Marker) -> String {
    format!("line {} column {}", mark.line(), mark.col() + 1)
}

fn node_bytes(node: &Node) -> usize {
    match node {
        Node::Str(s) | Node::Float(s) => s.len(),
        _ => 0,
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema, as `serde_yaml` does.
fn resolve_plain(value: String) -> Node {
    match value.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Node::Null,
        "true" | "True" | "TRUE" => return Node::Bool(true),
        "false" | "False" | "FALSE" => return Node::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | ".nan"
        | ".NaN" | ".NAN" => return Node::Float(value),
        _ => {}
    }
    if let Some(n) = resolve_int(&value) {
        return Node::Int(n);
    }
    let is_float = value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && value.parse::<f64>().is_ok();
    if is_float { Node::Float(value) } else { Node::Str(value) }
}

/// `[-+]?[0-9]+` of any size, or `0x`/`0o`/`0b` up to 128 bits.
fn resolve_int(value: &str) -> Option<serde_json::Number> {
    let (negative, unsigned) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let radix = |prefix: &str, radix: u32| {
        let digits = unsigned.strip_prefix(prefix)?;
        u128::from_str_radix(digits, radix).ok().filter(|_| !digits.starts_with('+'))
    };
    let digits = if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)).or_else(|| radix("0b", 2)) {
        n.to_string()
    } else if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = unsigned.trim_start_matches('0');
        if trimmed.is_empty() { "0" } else { trimmed }.to_owned()
    } else {
        return None;
    };
    let literal = if negative && digits != "0" { format!("-{digits}") } else { digits };
    literal.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(text: &str) -> Node {
        Node::Int(text.parse().unwrap())
    }

    #[test]
    fn scalars_resolve_by_the_core_schema_and_integers_stay_exact() {
        let doc = parse_document(
            "a: 12345678901234567890123\nb: -98765432109876543210987654321\nc: 007\nd: 0x1F\ne: 1.10\nf: ~\ng: True\nh: '12'\ni: !!str 12\nj: .inf\nk: 1e3\nl: abc\nm: -0\n",
        )
        .unwrap();
        let want = [
            ("a", int("12345678901234567890123")),
            ("b", int("-98765432109876543210987654321")),
            ("c", int("7")),
            ("d", int("31")),
            ("e", Node::Float("1.10".into())),
            ("f", Node::Null),
            ("g", Node::Bool(true)),
            ("h", Node::Str("12".into())),
            ("i", Node::Str("12".into())),
            ("j", Node::Float(".inf".into())),
            ("k", Node::Float("1e3".into())),
            ("l", Node::Str("abc".into())),
            ("m", int("0")),
        ];
        for (key, node) in want {
            assert_eq!(doc.get(key), Some(&node), "{key}");
        }
    }

    #[test]
    fn aliases_are_expanded_and_shared() {
        let doc = parse_document("base: &b {x: 1}\nuse: *b\nlist: [&s hi, *s]\n").unwrap();
        assert_eq!(doc.get("use"), doc.get("base"));
        assert_eq!(doc.get("list"), Some(&Node::Seq(Rc::new(vec![Node::Str("hi".into()); 2]))));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse_document("a: 1\n---\nb: 2\n"),
            Err(YamlError::Syntax(
                "a second document starts at line 2 column 1; a manifest is one document".into()
            ))
        );
        assert!(
            matches!(parse_document("a: 1\na: 2\n"), Err(YamlError::Syntax(m)) if m.contains("duplicate key `a`"))
        );
        assert!(matches!(parse_document("a: *nope\n"), Err(YamlError::Syntax(_))));
        assert_eq!(parse_document(&"- ".repeat(200)), Err(YamlError::TooDeep));
        assert!(parse_document(&"- ".repeat(120)).is_ok());
        let long = "x".repeat(1 << 20);
        let bytes_bomb = format!("a: &a {long}\nb: [{}]\n", ["*a"; 20].join(", "));
        assert_eq!(parse_document(&bytes_bomb), Err(YamlError::AliasBytes));
        assert_eq!(parse_document(""), Ok(Node::Null));
    }
}
