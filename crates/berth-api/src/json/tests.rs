//! The lenient decoding checked on every request body type, with bodies generated from the
//! wire types themselves: a "filler" deserializer builds each type with every field set (every
//! `Option` `Some`, every list and map one element long), and its serialization is the fullest
//! body a client can send. A field added to a wire type is covered without touching this file.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use super::*;
use crate::models::stats::ContainerUpdateRequest;
use crate::models::*;

/// A map key the filler uses: mixed case, so that a test can see it is kept as sent.
const MAP_KEY: &str = "Map-Key";

/// Builds values with every field set. Types that flatten a part are built by the test first
/// and then served from `done` (their own `Deserialize` reads JSON values, which a filler
/// cannot guess).
#[derive(Clone, Copy)]
struct Filler<'a> {
    done: &'a BTreeMap<&'static str, Value>,
    depth: usize,
}

impl<'a> Filler<'a> {
    fn deeper(self) -> Filler<'a> {
        assert!(
            self.depth < 12,
            "wire types nest too deep (a recursive type?)"
        );
        Filler {
            depth: self.depth + 1,
            ..self
        }
    }
}

struct FillSeq<'a>(Filler<'a>, usize);

impl<'de> SeqAccess<'de> for FillSeq<'_> {
    type Error = serde_json::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        if self.1 == 0 {
            return Ok(None);
        }
        self.1 -= 1;
        seed.deserialize(self.0.deeper()).map(Some)
    }
}

struct FillMap<'a> {
    filler: Filler<'a>,
    keys: Vec<&'static str>,
}

impl<'de> MapAccess<'de> for FillMap<'_> {
    type Error = serde_json::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.keys.pop() {
            Some(k) => seed
                .deserialize(BorrowedStrDeserializer::<serde_json::Error>::new(k))
                .map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        seed.deserialize(self.filler.deeper())
    }
}

macro_rules! fill_numbers {
    ($($t:ident)*) => {
        $(
            fn $t<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                visitor.visit_u64(1)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Filler<'_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_str("x")
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_bool(true)
    }
    fill_numbers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_f64(1.0)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_seq(FillSeq(self, 1))
    }
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_seq(FillSeq(self, len))
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(FillMap {
            filler: self,
            keys: vec![MAP_KEY],
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.done.get(name) {
            Some(value) => value.clone().deserialize_map(visitor),
            None => visitor.visit_map(FillMap {
                filler: self,
                keys: fields.to_vec(),
            }),
        }
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        f32 char str string bytes byte_buf unit
        unit_struct tuple_struct enum identifier ignored_any
    }
}

fn fill<T: DeserializeOwned + Serialize>(done: &BTreeMap<&'static str, Value>) -> Value {
    let value = T::deserialize(Filler { done, depth: 0 })
        .unwrap_or_else(|e| panic!("cannot fill {}: {e}", std::any::type_name::<T>()));
    serde_json::to_value(value).unwrap()
}

/// The fullest body of every request type, by type name.
/// A body type's name, its fullest body, and its lenient parser (re-serialized).
type BodyCase = (&'static str, Value, fn(&Value) -> Result<Value, Error>);

fn full_bodies() -> Vec<BodyCase> {
    fn parse<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, Error> {
        from_value::<T>(v).map(|t| serde_json::to_value(t).unwrap())
    }
    // The flattening types: own fields (their derived inherent functions), then the part.
    fn flat(own: Result<impl Serialize, serde_json::Error>, part: Value) -> Value {
        let mut own = serde_json::to_value(own.unwrap()).unwrap();
        own.as_object_mut()
            .unwrap()
            .extend(part.as_object().unwrap().clone());
        own
    }
    let mut done = BTreeMap::new();
    fn filler<'a>(done: &'a BTreeMap<&'static str, Value>) -> Filler<'a> {
        Filler { done, depth: 0 }
    }
    let host = flat(
        HostConfig::deserialize(filler(&done)),
        fill::<Resources>(&done),
    );
    done.insert("HostConfig", host);
    let create = flat(
        ContainerCreateRequest::deserialize(filler(&done)),
        fill::<ContainerConfig>(&done),
    );
    let update = flat(
        ContainerUpdateRequest::deserialize(filler(&done)),
        fill::<Resources>(&done),
    );
    vec![
        (
            "ContainerCreateRequest",
            create,
            parse::<ContainerCreateRequest>,
        ),
        (
            "ContainerUpdateRequest",
            update,
            parse::<ContainerUpdateRequest>,
        ),
        (
            "ContainerConfig",
            fill::<ContainerConfig>(&done),
            parse::<ContainerConfig>,
        ),
        ("ExecConfig", fill::<ExecConfig>(&done), parse::<ExecConfig>),
        (
            "ExecStartConfig",
            fill::<ExecStartConfig>(&done),
            parse::<ExecStartConfig>,
        ),
        (
            "NetworkCreateRequest",
            fill::<NetworkCreateRequest>(&done),
            parse::<NetworkCreateRequest>,
        ),
        (
            "NetworkConnectRequest",
            fill::<NetworkConnectRequest>(&done),
            parse::<NetworkConnectRequest>,
        ),
        (
            "NetworkDisconnectRequest",
            fill::<NetworkDisconnectRequest>(&done),
            parse::<NetworkDisconnectRequest>,
        ),
        (
            "VolumeCreateOptions",
            fill::<VolumeCreateOptions>(&done),
            parse::<VolumeCreateOptions>,
        ),
    ]
}

/// Every path to an object member (struct fields and map entries alike).
fn member_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(k.clone());
                out.push(prefix.clone());
                member_paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(format!("[{i}]"));
                member_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'v>(value: &'v mut Value, path: &[String]) -> &'v mut Value {
    path.iter()
        .fold(value, |v, step| match step.strip_prefix('[') {
            Some(i) => &mut v[i.trim_end_matches(']').parse::<usize>().unwrap()],
            None => &mut v[step.as_str()],
        })
}

#[test]
fn full_bodies_round_trip() {
    for (name, body, parse) in full_bodies() {
        let parsed = parse(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed, body, "{name}");
        // Sanity: the generator reached nested types.
        assert!(body.as_object().unwrap().len() > 1, "{name}: {body}");
    }
}

#[test]
fn every_member_of_every_request_body_may_be_null() {
    let mut checked = 0;
    for (name, body, parse) in full_bodies() {
        let mut paths = Vec::new();
        member_paths(&body, &mut Vec::new(), &mut paths);
        for path in &paths {
            let mut nulled = body.clone();
            *at_mut(&mut nulled, path) = Value::Null;
            parse(&nulled).unwrap_or_else(|e| panic!("{name}: null at {}: {e}", path.join(".")));
            checked += 1;
        }
        // All of them at once, deepest first.
        let mut nulled = body.clone();
        for path in paths.iter().rev() {
            *at_mut(&mut nulled, path) = Value::Null;
        }
        parse(&nulled).unwrap_or_else(|e| panic!("{name}: all null: {e}"));
    }
    assert!(checked > 200, "only {checked} members checked");
}

/// Struct members renamed by `f`; map keys (the filler's) left alone.
fn rename_fields(value: &Value, f: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = if k == MAP_KEY { k.clone() } else { f(k) };
                    (key, rename_fields(v, f))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| rename_fields(v, f)).collect()),
        other => other.clone(),
    }
}

#[test]
fn member_names_match_in_any_case_and_map_keys_stay_as_sent() {
    for (name, body, parse) in full_bodies() {
        for f in [&|k: &str| k.to_lowercase() as String, &|k: &str| {
            k.to_uppercase()
        }] as [&dyn Fn(&str) -> String; 2]
        {
            let renamed = rename_fields(&body, f);
            let parsed = parse(&renamed).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed, body, "{name}: {renamed}");
        }
    }
}

#[test]
fn exact_spelling_wins_over_another_case() {
    let r: HostConfig = from_slice(br#"{"memory": 1, "Memory": 2, "MEMORY": 3}"#).unwrap();
    assert_eq!(r.resources.memory, 2);
    let r: HostConfig = from_slice(br#"{"CPURealtimeRuntime": 950000}"#).unwrap();
    assert_eq!(r.resources.cpu_realtime_runtime, 950000);
}

#[test]
fn null_map_values_are_kept() {
    let r: HostConfig =
        from_value(&json!({"PortBindings": {"80/tcp": null}, "LogConfig": {"Config": null}}))
            .unwrap();
    assert_eq!(r.port_bindings.unwrap().get("80/tcp"), Some(&None));
    assert!(r.log_config.config.is_empty());
}

#[test]
fn null_is_the_zero_value_inside_lists_and_maps() {
    let r: ContainerConfig =
        from_value(&json!({"Env": ["A=1", null], "Labels": {"a": null}})).unwrap();
    assert_eq!(r.env.unwrap(), vec!["A=1".to_string(), String::new()]);
    assert_eq!(r.labels.unwrap()["a"], "");
}

#[test]
fn type_errors_are_still_errors() {
    let e = from_slice::<HostConfig>(br#"{"Memory": "lots"}"#).unwrap_err();
    assert!(e.to_string().contains("invalid type"), "{e}");
    let e = from_slice::<ContainerCreateRequest>(br#"{"Image": "#).unwrap_err();
    assert!(e.to_string().contains("line 1 column"), "{e}");
}

#[test]
fn strict_decoders_still_read_the_flattening_types() {
    // Records on disk and berth-client read these with serde_json directly.
    let host: HostConfig =
        serde_json::from_str(r#"{"Memory": 5, "Binds": ["/a:/b"], "LogConfig": null}"#).unwrap();
    assert_eq!(host.resources.memory, 5);
    assert_eq!(host.binds.as_deref(), Some(&["/a:/b".to_string()][..]));
    let text = serde_json::to_string(&host).unwrap();
    assert!(text.contains(r#""Memory":5"#), "{text}");
}
