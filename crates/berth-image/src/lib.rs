//! placeholder: see the helper brief
