//! Go's builtin functions, docker's string functions, and Go's `fmt` printing of values.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::{STRUCT_KEY, Val};

pub(crate) fn go_type(v: &Value) -> String {
    match v {
        Value::Null => "interface {}",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(o) => {
            return match o.get(STRUCT_KEY).and_then(|s| s[0].as_str()) {
                Some(ty) => ty.to_string(),
                None => "map[string]interface {}".to_string(),
            };
        }
    }
    .to_string()
}

fn as_str(v: &Val) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        other => print_top(other),
    }
}

fn as_int(v: &Val) -> Result<i64, String> {
    match v {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| "expected integer".to_string()),
        _ => Err(format!("expected integer; found {}", print_top(v))),
    }
}

fn compare(a: &Val, b: &Val) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            Ok(x.partial_cmp(&y).unwrap_or(Ordering::Equal))
        }
        (Some(Value::String(x)), Some(Value::String(y))) => Ok(x.cmp(y)),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => Ok(x.cmp(y)),
        _ => Err("incompatible types for comparison".to_string()),
    }
}

fn equal(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (None, Some(Value::Null)) | (Some(Value::Null), None) => true,
        _ => a == b,
    }
}

/// Calls the builtin `name` (docker's functions with `docker`); errors are Go's messages.
pub(crate) fn call(name: &str, args: Vec<Val>, docker: bool) -> Result<Val, String> {
    if !docker && crate::parse::DOCKER_FUNCS.contains(&name) {
        return Err(format!("function {name:?} not defined"));
    }
    let want = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    let string = |s: String| Ok(Some(Value::String(s)));
    match name {
        "and" => {
            if args.is_empty() {
                return Err("wrong number of args for and".into());
            }
            Ok(args
                .iter()
                .find(|a| !truth(a))
                .unwrap_or(&args[args.len() - 1])
                .clone())
        }
        "or" => {
            if args.is_empty() {
                return Err("wrong number of args for or".into());
            }
            Ok(args
                .iter()
                .find(|a| truth(a))
                .unwrap_or(&args[args.len() - 1])
                .clone())
        }
        "not" => {
            want(1)?;
            Ok(Some(Value::Bool(!truth(&args[0]))))
        }
        "len" => {
            want(1)?;
            let n = match &args[0] {
                Some(Value::String(s)) => s.len(),
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(o)) if !o.contains_key(STRUCT_KEY) => o.len(),
                other => {
                    return Err(format!(
                        "error calling len: len of type {}",
                        go_type(other.as_ref().unwrap_or(&Value::Null))
                    ));
                }
            };
            Ok(Some(Value::from(n)))
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else {
                return Err("wrong number of args for index".into());
            };
            let mut v = first.clone();
            for key in keys {
                v = match (&v, key) {
                    (Some(Value::Object(map)), Some(Value::String(k))) => map.get(k).cloned(),
                    (Some(Value::Array(items)), Some(Value::Number(_))) => {
                        let i = as_int(key)?;
                        match usize::try_from(i).ok().and_then(|i| items.get(i)) {
                            Some(item) => Some(item.clone()),
                            None => {
                                return Err(format!(
                                    "error calling index: index out of range: {i}"
                                ));
                            }
                        }
                    }
                    (None | Some(Value::Null), _) => None,
                    _ => {
                        return Err(format!(
                            "error calling index: cannot index {}",
                            print_top(&v)
                        ));
                    }
                };
            }
            Ok(v)
        }
        "slice" => {
            let Some((first, bounds)) = args.split_first() else {
                return Err("wrong number of args for slice".into());
            };
            let ints: Vec<i64> = bounds.iter().map(as_int).collect::<Result<_, _>>()?;
            match first {
                Some(Value::String(s)) => {
                    let lo = *ints.first().unwrap_or(&0) as usize;
                    let hi = ints.get(1).map_or(s.len(), |h| *h as usize);
                    match s.get(lo..hi) {
                        Some(part) => string(part.to_string()),
                        None => Err("error calling slice: index out of range".into()),
                    }
                }
                Some(Value::Array(a)) => {
                    let lo = *ints.first().unwrap_or(&0) as usize;
                    let hi = ints.get(1).map_or(a.len(), |h| *h as usize);
                    match a.get(lo..hi) {
                        Some(part) => Ok(Some(Value::Array(part.to_vec()))),
                        None => Err("error calling slice: index out of range".into()),
                    }
                }
                _ => Err("error calling slice: can't slice item".into()),
            }
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            Ok(Some(Value::Bool(
                args[1..].iter().any(|b| equal(&args[0], b)),
            )))
        }
        "ne" => {
            want(2)?;
            Ok(Some(Value::Bool(!equal(&args[0], &args[1]))))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let ord = compare(&args[0], &args[1])?;
            use std::cmp::Ordering::*;
            let result = match name {
                "lt" => ord == Less,
                "le" => ord != Greater,
                "gt" => ord == Greater,
                _ => ord != Less,
            };
            Ok(Some(Value::Bool(result)))
        }
        "print" => string(go_sprint(&args)),
        "println" => {
            let parts: Vec<String> = args.iter().map(print_top).collect();
            string(format!("{}\n", parts.join(" ")))
        }
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return Err("wrong number of args for printf".into());
            };
            string(go_sprintf(&as_str(fmt), rest))
        }
        "json" => {
            want(1)?;
            string(go_json(args[0].as_ref().unwrap_or(&Value::Null)))
        }
        "join" => {
            want(2)?;
            let sep = as_str(&args[1]);
            match &args[0] {
                Some(Value::Array(items)) => {
                    let parts: Vec<String> = items.iter().map(print_value).collect();
                    string(parts.join(&sep))
                }
                None | Some(Value::Null) => string(String::new()),
                Some(other) => Err(format!(
                    "error calling join: wrong type for value; expected []string; got {}",
                    go_type(other)
                )),
            }
        }
        "split" => {
            want(2)?;
            let (s, sep) = (as_str(&args[0]), as_str(&args[1]));
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep.as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect()
            };
            Ok(Some(Value::Array(parts)))
        }
        "lower" => {
            want(1)?;
            string(as_str(&args[0]).to_lowercase())
        }
        "upper" => {
            want(1)?;
            string(as_str(&args[0]).to_uppercase())
        }
        "title" => {
            want(1)?;
            string(title_case(&as_str(&args[0])))
        }
        "pad" => {
            want(3)?;
            let (l, r) = (as_int(&args[1])?.max(0), as_int(&args[2])?.max(0));
            string(format!(
                "{}{}{}",
                " ".repeat(l as usize),
                as_str(&args[0]),
                " ".repeat(r as usize)
            ))
        }
        "truncate" => {
            want(2)?;
            let s = as_str(&args[0]);
            let n = as_int(&args[1])?.max(0) as usize;
            // docker truncates by bytes; stay on a character boundary.
            if s.len() <= n {
                return string(s);
            }
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            string(s[..end].to_string())
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric() && c != '\'';
    }
    out
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
fn go_sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = matches!(a, Some(Value::String(_)));
        if i > 0 && !is_str && !matches!(args[i - 1], Some(Value::String(_))) {
            out.push(' ');
        }
        out.push_str(&print_top(a));
    }
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%s %v %d %q %t %%`, with width and `-`.
fn go_sprintf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut width = String::new();
        while let Some(&f) = chars.peek() {
            if f == '-' {
                left = true;
                chars.next();
            } else if f.is_ascii_digit() {
                width.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let text = match verb {
            'q' => go_json(&Value::String(as_str(arg))),
            _ => print_top(arg),
        };
        let width: usize = width.parse().unwrap_or(0);
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&text);
        }
    }
    out
}

/// How an action prints its value: Go's `fmt.Print` of the value, `<no value>` when missing.
pub fn print_top(v: &Val) -> String {
    match v {
        None | Some(Value::Null) => "<no value>".to_string(),
        Some(v) => print_value(v),
    }
}

/// Go's `%v` of a decoded JSON value.
pub fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                go_float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(print_value).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => match struct_fields(map) {
            Some(fields) => {
                let parts: Vec<String> = fields.iter().map(|(_, v)| print_value(v)).collect();
                format!("{{{}}}", parts.join(" "))
            }
            None => format!("map[{}]", print_map(map)),
        },
    }
}

/// A Go struct's fields in declaration order ([`crate::go_struct`]), `None` for a map.
fn struct_fields(map: &Map<String, Value>) -> Option<Vec<(&str, &Value)>> {
    let shape = map.get(STRUCT_KEY)?.as_array()?;
    Some(
        shape[1..]
            .iter()
            .filter_map(|k| {
                let k = k.as_str()?;
                Some((k, map.get(k)?))
            })
            .collect(),
    )
}

/// A value as `encoding/json` marshals it: structs in field order, maps with sorted keys.
fn go_marshal(v: &Value) -> String {
    match v {
        Value::Object(map) => match struct_fields(map) {
            Some(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", go_marshal(&Value::from(*k)), go_marshal(v)))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            None => {
                let parts: Vec<String> = map
                    .iter()
                    .map(|(k, v)| {
                        format!("{}:{}", go_marshal(&Value::from(k.as_str())), go_marshal(v))
                    })
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
        },
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_marshal).collect();
            format!("[{}]", parts.join(","))
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn print_map(map: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let parts: Vec<String> = keys
        .into_iter()
        .map(|k| format!("{k}:{}", print_value(&map[k])))
        .collect();
    parts.join(" ")
}

/// Go's `%v` of a float64: shortest digits, exponent form when the exponent is < -4 or >= 6
/// (`strconv.FormatFloat(f, 'g', -1, 64)`: 4261376.5 prints `4.2613765e+06`).
pub fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// Go's `json.Marshal`: compact, with `<`, `>` and `&` escaped as `\u003c` and so on.
pub fn go_json(v: &Value) -> String {
    let text = go_marshal(v);
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Go's notion of truth: false, 0, "", nil, empty collections are false.
pub fn truth(v: &Val) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}
