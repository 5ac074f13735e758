//! Docker's `StrSlice`: a field that clients send either as a JSON string or as an array of
//! strings (`"Cmd": "echo hi"` and `"Cmd": ["echo", "hi"]` both occur). A string becomes a
//! one-element list, `null` stays absent.

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// `deserialize_with` helper for `Option<Vec<String>>` fields that accept a string too.
pub fn deserialize<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(
        Option::<StringOrList>::deserialize(deserializer)?.map(|value| match value {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }),
    )
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "super::deserialize")]
        cmd: Option<Vec<String>>,
    }

    #[test]
    fn accepts_string_list_and_null() {
        let one: Holder = serde_json::from_str(r#"{"cmd":"echo hi"}"#).unwrap();
        assert_eq!(one.cmd, Some(vec!["echo hi".to_string()]));
        let many: Holder = serde_json::from_str(r#"{"cmd":["echo","hi"]}"#).unwrap();
        assert_eq!(many.cmd, Some(vec!["echo".to_string(), "hi".to_string()]));
        let null: Holder = serde_json::from_str(r#"{"cmd":null}"#).unwrap();
        assert_eq!(null.cmd, None);
        let absent: Holder = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(absent.cmd, None);
    }
}
