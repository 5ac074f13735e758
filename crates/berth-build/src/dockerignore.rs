//! `.dockerignore` with Docker's rules (moby/patternmatcher and its `ignorefile` reader):
//! comments start a line with `#`, patterns are trimmed and cleaned (`./a`, `/a`, `a/` all
//! mean `a`), `*` and `?` stay inside one path component, `**` spans any number, `[...]`
//! classes and `\` escapes, `!` re-includes, the last matching pattern wins, and a pattern
//! that matches a directory excludes everything under it.
//!
//! Patterns are compiled once ([`Dockerignore::parse`]); [`Dockerignore::may_contain_included`]
//! lets a walker skip an excluded directory whole unless an exception could match inside it
//! (moby#23470: walking excluded trees made one pattern cost seconds).

use std::io;
use std::path::{Path, PathBuf};

use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerignoreError {
    #[error("illegal exclusion pattern: \"!\"")]
    BareExclusion,
    /// Go's `filepath.ErrBadPattern` text, with the pattern for context.
    #[error("syntax error in pattern: {0:?}")]
    BadPattern(String),
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    /// `dir/**`: the text before `**`.
    Prefix(String),
    /// `**/name`: the text after `**`.
    Suffix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned pattern without `!`.
    text: String,
    /// Its components (for pruning decisions).
    dirs: Vec<String>,
    exclusion: bool,
    matcher: Matcher,
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

/// Lexical clean of a slash path, as Go's `filepath.Clean` (`.` for empty).
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|c| *c != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

impl Dockerignore {
    /// Reads `.dockerignore` text. Errors name the bad pattern.
    pub fn parse(text: &str) -> Result<Dockerignore, DockerignoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(DockerignoreError::BareExclusion);
                }
            }
            let mut cleaned = clean_path(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            patterns.push(Pattern::compile(cleaned, exclusion)?);
        }
        Ok(Dockerignore { patterns })
    }

    /// Reads the ignore file that applies to a build: `<Dockerfile>.dockerignore` next to the
    /// Dockerfile when it exists (BuildKit's per-Dockerfile ignore file), else the context's
    /// `.dockerignore`, else nothing. Returns the file used.
    pub fn load(
        context: &Path,
        dockerfile: Option<&Path>,
    ) -> io::Result<(Dockerignore, Option<PathBuf>)> {
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let df = if df.is_absolute() {
                df.to_path_buf()
            } else {
                context.join(df)
            };
            let mut name = df.file_name().unwrap_or_default().to_os_string();
            name.push(".dockerignore");
            candidates.push(df.with_file_name(name));
        }
        candidates.push(context.join(".dockerignore"));
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let ignore = Dockerignore::parse(&text).map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: {e}", path.display()),
                        )
                    })?;
                    return Ok((ignore, Some(path)));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            }
        }
        Ok((Dockerignore::default(), None))
    }

    /// This ignore file with `paths` re-included at the end, as the docker CLI appends
    /// `!Dockerfile` and `!.dockerignore` so the daemon always receives them.
    pub fn with_exceptions(&self, paths: &[&str]) -> Dockerignore {
        let mut out = self.clone();
        for p in paths {
            let mut cleaned = clean_path(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            // A path with pattern characters would be matched as a pattern; escape them.
            let mut literal = String::new();
            for c in cleaned.chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                    literal.push('\\');
                }
                literal.push(c);
            }
            if let Ok(p) = Pattern::compile(literal, true) {
                out.patterns.push(p);
            }
        }
        out
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is left out of the
    /// context: the last pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let file = clean_path(rel_path);
        if file == "." || self.patterns.is_empty() {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // Only a pattern that could change the answer needs to be tried.
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(&file);
            if !m {
                let mut prefix = String::new();
                for (i, d) in parents.iter().enumerate() {
                    if i > 0 {
                        prefix.push('/');
                    }
                    prefix.push_str(d);
                    if p.matches(&prefix) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// For an excluded directory: whether an exception (`!pattern`) could re-include
    /// something under it, so a walker must descend; `false` lets it skip the whole tree.
    /// Conservative: `true` whenever unsure.
    pub fn may_contain_included(&self, rel_dir: &str) -> bool {
        let dir = clean_path(rel_dir);
        let dir_comps: Vec<&str> = if dir == "." {
            Vec::new()
        } else {
            dir.split('/').collect()
        };
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| components_compatible(&p.dirs, &dir_comps))
    }
}

/// Whether a pattern with components `pat` could match `dir` or something below it.
fn components_compatible(pat: &[String], dir: &[&str]) -> bool {
    for (i, d) in dir.iter().enumerate() {
        let Some(pc) = pat.get(i) else {
            // The pattern matched an ancestor of `dir` whole: it re-includes everything here.
            return true;
        };
        if pc.contains("**") {
            return true;
        }
        match Pattern::compile(pc.clone(), false) {
            Ok(one) if one.matches(d) => {}
            Ok(_) => return false,
            Err(_) => return true,
        }
    }
    true
}

impl Pattern {
    fn compile(text: String, exclusion: bool) -> Result<Pattern, DockerignoreError> {
        let dirs = text.split('/').map(str::to_string).collect();
        let chars: Vec<char> = text.chars().collect();
        let mut re = String::from("^");
        #[derive(PartialEq)]
        enum T {
            Exact,
            Prefix,
            Suffix,
            Regex,
        }
        let mut kind = T::Exact;
        let mut i = 0;
        let mut first = true;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            match ch {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        if kind == T::Exact {
                            kind = T::Prefix;
                        } else {
                            re.push_str(".*");
                            kind = T::Regex;
                        }
                    } else {
                        re.push_str("(.*/)?");
                        kind = T::Regex;
                    }
                    if first {
                        kind = T::Suffix;
                    }
                }
                '*' => {
                    re.push_str("[^/]*");
                    kind = T::Regex;
                }
                '?' => {
                    re.push_str("[^/]");
                    kind = T::Regex;
                }
                '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                    re.push('\\');
                    re.push(ch);
                }
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        i += 1;
                        re.push_str(&regex::escape(&n.to_string()));
                        kind = T::Regex;
                    }
                    None => re.push_str("\\\\"),
                },
                '[' | ']' => {
                    re.push(ch);
                    kind = T::Regex;
                }
                '^' => re.push_str("\\^"),
                c => re.push(c),
            }
            first = false;
        }
        let matcher = match kind {
            T::Exact => Matcher::Exact,
            T::Prefix => Matcher::Prefix(text[..text.len() - 2].to_string()),
            T::Suffix => Matcher::Suffix(text[2..].to_string()),
            T::Regex => {
                re.push('$');
                Matcher::Regex(
                    Regex::new(&re).map_err(|_| DockerignoreError::BadPattern(text.clone()))?,
                )
            }
        };
        Ok(Pattern {
            text,
            dirs,
            exclusion,
            matcher,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.text,
            Matcher::Prefix(p) => path.starts_with(p.as_str()),
            Matcher::Suffix(s) => {
                path.ends_with(s.as_str())
                    || (s.starts_with('/') && path == &s[1..])
                    || s.is_empty()
            }
            Matcher::Regex(r) => r.is_match(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Dockerignore {
        Dockerignore::parse(text).unwrap()
    }

    #[test]
    fn docs_examples() {
        // The example of Docker's documentation.
        let d = ig("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        for (p, want) in [
            ("somedir/temporary.txt", true),
            ("somedir/temp", true),
            ("somedir/subdir/temporary.txt", true),
            ("tempa", true),
            ("tempb/x", true),
            ("temp", false),
            ("temporary.txt", false),
            ("a/b/c/temp", false),
        ] {
            assert_eq!(d.is_excluded(p), want, "{p}");
        }
        let d = ig("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));
        assert!(d.is_excluded("README-secret.md"));
        let d = ig("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!d.is_excluded("README-secret.md"));
        // `**` at any depth.
        let d = ig("**/*.go\n");
        assert!(d.is_excluded("a.go") && d.is_excluded("x/y/z.go"));
        assert!(!d.is_excluded("x/y/z.goo"));
    }

    #[test]
    fn cleaning_and_directories() {
        let d = ig("/node_modules/\n./build\n  dist//out  \n");
        assert!(d.is_excluded("node_modules"));
        assert!(d.is_excluded("node_modules/a/b.js"));
        assert!(d.is_excluded("build/x"));
        assert!(d.is_excluded("dist/out/f"));
        assert!(!d.is_excluded("src/node_modules"));
        assert!(!d.is_excluded("."));
        let d = ig("foo/**\n**/bar\n**\n!keep\n");
        assert!(d.is_excluded("foo/x"));
        assert!(!d.is_excluded("keep") && !d.is_excluded("keep/inner"));
        assert!(d.is_excluded("other"));
        let d = ig("foo/**\n**/bar\n");
        assert!(d.is_excluded("a/b/bar") && d.is_excluded("bar") && !d.is_excluded("barn"));
        assert!(!d.is_excluded("foo"));
        // Escapes and classes.
        let d = ig("\\*.txt\nfile[0-9]\n");
        assert!(d.is_excluded("*.txt") && !d.is_excluded("a.txt"));
        assert!(d.is_excluded("file1") && !d.is_excluded("filex"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Dockerignore::parse("!\n").unwrap_err().to_string(),
            "illegal exclusion pattern: \"!\""
        );
        assert!(Dockerignore::parse("[\n").is_err());
    }

    #[test]
    fn pruning() {
        let d = ig("node_modules\n");
        assert!(d.is_excluded("node_modules") && !d.may_contain_included("node_modules"));
        let d = ig("vendor\n!vendor/keep.txt\n");
        assert!(d.may_contain_included("vendor"));
        assert!(!d.is_excluded("vendor/keep.txt") && d.is_excluded("vendor/other"));
        let d = ig("*\n!src/*/main.go\n");
        assert!(d.may_contain_included("src") && d.may_contain_included("src/a"));
        assert!(!d.may_contain_included("docs"));
        let d = ig("*\n!**/*.go\n");
        assert!(d.may_contain_included("anything/deep"));
    }

    #[test]
    fn clean() {
        assert_eq!(clean_path("./a//b/../c/"), "a/c");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("../a"), "../a");
    }
}
