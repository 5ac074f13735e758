//! Shell patterns of `${v#p}`, `${v%p}` and `${v/p/r}`: `*` any string, `?` one character,
//! `\*`, `\?`, `\\` literal (no bracket expressions, as BuildKit). Matched directly on
//! characters rather than through a regex: values are short and this keeps the shortest /
//! longest choice explicit.

use super::ExpandErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

fn compile(pattern: &str) -> Result<Vec<Tok>, ExpandErrorKind> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => {
                // `\}` and `\/` escape the `${}` syntax, not the pattern: the escape goes.
                if matches!(chars.get(i + 1), Some('}' | '/')) {
                    i += 1;
                    continue;
                }
                match chars.get(i + 1) {
                    Some(&c @ ('*' | '?' | '\\')) => {
                        out.push(Tok::Lit(c));
                        i += 1;
                    }
                    other => {
                        return Err(ExpandErrorKind::InvalidPattern {
                            pattern: pattern.to_string(),
                            ch: other.copied().unwrap_or(' '),
                        });
                    }
                }
            }
            c => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    Ok(out)
}

/// Whether `toks` matches all of `s`.
fn matches(toks: &[Tok], s: &[char]) -> bool {
    // dp[j]: toks[..i] matches s[..j]
    let mut dp = vec![false; s.len() + 1];
    dp[0] = true;
    for tok in toks {
        let mut next = vec![false; s.len() + 1];
        match tok {
            Tok::Star => {
                let mut any = false;
                for j in 0..=s.len() {
                    any |= dp[j];
                    next[j] = any;
                }
            }
            Tok::Any => {
                next[1..].copy_from_slice(&dp[..s.len()]);
            }
            Tok::Lit(c) => {
                for j in 1..=s.len() {
                    next[j] = dp[j - 1] && s[j - 1] == *c;
                }
            }
        }
        dp = next;
    }
    dp[s.len()]
}

/// The end of the shortest (or longest) prefix of `s` that `toks` matches.
fn prefix_end(toks: &[Tok], s: &[char], greedy: bool) -> Option<usize> {
    if greedy {
        (0..=s.len()).rev().find(|&e| matches(toks, &s[..e]))
    } else {
        (0..=s.len()).find(|&e| matches(toks, &s[..e]))
    }
}

/// `${v#p}` (shortest) and `${v##p}` (longest).
pub(super) fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, ExpandErrorKind> {
    let toks = compile(pattern)?;
    let s: Vec<char> = value.chars().collect();
    Ok(match prefix_end(&toks, &s, greedy) {
        Some(e) => s[e..].iter().collect(),
        None => value.to_string(),
    })
}

/// `${v%p}` (shortest) and `${v%%p}` (longest): a prefix match on both reversed.
pub(super) fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, ExpandErrorKind> {
    let mut toks = compile(pattern)?;
    toks.reverse();
    let mut s: Vec<char> = value.chars().collect();
    s.reverse();
    let mut rest: Vec<char> = match prefix_end(&toks, &s, greedy) {
        Some(e) => s[e..].to_vec(),
        None => s,
    };
    rest.reverse();
    Ok(rest.into_iter().collect())
}

/// `${v/p/r}` (first, leftmost-longest match) and `${v//p/r}` (every match).
pub(super) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, ExpandErrorKind> {
    let toks = compile(pattern)?;
    let s: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut pos = 0;
    while pos <= s.len() {
        let found = (pos..=s.len())
            .find_map(|start| prefix_end(&toks, &s[start..], true).map(|e| (start, start + e)));
        let Some((start, end)) = found else { break };
        out.extend(&s[pos..start]);
        out.push_str(replacement);
        if end == start {
            // An empty match: keep the character after it and move on.
            if let Some(c) = s.get(start) {
                out.push(*c);
            }
            pos = start + 1;
        } else {
            pos = end;
        }
        if !all {
            break;
        }
    }
    if pos < s.len() {
        out.extend(&s[pos..]);
    }
    Ok(out)
}
