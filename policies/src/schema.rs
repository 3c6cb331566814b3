//! The shape of a policy file, and a walk over the located YAML tree that finds every
//! structural problem at once: unknown keys (with "did you mean"), missing keys, wrong
//! types, bad units, duplicate keys.
//!
//! When it finds problems, the walk also builds a typed `yaml_serde::Value` in which each
//! broken value is replaced by a harmless placeholder (and remembered as broken), so the
//! semantic checks can still run and report cross-reference problems in the same pass.
//! [`locate`] finds where a path (`classes[2].steering.never[0]`) was written, for those
//! checks to point at.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use yaml_serde::{Mapping, Value};

use crate::model::PortRange;
use crate::source::{Node, NodeValue, Pos};
use crate::suggest;
use crate::units::{Dscp, Percent, Rate, Reflector, Span, UnitError};

/// The shape a YAML node must have.
#[derive(Debug)]
pub enum Shape {
    Struct(&'static StructShape),
    List(&'static Shape),
    Optional(&'static Shape),
    Scalar(Scalar),
}

/// A mapping with known keys.
#[derive(Debug)]
pub struct StructShape {
    /// What the operator calls it ("class", "line"), for messages.
    pub noun: &'static str,
    pub fields: &'static [Field],
}

/// One key of a mapping.
#[derive(Debug)]
pub struct Field {
    pub key: &'static str,
    pub shape: Shape,
    pub required: bool,
    /// What the key is for, shown when it is missing.
    pub about: &'static str,
}

/// Scalar kinds and how they are read.
#[derive(Debug, Clone, Copy)]
pub enum Scalar {
    Text,
    /// A whole number up to `max`.
    Int {
        max: u64,
    },
    Float,
    Bool,
    Choice(&'static [&'static str]),
    Span,
    Percent,
    Rate,
    Dscp,
    Prefix,
    Address,
    Address6,
    Port,
    /// `address` or `address:port` (a probe reflector).
    Endpoint,
}

const fn field(key: &'static str, shape: Shape, about: &'static str) -> Field {
    Field {
        key,
        shape,
        required: false,
        about,
    }
}

const fn required(key: &'static str, shape: Shape, about: &'static str) -> Field {
    Field {
        key,
        shape,
        required: true,
        about,
    }
}

static TEXT: Shape = Shape::Scalar(Scalar::Text);
static PREFIX: Shape = Shape::Scalar(Scalar::Prefix);
static PORT: Shape = Shape::Scalar(Scalar::Port);
static DSCP: Shape = Shape::Scalar(Scalar::Dscp);
static SPAN: Shape = Shape::Scalar(Scalar::Span);
static PERCENT: Shape = Shape::Scalar(Scalar::Percent);
static ADDRESS: Shape = Shape::Scalar(Scalar::Address);
static ADDRESS6: Shape = Shape::Scalar(Scalar::Address6);
static ENDPOINT: Shape = Shape::Scalar(Scalar::Endpoint);
static PROTOCOL: Shape = Shape::Scalar(Scalar::Choice(&[
    "tcp", "udp", "icmp", "icmpv6", "sctp", "gre", "esp",
]));
static SITE_SHAPE: Shape = Shape::Struct(&SITE);
static LINE_SHAPE: Shape = Shape::Struct(&LINE);
static CLASS_SHAPE: Shape = Shape::Struct(&CLASS);
static MATCH_SHAPE: Shape = Shape::Struct(&MATCH_RULE);
static SLA_SHAPE: Shape = Shape::Struct(&SLA);

/// The whole file.
pub static POLICY: StructShape = StructShape {
    noun: "policy",
    fields: &[
        field(
            "name",
            Shape::Optional(&TEXT),
            "a name shown in the dashboard",
        ),
        required(
            "sites",
            Shape::List(&SITE_SHAPE),
            "the list of sites and their WAN lines",
        ),
        required(
            "classes",
            Shape::List(&CLASS_SHAPE),
            "the list of traffic classes",
        ),
        field(
            "default_class",
            Shape::Optional(&TEXT),
            "the class for unmatched traffic",
        ),
        field("timers", Shape::Struct(&TIMERS), "measurement timers"),
    ],
};

static SITE: StructShape = StructShape {
    noun: "site",
    fields: &[
        required("name", Shape::Scalar(Scalar::Text), "the site's name"),
        required(
            "kind",
            Shape::Scalar(Scalar::Choice(&["branch", "hub", "dc"])),
            "branch, hub or dc",
        ),
        field(
            "lan",
            Shape::List(&PREFIX),
            "the LAN prefixes behind the site",
        ),
        required("lines", Shape::List(&LINE_SHAPE), "the site's WAN lines"),
    ],
};

static LINE: StructShape = StructShape {
    noun: "line",
    fields: &[
        required(
            "name",
            Shape::Scalar(Scalar::Text),
            "the line's name, e.g. `mpls`",
        ),
        required(
            "transport",
            Shape::Scalar(Scalar::Choice(&["mpls", "internet", "lte", "satellite"])),
            "mpls, internet, lte or satellite",
        ),
        required(
            "interface",
            Shape::Scalar(Scalar::Text),
            "the Linux interface the line leaves by, e.g. `wan0`",
        ),
        field("gateway", Shape::Optional(&ADDRESS), "the IPv4 next hop"),
        field("gateway6", Shape::Optional(&ADDRESS6), "the IPv6 next hop"),
        required(
            "up",
            Shape::Scalar(Scalar::Rate),
            "the upstream capacity, e.g. `50mbit`",
        ),
        required(
            "down",
            Shape::Scalar(Scalar::Rate),
            "the downstream capacity, e.g. `100mbit`",
        ),
        field("cost", Shape::Scalar(Scalar::Float), "relative cost"),
        field(
            "preference",
            Shape::Scalar(Scalar::Int {
                max: u32::MAX as u64,
            }),
            "lower is preferred",
        ),
        field(
            "reflector",
            Shape::Optional(&ENDPOINT),
            "where the line's probes go, `address[:port]` (default: the gateway, port 862)",
        ),
        field(
            "probe_interval",
            Shape::Optional(&SPAN),
            "time between probes on this line (default: timers.probe_interval)",
        ),
        field(
            "site",
            Shape::Optional(&TEXT),
            "on a hub: the site this line reaches",
        ),
    ],
};

static CLASS: StructShape = StructShape {
    noun: "class",
    fields: &[
        required("name", Shape::Scalar(Scalar::Text), "the class's name"),
        required(
            "priority",
            Shape::Scalar(Scalar::Int {
                max: u8::MAX as u64,
            }),
            "strict priority, 1 served first",
        ),
        field(
            "dscp",
            Shape::Scalar(Scalar::Dscp),
            "the DSCP the edge marks",
        ),
        field(
            "match",
            Shape::List(&MATCH_SHAPE),
            "the rules that put traffic in the class",
        ),
        field("sla", Shape::Optional(&SLA_SHAPE), "what the class needs"),
        field(
            "steering",
            Shape::Struct(&STEERING),
            "where the class may go",
        ),
        field(
            "bandwidth",
            Shape::Struct(&BANDWIDTH),
            "the class's share of a line",
        ),
    ],
};

static MATCH_RULE: StructShape = StructShape {
    noun: "match rule",
    fields: &[
        field("prefixes", Shape::List(&PREFIX), "IP prefixes"),
        field("ports", Shape::List(&PORT), "ports or port ranges"),
        field("protocols", Shape::List(&PROTOCOL), "IP protocols"),
        field("dscp", Shape::List(&DSCP), "DSCP already on the packet"),
        field("apps", Shape::List(&TEXT), "application names"),
        field("domains", Shape::List(&TEXT), "domain suffixes"),
    ],
};

static SLA: StructShape = StructShape {
    noun: "SLA",
    fields: &[
        field("latency", Shape::Optional(&SPAN), "maximum one-way latency"),
        field("loss", Shape::Optional(&PERCENT), "maximum loss"),
        field("jitter", Shape::Optional(&SPAN), "maximum jitter"),
    ],
};

static STEERING: StructShape = StructShape {
    noun: "steering",
    fields: &[
        field("prefer", Shape::List(&TEXT), "lines in order of preference"),
        field("never", Shape::List(&TEXT), "lines never to use"),
        field(
            "load_sharing",
            Shape::Scalar(Scalar::Bool),
            "spread over every good line",
        ),
    ],
};

static BANDWIDTH: StructShape = StructShape {
    noun: "bandwidth",
    fields: &[
        field(
            "guaranteed",
            Shape::Scalar(Scalar::Percent),
            "share always available",
        ),
        field(
            "ceiling",
            Shape::Scalar(Scalar::Percent),
            "share never exceeded",
        ),
    ],
};

static TIMERS: StructShape = StructShape {
    noun: "timers section",
    fields: &[
        field(
            "probe_interval",
            Shape::Scalar(Scalar::Span),
            "gap between probes",
        ),
        field(
            "down_after_missed",
            Shape::Scalar(Scalar::Int {
                max: u32::MAX as u64,
            }),
            "missed probes before a line is down",
        ),
        field(
            "hold_down",
            Shape::Scalar(Scalar::Span),
            "wait before moving back",
        ),
        field(
            "min_improvement",
            Shape::Scalar(Scalar::Percent),
            "gain needed to move",
        ),
        field("dampening", Shape::Struct(&DAMPENING), "flap dampening"),
    ],
};

static DAMPENING: StructShape = StructShape {
    noun: "dampening",
    fields: &[
        field(
            "penalty",
            Shape::Scalar(Scalar::Int {
                max: u32::MAX as u64,
            }),
            "penalty per failure",
        ),
        field(
            "half_life",
            Shape::Scalar(Scalar::Span),
            "penalty half-life",
        ),
        field(
            "suppress",
            Shape::Scalar(Scalar::Int {
                max: u32::MAX as u64,
            }),
            "suppress threshold",
        ),
        field(
            "reuse",
            Shape::Scalar(Scalar::Int {
                max: u32::MAX as u64,
            }),
            "reuse threshold",
        ),
        field(
            "max_suppress",
            Shape::Scalar(Scalar::Span),
            "longest suppression",
        ),
    ],
};

/// A problem found at a known position.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

/// Where a path's key and value were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub key: Option<Pos>,
    pub value: Pos,
}

/// What the walk found.
#[derive(Debug)]
pub struct Walked {
    /// When there were problems: the typed value with placeholders for broken parts
    /// (`None` when the root itself is not a mapping). Without problems the value is not
    /// built (serde reads the text directly) and this is `None`.
    pub value: Option<Value>,
    pub problems: Vec<Problem>,
    /// Paths whose values were replaced or dropped.
    pub broken: Vec<String>,
}

/// Walks the tree against the policy shape.
pub fn walk(root: &Node) -> Walked {
    // The clean case (every policy in production) only validates; the value with
    // placeholders is built by a second walk when something is wrong.
    let mut walker = Walker::new(false);
    walker.structure(root, &POLICY);
    if walker.problems.is_empty() {
        return Walked {
            value: None,
            problems: Vec::new(),
            broken: Vec::new(),
        };
    }
    walk_with_value(root)
}

/// Walks the tree and always builds the value (with placeholders where broken).
pub fn walk_with_value(root: &Node) -> Walked {
    let mut walker = Walker::new(true);
    let value = walker.structure(root, &POLICY);
    Walked {
        value,
        problems: walker.problems,
        broken: walker.broken,
    }
}

/// Where a path (`sites[0].lines[2].up`) was written, if it was.
pub fn locate(root: &Node, path: &str) -> Option<Place> {
    let mut place = Place {
        key: None,
        value: root.pos,
    };
    let mut node = root;
    for segment in segments(path) {
        let next = match (segment, &node.value) {
            (Segment::Key(key), NodeValue::Map(pairs)) => pairs.iter().find_map(|(k, v)| {
                matches!(&k.value, NodeValue::Scalar { text, .. } if text == key)
                    .then(|| (Some(k.pos), v))
            }),
            (Segment::Index(index), NodeValue::List(items)) => {
                items.get(index).map(|item| (None, item))
            }
            _ => None,
        };
        let (key, value) = next?;
        place = Place {
            key,
            value: value.pos,
        };
        node = value;
    }
    Some(place)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `classes[2].match[0]` → `classes`, 2, `match`, 0.
fn segments(path: &str) -> impl Iterator<Item = Segment<'_>> {
    path.split('.')
        .filter(|part| !part.is_empty())
        .flat_map(|part| {
            let (key, rest) = part.split_once('[').unwrap_or((part, ""));
            let indices = rest
                .split('[')
                .filter_map(|index| index.trim_end_matches(']').parse().ok())
                .map(Segment::Index);
            (!key.is_empty())
                .then_some(Segment::Key(key))
                .into_iter()
                .chain(indices)
        })
}

struct Walker {
    problems: Vec<Problem>,
    broken: Vec<String>,
    /// The path of the node being walked, as segments (formatted only when needed).
    stack: Vec<Segment<'static>>,
    /// Whether to build the value (second walk, after problems were found).
    build: bool,
}

/// Splits a unit error ("`x` is not a duration; write …") into message and hint.
fn split_unit_error(error: UnitError) -> (String, Option<String>) {
    match error.0.split_once("; ") {
        Some((message, hint)) => (message.to_string(), Some(hint.to_string())),
        None => (error.0, None),
    }
}

impl Walker {
    fn new(build: bool) -> Walker {
        Walker {
            problems: Vec::new(),
            broken: Vec::new(),
            stack: Vec::new(),
            build,
        }
    }

    /// The current path as text, e.g. `classes[2].sla`.
    fn path(&self) -> String {
        let mut path = String::new();
        for segment in &self.stack {
            match segment {
                Segment::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Segment::Index(index) => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }

    /// Marks the current path, extended by `key` if given, as broken.
    fn mark_broken(&mut self, key: Option<&'static str>) {
        if let Some(key) = key {
            self.stack.push(Segment::Key(key));
        }
        let path = self.path();
        self.broken.push(path);
        if key.is_some() {
            self.stack.pop();
        }
    }

    fn problem(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.problems.push(Problem {
            pos,
            message: message.into(),
            hint,
        });
    }

    fn check_tag(&mut self, node: &Node) {
        if let Some(tag) = &node.tag {
            self.problem(
                node.pos,
                format!("YAML tag `{tag}` is not used in policies"),
                Some("remove the tag; every value's type follows from its key".into()),
            );
        }
    }

    fn value(&mut self, node: &Node, shape: &Shape) -> Option<Value> {
        self.check_tag(node);
        match shape {
            Shape::Struct(structure) => self.structure(node, structure),
            Shape::List(item) => self.list(node, item),
            Shape::Optional(inner) => {
                if node.is_null() {
                    Some(Value::Null)
                } else {
                    self.value(node, inner)
                }
            }
            Shape::Scalar(kind) => self.scalar(node, *kind),
        }
    }

    fn structure(&mut self, node: &Node, shape: &StructShape) -> Option<Value> {
        let NodeValue::Map(pairs) = &node.value else {
            let keys: Vec<&str> = shape.fields.iter().map(|field| field.key).collect();
            self.problem(
                node.pos,
                format!(
                    "expected the {} as a mapping, found {}",
                    shape.noun,
                    node.kind_name()
                ),
                Some(format!("its keys are {}", suggest::list(&keys))),
            );
            return None;
        };
        let mut mapping = Mapping::new();
        let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
        let mut misspelt: Vec<&str> = Vec::new();
        for (key_node, value_node) in pairs {
            let NodeValue::Scalar { text: key, .. } = &key_node.value else {
                self.problem(
                    key_node.pos,
                    format!("a {} key must be a plain word", shape.noun),
                    None,
                );
                continue;
            };
            let Some(field) = shape.fields.iter().find(|field| field.key == key) else {
                if let Some(meant) = self.unknown_key(key_node.pos, key, shape) {
                    misspelt.push(meant);
                }
                continue;
            };
            if let Some(first) = seen.get(field.key) {
                self.problem(
                    key_node.pos,
                    format!("`{key}` is given twice in this {}", shape.noun),
                    Some(format!(
                        "the first is on line {}; keep one of them",
                        first.line
                    )),
                );
                continue;
            }
            seen.insert(field.key, key_node.pos);
            self.stack.push(Segment::Key(field.key));
            let value = self.value(value_node, &field.shape);
            if value.is_none() {
                self.mark_broken(None);
            }
            self.stack.pop();
            let value = match value {
                Some(value) => Some(value),
                None if field.required => Some(placeholder(&field.shape)),
                None if matches!(field.shape, Shape::Optional(_)) => Some(Value::Null),
                None => None,
            };
            if let Some(value) = value
                && self.build
            {
                mapping.insert(Value::String(field.key.into()), value);
            }
        }
        for meant in &misspelt {
            if !seen.contains_key(meant)
                && !shape.fields.iter().any(|f| f.key == *meant && f.required)
            {
                // The default now stands where the operator meant a value: checks about
                // that field would judge the default, not what was written.
                self.mark_broken(Some(meant));
            }
        }
        for field in shape.fields.iter().filter(|field| field.required) {
            if !seen.contains_key(field.key) {
                if misspelt.contains(&field.key) {
                    // Already reported as "unknown key `prioity`: did you mean `priority`?".
                    mapping.insert(Value::String(field.key.into()), placeholder(&field.shape));
                    self.mark_broken(Some(field.key));
                    continue;
                }
                self.problem(
                    node.pos,
                    format!("this {} has no `{}`", shape.noun, field.key),
                    Some(format!("add `{}:` — {}", field.key, field.about)),
                );
                mapping.insert(Value::String(field.key.into()), placeholder(&field.shape));
                self.mark_broken(Some(field.key));
            }
        }
        Some(Value::Mapping(mapping))
    }

    /// Reports an unknown key; returns the key it is probably a misspelling of.
    fn unknown_key(&mut self, pos: Pos, key: &str, shape: &StructShape) -> Option<&'static str> {
        let keys: Vec<&'static str> = shape.fields.iter().map(|field| field.key).collect();
        let near = suggest::closest(key, keys.iter().copied());
        let hint = if key == "<<" {
            "YAML merge keys are not supported; write the keys out".to_string()
        } else if let Some(near) = near {
            format!("did you mean `{near}`?")
        } else if let Some(parent) = shape.fields.iter().find(|field| {
            nested_struct(&field.shape)
                .is_some_and(|inner| inner.fields.iter().any(|inner| inner.key == key))
        }) {
            format!("`{key}` belongs inside `{}:`", parent.key)
        } else {
            format!("a {} has {}", shape.noun, suggest::list(&keys))
        };
        self.problem(
            pos,
            format!("unknown key `{key}` in {}", article(shape.noun)),
            Some(hint),
        );
        near
    }

    fn list(&mut self, node: &Node, item: &Shape) -> Option<Value> {
        let NodeValue::List(items) = &node.value else {
            let hint = match &node.value {
                NodeValue::Scalar { text, .. } if !node.is_null() => {
                    format!("write a list, e.g. `[{text}]`")
                }
                _ => "write a list, e.g. `[a, b]`, or `[]` for none".to_string(),
            };
            self.problem(
                node.pos,
                format!("expected a list, found {}", node.kind_name()),
                Some(hint),
            );
            return None;
        };
        let mut values = Vec::with_capacity(if self.build { items.len() } else { 0 });
        for (index, item_node) in items.iter().enumerate() {
            self.stack.push(Segment::Index(index));
            let value = self.value(item_node, item);
            if value.is_none() {
                self.mark_broken(None);
            }
            self.stack.pop();
            if self.build {
                values.push(value.unwrap_or_else(|| placeholder(item)));
            }
        }
        Some(Value::Sequence(values))
    }

    fn scalar(&mut self, node: &Node, kind: Scalar) -> Option<Value> {
        let expected = expected(kind);
        let NodeValue::Scalar { text, plain } = &node.value else {
            self.problem(
                node.pos,
                format!("expected {expected}, found {}", node.kind_name()),
                None,
            );
            return None;
        };
        let (text, plain) = (text.as_str(), *plain);
        if node.is_null() {
            self.problem(
                node.pos,
                format!("expected {expected}, found nothing"),
                None,
            );
            return None;
        }
        let unit = |result: Result<(), UnitError>| result.map(|()| Value::String(text.into()));
        let result = match kind {
            Scalar::Text => Ok(Value::String(text.into())),
            Scalar::Int { max } => {
                return self.int(node, text, plain, max);
            }
            Scalar::Float => match text.parse::<f64>() {
                Ok(number) if plain && number.is_finite() => Ok(Value::Number(number.into())),
                _ => Err((
                    format!("expected a number, found `{text}`"),
                    Some("write a plain number such as `1` or `2.5`".into()),
                )),
            },
            Scalar::Bool => match (plain, text) {
                (true, "true" | "True" | "TRUE") => Ok(Value::Bool(true)),
                (true, "false" | "False" | "FALSE") => Ok(Value::Bool(false)),
                _ => Err((format!("expected true or false, found `{text}`"), None)),
            },
            Scalar::Choice(choices) => {
                if choices.contains(&text) {
                    Ok(Value::String(text.into()))
                } else {
                    let hint = match suggest::closest(text, choices.iter().copied()) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!("write one of {}", suggest::list(choices)),
                    };
                    Err((format!("`{text}` is not {expected}"), Some(hint)))
                }
            }
            Scalar::Span => unit(text.parse::<Span>().map(drop)).map_err(split_unit_error),
            Scalar::Percent => unit(text.parse::<Percent>().map(drop)).map_err(split_unit_error),
            Scalar::Rate => unit(text.parse::<Rate>().map(drop)).map_err(split_unit_error),
            Scalar::Dscp => unit(text.parse::<Dscp>().map(drop)).map_err(split_unit_error),
            Scalar::Port => unit(text.parse::<PortRange>().map(drop)).map_err(split_unit_error),
            Scalar::Endpoint => unit(text.parse::<Reflector>().map(drop)).map_err(split_unit_error),
            Scalar::Prefix => match text.parse::<IpNet>() {
                Ok(_) => Ok(Value::String(text.into())),
                Err(_) if text.parse::<IpAddr>().is_ok() => Err((
                    format!("`{text}` is an address, not a prefix"),
                    Some(format!(
                        "add the prefix length, e.g. `{text}/{}`",
                        if text.contains(':') { 128 } else { 32 }
                    )),
                )),
                Err(_) => Err((
                    format!("`{text}` is not an IP prefix"),
                    Some(
                        "write an address and a length, e.g. `10.1.0.0/24` or `2001:db8:1::/64`"
                            .into(),
                    ),
                )),
            },
            Scalar::Address => match text.parse::<IpAddr>() {
                Ok(_) => Ok(Value::String(text.into())),
                Err(_) => Err((
                    format!("`{text}` is not an IP address"),
                    Some("write e.g. `192.0.2.1`".into()),
                )),
            },
            Scalar::Address6 => match text.parse::<Ipv6Addr>() {
                Ok(_) => Ok(Value::String(text.into())),
                Err(_) => Err((
                    format!("`{text}` is not an IPv6 address"),
                    Some("write e.g. `2001:db8::1`".into()),
                )),
            },
        };
        match result {
            Ok(value) => Some(value),
            Err((message, hint)) => {
                self.problem(node.pos, message, hint);
                None
            }
        }
    }

    fn int(&mut self, node: &Node, text: &str, plain: bool, max: u64) -> Option<Value> {
        match text.parse::<u64>() {
            Ok(number) if plain && number <= max => Some(Value::Number(number.into())),
            Ok(number) if plain => {
                self.problem(
                    node.pos,
                    format!("{number} is too large here"),
                    Some(format!("the largest allowed is {max}")),
                );
                None
            }
            Ok(_) => {
                self.problem(
                    node.pos,
                    format!("expected a whole number, found the text \"{text}\""),
                    Some("remove the quotes".into()),
                );
                None
            }
            Err(_) => {
                self.problem(
                    node.pos,
                    format!("expected a whole number, found `{text}`"),
                    None,
                );
                None
            }
        }
    }
}

fn article(noun: &str) -> String {
    let vowel = noun.starts_with(['a', 'e', 'i', 'o', 'u', 'S']);
    format!("{} {noun}", if vowel { "an" } else { "a" })
}

fn nested_struct(shape: &Shape) -> Option<&'static StructShape> {
    match shape {
        Shape::Struct(inner) => Some(inner),
        Shape::Optional(inner) | Shape::List(inner) => nested_struct(inner),
        Shape::Scalar(_) => None,
    }
}

fn expected(kind: Scalar) -> String {
    match kind {
        Scalar::Text => "a name or text".into(),
        Scalar::Int { .. } => "a whole number".into(),
        Scalar::Float => "a number".into(),
        Scalar::Bool => "true or false".into(),
        Scalar::Choice(choices) => format!("one of {}", suggest::list(choices)),
        Scalar::Span => "a duration such as `50ms`".into(),
        Scalar::Percent => "a percentage such as `10%`".into(),
        Scalar::Rate => "a bit rate such as `50mbit`".into(),
        Scalar::Dscp => "a DSCP such as `EF` or `AF41`".into(),
        Scalar::Prefix => "an IP prefix such as `10.1.0.0/24`".into(),
        Scalar::Address => "an IP address".into(),
        Scalar::Address6 => "an IPv6 address".into(),
        Scalar::Port => "a port such as `443` or a range `16384-32767`".into(),
        Scalar::Endpoint => "an address or address:port such as `192.0.2.1:862`".into(),
    }
}

/// A valid stand-in for a broken value, chosen to trip as few other checks as possible.
fn placeholder(shape: &Shape) -> Value {
    match shape {
        Shape::Struct(structure) => {
            let mut mapping = Mapping::new();
            for field in structure.fields.iter().filter(|field| field.required) {
                mapping.insert(Value::String(field.key.into()), placeholder(&field.shape));
            }
            Value::Mapping(mapping)
        }
        Shape::List(_) => Value::Sequence(Vec::new()),
        Shape::Optional(_) => Value::Null,
        Shape::Scalar(kind) => match kind {
            Scalar::Text => Value::String(String::new()),
            Scalar::Int { .. } => Value::Number(1u64.into()),
            Scalar::Float => Value::Number(1.0f64.into()),
            Scalar::Bool => Value::Bool(false),
            Scalar::Choice(choices) => Value::String(choices[0].into()),
            Scalar::Span => Value::String("1s".into()),
            Scalar::Percent => Value::String("0%".into()),
            Scalar::Rate => Value::String("1gbit".into()),
            Scalar::Dscp => Value::String("0".into()),
            Scalar::Prefix => Value::String("255.255.255.255/32".into()),
            Scalar::Address => Value::String("192.0.2.255".into()),
            Scalar::Address6 => Value::String("2001:db8::ffff".into()),
            Scalar::Port => Value::String("0".into()),
            Scalar::Endpoint => Value::String("192.0.2.255".into()),
        },
    }
}

/// The keys a mapping of this shape may hold (for the README test and tooling).
pub fn keys(shape: &StructShape) -> Vec<&'static str> {
    shape.fields.iter().map(|field| field.key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_structs(shape: &'static StructShape, found: &mut Vec<&'static StructShape>) {
        if found.iter().any(|known| std::ptr::eq(*known, shape)) {
            return;
        }
        found.push(shape);
        for field in shape.fields {
            let mut inner = &field.shape;
            loop {
                match inner {
                    Shape::Struct(structure) => {
                        all_structs(structure, found);
                        break;
                    }
                    Shape::List(item) | Shape::Optional(item) => inner = item,
                    Shape::Scalar(_) => break,
                }
            }
        }
    }

    #[test]
    fn paths_lead_to_where_they_were_written() {
        let text = "sites:\n  - name: a\n    lines: [{ name: mpls }, { name: lte }]\nclasses: []\n";
        let root = crate::source::parse(text).unwrap().unwrap();
        let place = locate(&root, "sites[0].lines[1].name").unwrap();
        assert_eq!(
            place.key,
            Some(Pos {
                line: 3,
                column: 31
            })
        );
        assert_eq!(
            place.value,
            Pos {
                line: 3,
                column: 37
            }
        );
        assert_eq!(
            locate(&root, "classes").unwrap().value,
            Pos {
                line: 4,
                column: 10
            }
        );
        assert_eq!(locate(&root, "sites[0].lines[2]"), None);
        assert_eq!(locate(&root, "sites[0].kind"), None);
        assert_eq!(locate(&root, "").unwrap().value, root.pos);
    }

    #[test]
    fn the_readme_documents_every_key() {
        let readme = include_str!("../README.md");
        let mut structs = Vec::new();
        all_structs(&POLICY, &mut structs);
        assert_eq!(structs.len(), 10);
        for structure in structs {
            for key in keys(structure) {
                if structure.noun == "policy" {
                    assert!(
                        readme.contains(&format!("\n{key}:")),
                        "README lacks top-level `{key}`"
                    );
                } else {
                    assert!(
                        readme.contains(&format!("| `{key}` |")),
                        "README's {} table lacks `{key}`",
                        structure.noun
                    );
                }
            }
        }
    }
}
