//! Container names: Docker's grammar, and generated `adjective_surname` names for containers
//! created without one. The word lists are Berth's own: harbour and sea words, and surnames
//! of navigators, shipwrights and oceanographers.

use crate::error::{Result, invalid};

/// Validates a name as given (with or without the leading `/`) and returns it without the
/// slash. Docker's rule: `/?[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let bytes = bare.as_bytes();
    let ok = bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(invalid(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(bare.to_string())
}

const ADJECTIVES: &[&str] = &[
    "anchored",
    "ardent",
    "azure",
    "becalmed",
    "blithe",
    "bold",
    "brackish",
    "breezy",
    "briny",
    "buoyant",
    "calm",
    "candid",
    "coastal",
    "coral",
    "crisp",
    "daring",
    "deep",
    "distant",
    "drifting",
    "eager",
    "earnest",
    "ebbing",
    "fair",
    "fathomless",
    "fleet",
    "flowing",
    "foamy",
    "gallant",
    "gentle",
    "gleaming",
    "golden",
    "hardy",
    "hearty",
    "hushed",
    "idle",
    "inland",
    "jaunty",
    "keen",
    "leeward",
    "limpid",
    "lively",
    "lucid",
    "mellow",
    "merry",
    "misty",
    "moored",
    "nautical",
    "nimble",
    "noble",
    "offshore",
    "pelagic",
    "placid",
    "plucky",
    "polar",
    "quiet",
    "rolling",
    "rugged",
    "salty",
    "serene",
    "shining",
    "silver",
    "sleek",
    "snug",
    "spry",
    "steady",
    "stout",
    "sturdy",
    "sunlit",
    "swift",
    "tidal",
    "trusty",
    "vivid",
    "wandering",
    "wavy",
    "windward",
    "wistful",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "amundsen",
    "baffin",
    "ballard",
    "barents",
    "beebe",
    "bering",
    "bligh",
    "bougainville",
    "brunel",
    "cabot",
    "carson",
    "cartier",
    "cheng",
    "cousteau",
    "dampier",
    "drake",
    "earle",
    "ekman",
    "ericsson",
    "flinders",
    "fram",
    "franklin",
    "fridtjof",
    "frobisher",
    "gama",
    "hayden",
    "heezen",
    "henson",
    "heyerdahl",
    "hudson",
    "humboldt",
    "kon",
    "kupe",
    "laperouse",
    "magellan",
    "maury",
    "mawson",
    "nansen",
    "nares",
    "ortelius",
    "piccard",
    "pytheas",
    "ross",
    "scoresby",
    "shackleton",
    "slocum",
    "stommel",
    "sverdrup",
    "tasman",
    "tharp",
    "vancouver",
    "vespucci",
    "walsh",
    "wegener",
    "weddell",
    "zheng",
];

/// A random `adjective_surname` name. `taken` says whether a name is in use; after a few
/// collisions a digit is appended, as Docker does.
pub fn generate(taken: &dyn Fn(&str) -> bool) -> String {
    let pick = |list: &[&'static str]| list[rand::random_range(0..list.len())];
    for attempt in 0..10 {
        let surname = pick(SURNAMES);
        let mut name = format!("{}_{}", pick(ADJECTIVES), surname);
        if attempt > 2 {
            name.push_str(&rand::random_range(0..10).to_string());
        }
        if !taken(&name) {
            return name;
        }
    }
    // Practically unreachable: fall back to a random suffix long enough to be unique.
    format!("{}_{:08x}", pick(ADJECTIVES), rand::random::<u32>())
}

/// A new container id: 64 random hex characters that do not look like a number (Docker
/// avoids ids whose 12-character short form is all digits, which would parse as an integer).
pub fn new_id() -> String {
    loop {
        let bytes: [u8; 32] = rand::random();
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_grammar() {
        assert_eq!(validate("web").unwrap(), "web");
        assert_eq!(validate("/web-1.a_b").unwrap(), "web-1.a_b");
        for bad in ["", "a", "-web", "_x", "we b", "web/1", "/", "é1"] {
            let err = validate(bad).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "Invalid container name ({bad}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )
            );
        }
    }

    #[test]
    fn generated_names_are_valid_and_avoid_taken_ones() {
        for _ in 0..200 {
            let n = generate(&|_| false);
            assert!(validate(&n).is_ok(), "{n}");
            assert!(n.contains('_'));
        }
        let first = generate(&|_| false);
        let other = generate(&|n| n == first);
        assert_ne!(first, other);
        let forced = generate(&|_| true);
        assert!(validate(&forced).is_ok());
    }

    #[test]
    fn ids_are_64_hex() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
