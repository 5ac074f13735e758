//! Repository names and tags, validated before they become storage paths: the grammar of the
//! distribution spec leaves no `.`/`..` component, no empty component and no leading `_`
//! (which keeps names apart from the `_manifests`-style directories in `paths.rs`).

/// The longest repository name accepted (distribution's limit).
pub const MAX_NAME_LEN: usize = 255;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        let sep = b[i];
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let run = &b[start..i];
        let ok = match sep {
            b'.' => run.len() == 1,
            b'_' => run.len() <= 2 && run.iter().all(|&x| x == b'_'),
            b'-' => run.iter().all(|&x| x == b'-'),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || b"._-".contains(&x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "team/app",
            "a-b--c/d.e/f__g",
            "x0/1y",
            "library/busybox",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../etc",
            "a/../b",
            "a//b",
            "A",
            "a/",
            "/a",
            "_a",
            "a/_layers",
            "a..b",
            "a___b",
            "a.",
            ".",
            "a b",
            "a%2f",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(!valid_name(&"a".repeat(256)));
    }

    #[test]
    fn tags() {
        for ok in ["latest", "1.0", "_x", "A-b_c.d"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", &"a".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
