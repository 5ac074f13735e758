//! Request bodies decoded as dockerd decodes them. dockerd is written in Go, whose JSON decoder
//! matches object members to struct fields case-insensitively (an exact match first) and takes
//! `null` for any field, leaving it at its zero value. Go clients (Compose, the docker CLI, the
//! Go SDK) rely on both: they send `null` for nil maps and slices anywhere in a body, and some
//! spell fields in another case (`CPURealtimeRuntime`). serde is exact on both counts, so bodies
//! go through [`Lenient`], a deserializer over a parsed [`Value`] that:
//!
//! - maps the members of an object read as a struct to the struct's field names (exact match,
//!   else case-insensitive; unknown members are passed on unchanged), and drops `null` members
//!   so that `#[serde(default)]` and `Option` apply;
//! - keeps the keys of an object read as a map (`Labels`, `PortBindings`) exactly as sent, and
//!   its `null` values (`{"80/tcp": null}` means "exposed, not published");
//! - reads `null` as the zero value anywhere else (`false`, `0`, `""`, empty list or map).
//!
//! serde's `#[serde(flatten)]` hides a struct's fields from the deserializer, so a wire type
//! that flattens a part deserializes through [`flattened`] instead (see `HostConfig`).

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess};
use serde::de::{Error as _, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

type Error = serde_json::Error;

/// Parses a request body leniently (see the module doc). Syntax errors carry their position.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(bytes)?;
    from_value(&value)
}

/// Deserializes a parsed value leniently.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Error> {
    T::deserialize(Lenient(value))
}

/// The lenient deserializer over a parsed JSON value.
#[derive(Debug, Clone, Copy)]
pub struct Lenient<'a>(pub &'a Value);

/// Go's `strings.EqualFold`, close enough for field names.
fn eq_fold(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || (!a.is_ascii() || !b.is_ascii())
            && a.chars()
                .flat_map(char::to_lowercase)
                .eq(b.chars().flat_map(char::to_lowercase))
}

/// An object's members renamed to `fields` (see the module doc), `null` members dropped.
fn struct_members<'a>(
    map: &'a Map<String, Value>,
    fields: &'static [&'static str],
) -> Vec<(&'a str, &'a Value)> {
    let mut out: Vec<(&'a str, &'a Value)> = map
        .iter()
        .filter(|(k, v)| !v.is_null() && fields.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    for (k, v) in map {
        if v.is_null() || fields.contains(&k.as_str()) {
            continue;
        }
        match fields.iter().find(|f| eq_fold(f, k)) {
            // Go lets the last of two spellings win; an exact spelling winning is as good and
            // does not depend on member order.
            Some(f) if out.iter().any(|(o, _)| o == f) => {}
            Some(f) => out.push((f, v)),
            None => out.push((k.as_str(), v)),
        }
    }
    out
}

struct Members<'a> {
    iter: std::vec::IntoIter<(&'a str, &'a Value)>,
    value: Option<&'a Value>,
}

impl<'a> Members<'a> {
    fn new(members: Vec<(&'a str, &'a Value)>) -> Self {
        Members {
            iter: members.into_iter(),
            value: None,
        }
    }

    fn of_map(map: &'a Map<String, Value>) -> Self {
        Members::new(map.iter().map(|(k, v)| (k.as_str(), v)).collect())
    }
}

impl<'de> MapAccess<'de> for Members<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::<Error>::new(key))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| Error::custom("map value requested before its key"))?;
        seed.deserialize(Lenient(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct Elements<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for Elements<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Lenient(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

const NO_VALUES: &[Value] = &[];

macro_rules! zero_on_null {
    ($($method:ident => $visit:ident($zero:expr)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self.0 {
                    Value::Null => visitor.$visit($zero),
                    value => value.$method(visitor),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Lenient<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Elements(items.iter())),
            Value::Object(map) => visitor.visit_map(Members::of_map(map)),
            value => value.deserialize_any(visitor),
        }
    }

    zero_on_null! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_i128 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_u128 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_str => visit_borrowed_str(""),
        deserialize_string => visit_borrowed_str(""),
        deserialize_bytes => visit_borrowed_bytes(&[]),
        deserialize_byte_buf => visit_borrowed_bytes(&[]),
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.0.deserialize_char(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.0.deserialize_unit(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_seq(Elements(NO_VALUES.iter())),
            Value::Array(items) => visitor.visit_seq(Elements(items.iter())),
            value => value.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Elements(items.iter())),
            value => value.deserialize_tuple(len, visitor),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_map(Members::new(Vec::new())),
            Value::Object(map) => visitor.visit_map(Members::of_map(map)),
            value => value.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_map(Members::new(Vec::new())),
            Value::Object(map) => visitor.visit_map(Members::new(struct_members(map, fields))),
            value => value.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.0.deserialize_identifier(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// Deserializes a struct that flattens one part (`#[serde(flatten)]`), so that both the struct's
/// own fields and the part's are read leniently. The struct derives its own fields with
/// `#[serde(remote = "Self")]` and the part marked `skip_deserializing`; `own` is that derived
/// function and `fields` are both field lists (see [`struct_fields`]).
pub fn flattened<'de, D, Own, Part>(
    deserializer: D,
    name: &'static str,
    fields: &'static [&'static str],
    own: impl FnOnce(Lenient<'_>) -> Result<Own, Error>,
) -> Result<(Own, Part), D::Error>
where
    D: Deserializer<'de>,
    Part: DeserializeOwned,
{
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Map<String, Value>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = Map::new();
            while let Some((key, value)) = access.next_entry::<String, Value>()? {
                map.insert(key, value);
            }
            Ok(map)
        }
    }
    let value = Value::Object(deserializer.deserialize_struct(name, fields, Members)?);
    let own = own(Lenient(&value)).map_err(D::Error::custom)?;
    let part = Part::deserialize(Lenient(&value)).map_err(D::Error::custom)?;
    Ok((own, part))
}

/// The field names (aliases included) that a derived `Deserialize` asks its deserializer for:
/// `deserialize` is called once with a probe that records them. Used to build the field list of
/// a struct with a flattened part; the lists are computed once and live for the process.
pub fn struct_fields<T>(
    deserialize: impl FnOnce(FieldsProbe) -> Result<T, ProbeError>,
) -> &'static [&'static str] {
    match deserialize(FieldsProbe) {
        Err(ProbeError::Fields(fields)) => fields,
        _ => &[],
    }
}

/// Concatenated field lists (leaked once per flattened type, through a `OnceLock`).
pub fn join_fields(parts: &[&'static [&'static str]]) -> &'static [&'static str] {
    Box::leak(parts.concat().into_boxed_slice())
}

/// See [`struct_fields`].
#[derive(Debug)]
pub struct FieldsProbe;

#[derive(Debug)]
pub enum ProbeError {
    Fields(&'static [&'static str]),
    NotAStruct,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("not a struct")
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        ProbeError::NotAStruct
    }
}

impl<'de> Deserializer<'de> for FieldsProbe {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError::NotAStruct)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Fields(fields))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests;
