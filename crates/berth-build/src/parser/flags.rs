//! Instruction flags (`--from=x`, `--link`), checked against the flags an instruction
//! declares, as BuildKit's `BFlags`: unknown, duplicate, missing value, bad boolean.

use super::error::{InstructionError, suggest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    String,
    /// Repeatable (`--mount`, `--exclude`).
    Strings,
}

pub(crate) struct Flags {
    decl: Vec<(&'static str, Kind)>,
    values: Vec<(&'static str, String)>,
}

impl Flags {
    /// Checks `args` (the words extracted before the arguments) against `decl`.
    pub(crate) fn parse(
        args: &[String],
        decl: &[(&'static str, Kind)],
    ) -> Result<Flags, InstructionError> {
        let mut flags = Flags {
            decl: decl.to_vec(),
            values: Vec::new(),
        };
        for arg in args {
            if arg == "--" {
                break;
            }
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg.as_str(), None),
            };
            let bare = name.strip_prefix("--").unwrap_or(name);
            let Some(&(decl_name, kind)) = decl.iter().find(|(n, _)| *n == bare) else {
                let names: Vec<&str> = decl.iter().map(|(n, _)| *n).collect();
                return Err(InstructionError::UnknownFlag {
                    flag: name.to_string(),
                    suggestion: suggest(bare, &names, true),
                });
            };
            if kind != Kind::Strings && flags.values.iter().any(|(n, _)| *n == decl_name) {
                return Err(InstructionError::DuplicateFlag {
                    flag: name.to_string(),
                });
            }
            let value = match (kind, value) {
                (Kind::Bool, Some("")) | (Kind::String | Kind::Strings, None) => {
                    return Err(InstructionError::MissingFlagValue {
                        flag: name.to_string(),
                    });
                }
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".to_string(),
                    "false" => "false".to_string(),
                    _ => {
                        return Err(InstructionError::NotBoolean {
                            flag: name.to_string(),
                            value: v.to_string(),
                        });
                    }
                },
                (_, Some(v)) => v.to_string(),
            };
            flags.values.push((decl_name, value));
        }
        Ok(flags)
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        debug_assert!(
            self.decl
                .iter()
                .any(|(n, k)| *n == name && *k == Kind::Bool)
        );
        self.string(name).as_deref() == Some("true")
    }
}
