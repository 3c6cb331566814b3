//! Reading the model straight from the located YAML tree, so a policy is parsed once.
//!
//! [`crate::check`] used to parse the text a second time with `yaml_serde` to build the
//! [`crate::model::Policy`] after the shape walk had passed. This module is a serde
//! `Deserializer` over [`Node`] that reads scalars the way `yaml_serde` does (the same
//! null, boolean, integer and float rules: `0x1f`, `0o17`, `0b1` and `+5` are numbers,
//! `010` is text), so the model it builds is the one `yaml_serde::from_str` would build.
//! It only has to be right when it succeeds: on any error the caller reads the text with
//! `yaml_serde` after all, which gives the exact diagnostic it always gave.

use std::fmt;
use std::num::ParseIntError;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use crate::source::{Node, NodeValue};

/// Why the tree could not be read into the type (the caller falls back to `yaml_serde`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

impl de::Error for Mismatch {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Mismatch(message.to_string())
    }
}

/// Reads `T` from a located tree as `yaml_serde` reads it from the text.
pub fn from_tree<T: DeserializeOwned>(node: &Node) -> Result<T, Mismatch> {
    T::deserialize(Reader(node))
}

/// The deserializer for one node.
#[derive(Clone, Copy)]
struct Reader<'a>(&'a Node);

impl<'a> Reader<'a> {
    /// The scalar's text when it carries no tag (a tagged node is left to `yaml_serde`).
    fn scalar(self) -> Option<(&'a str, bool)> {
        match (&self.0.value, &self.0.tag) {
            (NodeValue::Scalar { text, plain }, None) => Some((text.as_str(), *plain)),
            _ => None,
        }
    }

    fn plain(self) -> Option<&'a str> {
        self.scalar()
            .and_then(|(text, plain)| plain.then_some(text))
    }

    fn mismatch(self, expected: &dyn de::Expected) -> Mismatch {
        let unexpected = match &self.0.value {
            NodeValue::Scalar { text, .. } => de::Unexpected::Str(text),
            NodeValue::List(_) => de::Unexpected::Seq,
            NodeValue::Map(_) => de::Unexpected::Map,
        };
        de::Error::invalid_type(unexpected, expected)
    }
}

impl<'de> de::Deserializer<'de> for Reader<'_> {
    type Error = Mismatch;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        if self.0.tag.is_some() {
            return Err(Mismatch("tagged node".into()));
        }
        match &self.0.value {
            NodeValue::Scalar { text, plain: true } => untagged_scalar(visitor, text),
            NodeValue::Scalar { text, plain: false } => visitor.visit_str(text),
            NodeValue::List(items) => visitor.visit_seq(Items(items.iter())),
            NodeValue::Map(pairs) => visitor.visit_map(Pairs {
                pairs: pairs.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.plain().and_then(parse_bool) {
            Some(boolean) => visitor.visit_bool(boolean),
            None => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self
            .plain()
            .and_then(|text| parse_signed_int(text, i64::from_str_radix))
        {
            Some(int) => visitor.visit_i64(int),
            None => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self
            .plain()
            .and_then(|text| parse_unsigned_int(text, u64::from_str_radix))
        {
            Some(int) => visitor.visit_u64(int),
            None => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.plain().and_then(parse_f64) {
            Some(float) => visitor.visit_f64(float),
            None => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.scalar() {
            Some((text, _)) => visitor.visit_str(text),
            None => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        if self.0.tag.is_some() {
            return Err(Mismatch("tagged node".into()));
        }
        match self.plain() {
            Some(text) if text.is_empty() || is_null(text) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match (&self.0.value, &self.0.tag) {
            (NodeValue::List(items), None) => visitor.visit_seq(Items(items.iter())),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match (&self.0.value, &self.0.tag) {
            (NodeValue::Map(pairs), None) => visitor.visit_map(Pairs {
                pairs: pairs.iter(),
                value: None,
            }),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        // Only unit variants written as a word; anything else is left to `yaml_serde`.
        match self.scalar() {
            Some((text, _)) => visitor.visit_enum(text.into_deserializer()),
            None => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        match self.plain() {
            Some(text) if text.is_empty() || is_null(text) => visitor.visit_unit(),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Mismatch> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Mismatch> {
        visitor.visit_unit()
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Mismatch> {
        Err(Mismatch("bytes are not read from policies".into()))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Mismatch> {
        Err(Mismatch("bytes are not read from policies".into()))
    }

    fn deserialize_i128<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Mismatch> {
        Err(Mismatch(
            "128-bit numbers are not read from policies".into(),
        ))
    }

    fn deserialize_u128<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Mismatch> {
        Err(Mismatch(
            "128-bit numbers are not read from policies".into(),
        ))
    }
}

struct Items<'a>(std::slice::Iter<'a, std::rc::Rc<Node>>);

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = Mismatch;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Mismatch> {
        self.0
            .next()
            .map(|item| seed.deserialize(Reader(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

type Pair = (std::rc::Rc<Node>, std::rc::Rc<Node>);

struct Pairs<'a> {
    pairs: std::slice::Iter<'a, Pair>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Pairs<'_> {
    type Error = Mismatch;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Mismatch> {
        let Some((key, value)) = self.pairs.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(Reader(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Mismatch> {
        match self.value.take() {
            Some(value) => seed.deserialize(Reader(value)),
            None => Err(Mismatch("a value without its key".into())),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

// The scalar rules below are `yaml_serde` 0.10's (its `de.rs`), so both readers agree on
// what a plain scalar is.

fn untagged_scalar<'de, V: Visitor<'de>>(visitor: V, text: &str) -> Result<V::Value, Mismatch> {
    if text.is_empty() || is_null(text) {
        return visitor.visit_unit();
    }
    if let Some(boolean) = parse_bool(text) {
        return visitor.visit_bool(boolean);
    }
    if let Some(int) = parse_unsigned_int(text, u64::from_str_radix) {
        return visitor.visit_u64(int);
    }
    if let Some(int) = parse_negative_int(text, i64::from_str_radix) {
        return visitor.visit_i64(int);
    }
    if parse_unsigned_int(text, u128::from_str_radix).is_some()
        || parse_negative_int(text, i128::from_str_radix).is_some()
    {
        return Err(Mismatch(
            "128-bit numbers are not read from policies".into(),
        ));
    }
    if !digits_but_not_number(text)
        && let Some(float) = parse_f64(text)
    {
        return visitor.visit_f64(float);
    }
    visitor.visit_str(text)
}

fn is_null(text: &str) -> bool {
    matches!(text, "null" | "Null" | "NULL" | "~")
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

type Radix<T> = fn(&str, u32) -> Result<T, ParseIntError>;

fn parse_unsigned_int<T>(text: &str, from_str_radix: Radix<T>) -> Option<T> {
    let unpositive = text.strip_prefix('+').unwrap_or(text);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
    }
    if unpositive.starts_with(['+', '-']) || digits_but_not_number(text) {
        return None;
    }
    from_str_radix(unpositive, 10).ok()
}

fn parse_signed_int<T>(text: &str, from_str_radix: Radix<T>) -> Option<T> {
    let unpositive = match text.strip_prefix('+') {
        Some(unpositive) if unpositive.starts_with(['+', '-']) => return None,
        Some(unpositive) => unpositive,
        None => text,
    };
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unpositive.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
        if let Some(rest) = text.strip_prefix('-').and_then(|t| t.strip_prefix(prefix))
            && let Ok(int) = from_str_radix(&format!("-{rest}"), radix)
        {
            return Some(int);
        }
    }
    if digits_but_not_number(text) {
        return None;
    }
    from_str_radix(unpositive, 10).ok()
}

fn parse_negative_int<T>(text: &str, from_str_radix: Radix<T>) -> Option<T> {
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = text.strip_prefix('-').and_then(|t| t.strip_prefix(prefix))
            && let Ok(int) = from_str_radix(&format!("-{rest}"), radix)
        {
            return Some(int);
        }
    }
    if digits_but_not_number(text) {
        return None;
    }
    from_str_radix(text, 10).ok()
}

fn parse_f64(text: &str) -> Option<f64> {
    let unpositive = match text.strip_prefix('+') {
        Some(unpositive) if unpositive.starts_with(['+', '-']) => return None,
        Some(unpositive) => unpositive,
        None => text,
    };
    if let ".inf" | ".Inf" | ".INF" = unpositive {
        return Some(f64::INFINITY);
    }
    if let "-.inf" | "-.Inf" | "-.INF" = text {
        return Some(f64::NEG_INFINITY);
    }
    if let ".nan" | ".NaN" | ".NAN" = text {
        return Some(f64::NAN.copysign(1.0));
    }
    unpositive
        .parse::<f64>()
        .ok()
        .filter(|float| float.is_finite())
}

/// Leading zeros followed by digits are text in YAML 1.2 (`010`).
fn digits_but_not_number(text: &str) -> bool {
    let text = text.strip_prefix(['-', '+']).unwrap_or(text);
    text.len() > 1 && text.starts_with('0') && text[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Line, Policy};

    fn both<T: DeserializeOwned + PartialEq + fmt::Debug>(text: &str) -> Option<T> {
        let tree = crate::source::parse(text).unwrap().unwrap();
        let ours = from_tree::<T>(&tree).ok();
        let theirs = yaml_serde::from_str::<T>(text).ok();
        if let Some(ours) = &ours {
            assert_eq!(Some(ours), theirs.as_ref(), "{text}");
        }
        ours
    }

    #[test]
    fn scalars_read_as_yaml_serde_reads_them() {
        for text in ["5", "+5", "0x1f", "0o17", "0b101", "255", "1e2"] {
            both::<u8>(text);
            both::<f64>(text);
            both::<String>(text);
        }
        for text in [
            "1.5", ".inf", "-3", "'3'", "\"x\"", "true", "~", "''", "null",
        ] {
            both::<f64>(text);
            both::<Option<String>>(text);
            both::<Option<f64>>(text);
            both::<bool>(text);
        }
    }

    proptest::proptest! {
        /// Whatever plain or quoted scalar the tree reader accepts, it reads as yaml_serde.
        #[test]
        fn any_scalar_reads_as_yaml_serde_reads_it(
            text in "[-+0-9a-fA-FxXoObB._~eEinfINFnaNtrulsTRULSyYwW_:]{1,10}",
            quote in 0u8..3,
        ) {
            let text = match quote {
                0 => text,
                1 => format!("'{text}'"),
                _ => format!("\"{text}\""),
            };
            if let Ok(Some(_)) = crate::source::parse(&text) {
                both::<u8>(&text);
                both::<u32>(&text);
                both::<i64>(&text);
                both::<f64>(&text);
                both::<bool>(&text);
                both::<String>(&text);
                both::<Option<String>>(&text);
                both::<Option<f64>>(&text);
            }
        }
    }

    #[test]
    fn leading_zeros_are_text_not_numbers() {
        // `yaml_serde` refuses `010` as a whole number; reading the tree must too, or a
        // policy it refuses would pass.
        assert_eq!(both::<u8>("010"), None);
        assert_eq!(both::<String>("010").as_deref(), Some("010"));
    }

    #[test]
    fn a_line_reads_the_same_from_the_tree_and_the_text() {
        let line = both::<Line>(
            "{ name: mpls, transport: mpls, interface: wan0, gateway: 192.0.2.1, up: 50mbit, down: 1000000, cost: 3, probe_interval: 20ms }",
        )
        .unwrap();
        assert_eq!(line.down.bps(), 1_000_000);
        let bank = include_str!("../examples/bank.yaml");
        assert!(both::<Policy>(bank).is_some());
    }
}
