//! Building request paths and query strings.

/// Percent-encodes everything but RFC 3986 unreserved characters (for query values).
pub fn encode_query(value: &str) -> String {
    encode(value, b"-._~")
}

/// Percent-encodes a path segment as Go's `url.PathEscape`-style clients do for image names,
/// keeping `/`, `:` and `@` readable (`localhost:5000/app@sha256:...`).
pub fn encode_path(value: &str) -> String {
    encode(value, b"-._~/:@")
}

fn encode(value: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An ordered list of query parameters.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.0.push((key.to_string(), value.into()));
        self
    }
    /// Adds `key=1` only when the flag is set, as the docker CLI does.
    pub fn flag(&mut self, key: &str, on: bool) -> &mut Self {
        if on {
            self.push(key, "1");
        }
        self
    }
    /// Adds the parameter only when the value is not empty.
    pub fn non_empty(&mut self, key: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.push(key, value);
        }
        self
    }
    pub fn filters(&mut self, filters: &berth_api::Filters) -> &mut Self {
        if !filters.is_empty() {
            self.push("filters", filters.to_json());
        }
        self
    }
    /// `?a=1&b=2`, or empty.
    pub fn to_query_string(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
            .collect();
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        assert_eq!(encode_path("localhost:5000/a b"), "localhost:5000/a%20b");
        let mut q = Query::new();
        q.flag("all", true)
            .flag("digests", false)
            .push("filters", r#"{"a":["b=c"]}"#);
        assert_eq!(
            q.to_query_string(),
            "?all=1&filters=%7B%22a%22%3A%5B%22b%3Dc%22%5D%7D"
        );
        assert_eq!(Query::new().to_query_string(), "");
    }
}
