//! Variable substitution as Compose does it: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:+alt}`, `${VAR+alt}`, `$$` for a
//! literal `$`; defaults and alternatives are themselves interpolated (nested defaults).
//! Only string values are substituted, never mapping keys.

use serde_json::Value;

use crate::error::LoadError;

/// Where variables are looked up: the shell environment over the `.env` file.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

impl Lookup for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

/// Substitutes every string in `value`; `path` names the position for errors
/// (`services.web.image`).
pub fn interpolate_tree(value: &mut Value, env: &dyn Lookup, path: &str) -> Result<(), LoadError> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = substitute(s, env).map_err(|e| e.at(path))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, env, &format!("{path}[{i}]"))?;
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate_tree(item, env, &sub)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A substitution failure before its position is known.
#[derive(Debug, PartialEq)]
pub enum SubstError {
    Required { var: String, message: String },
    Invalid { template: String },
}

impl SubstError {
    fn at(self, path: &str) -> LoadError {
        match self {
            SubstError::Required { var, message } => LoadError::RequiredVariable {
                path: path.to_string(),
                var,
                message,
            },
            SubstError::Invalid { template } => LoadError::InvalidTemplate {
                path: path.to_string(),
                template,
            },
        }
    }
}

/// Substitutes the variables of one string.
pub fn substitute(text: &str, env: &dyn Lookup) -> Result<String, SubstError> {
    let chars: Vec<char> = text.chars().collect();
    let (out, end) = substitute_until(&chars, 0, env, None, text)?;
    debug_assert_eq!(end, chars.len());
    Ok(out)
}

/// Substitutes from `start` until `stop` (the `}` closing an enclosing `${...}`) or the end;
/// returns the text and the index of the stop character (or the end).
fn substitute_until(
    chars: &[char],
    start: usize,
    env: &dyn Lookup,
    stop: Option<char>,
    whole: &str,
) -> Result<(String, usize), SubstError> {
    let invalid = || SubstError::Invalid {
        template: whole.to_string(),
    };
    let mut out = String::new();
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if Some(c) == stop {
            return Ok((out, i));
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let mut j = i + 2;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 2..j].iter().collect();
                if name.is_empty() || !is_name_start(name.chars().next().unwrap_or('0')) {
                    return Err(invalid());
                }
                match chars.get(j) {
                    Some('}') => {
                        out.push_str(&env.get(&name).unwrap_or_default());
                        i = j + 1;
                    }
                    Some(_) => {
                        // An operator: `:-`, `-`, `:?`, `?`, `:+`, `+`.
                        let colon = chars[j] == ':';
                        let op_at = if colon { j + 1 } else { j };
                        let op = *chars.get(op_at).ok_or_else(invalid)?;
                        if !matches!(op, '-' | '?' | '+') {
                            return Err(invalid());
                        }
                        let (arg, close) =
                            substitute_until(chars, op_at + 1, env, Some('}'), whole)?;
                        if close >= chars.len() {
                            return Err(invalid());
                        }
                        let value = env.get(&name);
                        let set = if colon {
                            value.as_deref().is_some_and(|v| !v.is_empty())
                        } else {
                            value.is_some()
                        };
                        match op {
                            '-' => out.push_str(&if set { value.unwrap_or_default() } else { arg }),
                            '+' => {
                                if set {
                                    out.push_str(&arg)
                                }
                            }
                            _ => {
                                if !set {
                                    return Err(SubstError::Required {
                                        var: name,
                                        message: arg,
                                    });
                                }
                                out.push_str(&value.unwrap_or_default());
                            }
                        }
                        i = close + 1;
                    }
                    None => return Err(invalid()),
                }
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                out.push_str(&env.get(&name).unwrap_or_default());
                i = j;
            }
            // A lone `$` (at the end, before a space...) stays as it is, as in Compose.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    if stop.is_some() {
        return Err(invalid());
    }
    Ok((out, i))
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env() -> BTreeMap<String, String> {
        [("A", "alpha"), ("EMPTY", ""), ("B", "beta")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn s(text: &str) -> Result<String, SubstError> {
        substitute(text, &env())
    }

    #[test]
    fn substitutes_as_the_spec_examples_say() {
        assert_eq!(s("${A}").unwrap(), "alpha");
        assert_eq!(s("$A/x").unwrap(), "alpha/x");
        assert_eq!(s("x${A}y").unwrap(), "xalphay");
        assert_eq!(s("${UNSET}").unwrap(), "");
        assert_eq!(s("${UNSET:-d}").unwrap(), "d");
        assert_eq!(s("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(s("${EMPTY-d}").unwrap(), "");
        assert_eq!(s("${UNSET-d}").unwrap(), "d");
        assert_eq!(s("${A:+alt}").unwrap(), "alt");
        assert_eq!(s("${EMPTY:+alt}").unwrap(), "");
        assert_eq!(s("${EMPTY+alt}").unwrap(), "alt");
        assert_eq!(s("${UNSET+alt}").unwrap(), "");
        assert_eq!(s("$$A and $${A}").unwrap(), "$A and ${A}");
        assert_eq!(s("cost: 5$").unwrap(), "cost: 5$");
        assert_eq!(s("${UNSET:-${B}}").unwrap(), "beta");
        assert_eq!(s("${UNSET:-${ALSO:-deep}}").unwrap(), "deep");
        assert_eq!(s("${UNSET:-a:b-c}").unwrap(), "a:b-c");
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        assert_eq!(
            s("${UNSET:?set it please}").unwrap_err(),
            SubstError::Required {
                var: "UNSET".into(),
                message: "set it please".into()
            }
        );
        assert!(s("${EMPTY:?x}").is_err());
        assert_eq!(s("${EMPTY?x}").unwrap(), "");
        assert_eq!(s("${A:?x}").unwrap(), "alpha");
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["${", "${A", "${}", "${A:-x", "${A!}", "${1A}"] {
            assert!(
                matches!(s(bad), Err(SubstError::Invalid { .. })),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn errors_name_the_path() {
        let mut tree = serde_json::json!({"services": {"web": {"image": "${TAG:?need a tag}"}}});
        let e = interpolate_tree(&mut tree, &env(), "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "error while interpolating services.web.image: required variable TAG is missing a value: need a tag"
        );
    }
}
