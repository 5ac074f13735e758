//! Dockerfile text → [`Dockerfile`], in two passes as BuildKit's parser does (and as the
//! legacy builder reports errors):
//!
//! 1. [`lines`]: the line level. Directives at the head, comments, line continuation with the
//!    escape character, here-document bodies. Each instruction becomes a [`lines::Node`]
//!    (keyword, flags, argument text, original text, line range). Errors here are reported as
//!    `failed to parse Dockerfile: <why>`, with no line number, as dockerd does.
//! 2. [`instr`]: each node becomes a typed [`Instruction`] (flags checked against the ones the
//!    instruction accepts, arguments split per instruction). Errors here read
//!    `dockerfile parse error on line N: <why>`.
//!
//! Nothing is expanded: `$VAR` stays in the fields until the engine calls `expand`.

mod error;
mod flags;
mod instr;
mod lines;
mod words;

#[cfg(test)]
mod tests;

pub use error::{InstructionError, ParseError, SyntaxError};
pub use lines::dump;
pub use words::parse_go_duration;

use crate::instructions::{Dockerfile, Instruction, Located, Stage};

/// Parses a Dockerfile named `Dockerfile` (the name only appears in error messages).
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    parse_named(text, "Dockerfile")
}

/// Parses a Dockerfile; `name` is the path the client gave (`-f`), which dockerd quotes in
/// the messages for an empty or unparsable file.
pub fn parse_named(text: &str, name: &str) -> Result<Dockerfile, ParseError> {
    parse_with_warnings(text, name).map(|(df, _)| df)
}

/// [`parse_named`], also returning the warnings dockerd prints at the start of the build
/// output (each line ends in `\n`): empty continuation lines, which Docker still accepts.
pub fn parse_with_warnings(
    text: &str,
    name: &str,
) -> Result<(Dockerfile, Vec<String>), ParseError> {
    if text.is_empty() {
        return Err(ParseError::Empty {
            name: name.to_string(),
        });
    }
    let parsed = lines::parse_lines(text).map_err(|kind| ParseError::Syntax {
        name: name.to_string(),
        kind,
    })?;

    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &parsed.nodes {
        let parsed_node = instr::parse_node(node).map_err(|kind| ParseError::Instruction {
            line: node.start_line,
            kind,
        })?;
        match parsed_node {
            instr::Parsed::From(from) => stages.push(Stage {
                name: from.name.clone(),
                from: located(node, from),
                instructions: Vec::new(),
            }),
            instr::Parsed::Instruction(Instruction::Arg(arg)) if stages.is_empty() => {
                meta_args.push(located(node, arg));
            }
            instr::Parsed::Instruction(instruction) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(located(node, instruction)),
                None => {
                    return Err(ParseError::NoStage {
                        line: node.start_line,
                    });
                }
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError::NoFrom);
    }
    let mut warnings: Vec<String> = parsed
        .empty_continuations
        .iter()
        .map(|line| format!("[WARNING]: Empty continuation line found in: {line}\n"))
        .collect();
    if !warnings.is_empty() {
        warnings.push(
            "[WARNING]: Empty continuation lines will become errors in a future release.\n"
                .to_string(),
        );
    }
    Ok((
        Dockerfile {
            directives: parsed.directives,
            meta_args,
            stages,
        },
        warnings,
    ))
}

fn located<T>(node: &lines::Node, value: T) -> Located<T> {
    Located {
        line: node.start_line,
        end_line: node.end_line,
        original: node.original.trim().to_string(),
        value,
    }
}
