//! TEMPORARY stand-ins for the language half (branch build-lang), so the engine compiles
//! before it is merged. Removed at the merge.

use crate::instructions::{Dockerfile, FromInstruction, Instruction};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ExpandError(pub String);

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

pub fn parse(_text: &str) -> Result<Dockerfile, ParseError> {
    Err(ParseError("the Dockerfile parser is not merged yet".into()))
}

impl Instruction {
    pub fn expand(
        &self,
        _lookup: &dyn Fn(&str) -> Option<String>,
        _escape: char,
    ) -> Result<Instruction, ExpandError> {
        Ok(self.clone())
    }
}

impl FromInstruction {
    pub fn expand(
        &self,
        _lookup: &dyn Fn(&str) -> Option<String>,
        _escape: char,
    ) -> Result<FromInstruction, ExpandError> {
        Ok(self.clone())
    }
}
