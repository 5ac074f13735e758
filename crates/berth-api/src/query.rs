//! Docker's query-string conventions: booleans written `1`/`true`/`0`/`false`/empty, and the
//! `filters` parameter, a JSON object of filter name → values.

use std::collections::{BTreeMap, BTreeSet};

use crate::ApiError;

/// Docker's boolean query values: empty, `0`, `false`, `no`, `none` (any case) mean false;
/// anything else means true. An absent parameter is the caller's default.
pub fn parse_bool(value: &str) -> bool {
    !matches!(
        value.to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no" | "none"
    )
}

/// The `filters` query parameter: `{"label":["a=b"],"dangling":["true"]}`. Old clients send the
/// values as a map `{"label":{"a=b":true}}`; both are accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    values: BTreeMap<String, BTreeSet<String>>,
}

impl Filters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the JSON text of a `filters` parameter (empty text means no filters).
    pub fn parse(text: &str) -> Result<Filters, ApiError> {
        if text.trim().is_empty() {
            return Ok(Filters::default());
        }
        let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| ApiError::invalid(format!("invalid filter: {e}")))?;
        let mut filters = Filters::default();
        for (key, value) in raw {
            let set = filters.values.entry(key.clone()).or_default();
            match value {
                serde_json::Value::Array(items) => {
                    for item in items {
                        match item {
                            serde_json::Value::String(s) => {
                                set.insert(s);
                            }
                            other => {
                                return Err(ApiError::invalid(format!(
                                    "invalid filter '{key}': expected a string, got {other}"
                                )));
                            }
                        }
                    }
                }
                serde_json::Value::Object(map) => {
                    for (item, enabled) in map {
                        if enabled.as_bool().unwrap_or(false) {
                            set.insert(item);
                        }
                    }
                }
                other => {
                    return Err(ApiError::invalid(format!(
                        "invalid filter '{key}': expected a list of strings, got {other}"
                    )));
                }
            }
        }
        Ok(filters)
    }

    /// Adds a value (used by clients building a `filters` parameter).
    pub fn add(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values
            .entry(key.into())
            .or_default()
            .insert(value.into());
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values given for a filter name (empty when the filter is absent).
    pub fn get(&self, key: &str) -> Vec<&str> {
        self.values
            .get(key)
            .map(|set| set.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Rejects filter names the endpoint does not know, with Docker's message.
    pub fn validate(&self, accepted: &[&str]) -> Result<(), ApiError> {
        for key in self.values.keys() {
            if !accepted.contains(&key.as_str()) {
                return Err(ApiError::invalid(format!("invalid filter '{key}'")));
            }
        }
        Ok(())
    }

    /// A boolean filter such as `dangling=true`; `None` when absent. Docker rejects other values.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        let values = self.get(key);
        if values.is_empty() {
            return Ok(None);
        }
        let mut result = None;
        for value in values {
            let parsed = match value.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(ApiError::invalid(format!("invalid filter '{key}={value}'")));
                }
            };
            if result.is_some_and(|r| r != parsed) {
                return Err(ApiError::invalid(format!(
                    "invalid filter '{key}': conflicting values"
                )));
            }
            result = Some(parsed);
        }
        Ok(result)
    }

    /// Does a label set satisfy every `label=KEY` / `label=KEY=VALUE` filter under `key`?
    /// (`label!=` style negation uses the key `label!`.)
    pub fn match_labels(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(key)
            .iter()
            .all(|wanted| match wanted.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|actual| actual == v),
                None => labels.contains_key(*wanted),
            })
    }

    /// The JSON text of this filter set, for a query string.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.values).unwrap_or_else(|_| "{}".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_follow_docker() {
        for t in ["1", "true", "True", "yes", "anything"] {
            assert!(parse_bool(t), "{t}");
        }
        for f in ["", "0", "false", "FALSE", "no", "none"] {
            assert!(!parse_bool(f), "{f}");
        }
    }

    #[test]
    fn filters_accept_both_shapes() {
        let list = Filters::parse(r#"{"label":["a=b"],"dangling":["true"]}"#).unwrap();
        assert_eq!(list.get("label"), vec!["a=b"]);
        assert_eq!(list.get_bool("dangling").unwrap(), Some(true));
        let map = Filters::parse(r#"{"label":{"a=b":true}}"#).unwrap();
        assert_eq!(map.get("label"), vec!["a=b"]);
        assert!(Filters::parse("").unwrap().is_empty());
        assert!(Filters::parse("{not json").is_err());
        assert!(list.validate(&["label"]).is_err());
        assert!(
            Filters::parse(r#"{"dangling":["maybe"]}"#)
                .unwrap()
                .get_bool("dangling")
                .is_err()
        );
    }

    #[test]
    fn label_matching() {
        let f = Filters::parse(r#"{"label":["a","b=c"]}"#).unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("a".to_string(), "x".to_string());
        labels.insert("b".to_string(), "c".to_string());
        assert!(f.match_labels("label", &labels));
        labels.insert("b".to_string(), "d".to_string());
        assert!(!f.match_labels("label", &labels));
    }
}
