//! Dockerfile builds.
//!
//! - [`instructions`]: the typed Dockerfile ([`instructions::Dockerfile`]), the contract between
//!   the parser and the engine. Fields hold the text as written (unexpanded): variable
//!   substitution depends on build-time ARG/ENV values, so the engine expands each instruction
//!   just before it runs it, with [`instructions::Instruction::expand`].
//! - [`parser`] (text → [`instructions::Dockerfile`]): directives, comments, continuation,
//!   here-documents, JSON and shell forms, flags, with errors in Docker's words and line numbers.
//! - [`expand`]: `$v`, `${v}`, `${v:-d}`, ... as the Dockerfile reference lists them.
//! - `dockerignore`: `.dockerignore` patterns compiled once, with directory pruning.

pub mod cache;
pub mod context;
pub mod dockerignore;
pub mod engine;
pub mod executor;
pub mod expand;
pub mod git;
pub mod instructions;
pub mod parser;
pub mod plan;
pub mod session;

pub use expand::{ExpandError, expand_word, expand_words};
pub use parser::{ParseError, parse, parse_named, parse_with_warnings};
