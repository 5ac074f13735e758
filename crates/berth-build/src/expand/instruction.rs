//! Which fields of which instruction are substituted: the Dockerfile reference's list
//! (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, and ONBUILD
//! not at all), plus what BuildKit expands beyond it: ARG names and defaults, the
//! `--chown`/`--chmod`/`--checksum`/`--from`/`--exclude` flags of COPY and ADD, and the
//! `RUN --mount` options. RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK are left to the shell.

use super::{ExpandError, Lexer, expand_word, expand_words};
use crate::instructions::{
    CopyInstruction, FromInstruction, Heredoc, Instruction, KeyValue, RunMount,
};

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn opt(v: &Option<String>, lookup: Lookup, escape: char) -> Result<Option<String>, ExpandError> {
    v.as_deref()
        .map(|w| expand_word(w, lookup, escape))
        .transpose()
}

fn all(v: &[String], lookup: Lookup, escape: char) -> Result<Vec<String>, ExpandError> {
    v.iter().map(|w| expand_word(w, lookup, escape)).collect()
}

fn pairs(kvs: &[KeyValue], lookup: Lookup, escape: char) -> Result<Vec<KeyValue>, ExpandError> {
    kvs.iter()
        .map(|kv| {
            Ok(KeyValue {
                key: expand_word(&kv.key, lookup, escape)?,
                value: expand_word(&kv.value, lookup, escape)?,
            })
        })
        .collect()
}

/// A here-document body: variables only, quotes are text (BuildKit's `ExpandRaw`).
fn heredoc(h: &Heredoc, lookup: Lookup) -> Result<Heredoc, ExpandError> {
    if !h.expand {
        return Ok(h.clone());
    }
    let lexer = Lexer {
        skip_quotes: true,
        ..Lexer::new('\\')
    };
    Ok(Heredoc {
        content: lexer.process(&h.content, lookup)?.word,
        ..h.clone()
    })
}

fn copy(c: &CopyInstruction, lookup: Lookup, escape: char) -> Result<CopyInstruction, ExpandError> {
    let sources = c
        .sources
        .iter()
        .map(|s| {
            // Here-document names are file names, not words to expand.
            if c.heredocs.iter().any(|h| &h.name == s) {
                Ok(s.clone())
            } else {
                expand_word(s, lookup, escape)
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(CopyInstruction {
        sources,
        dest: expand_word(&c.dest, lookup, escape)?,
        from: opt(&c.from, lookup, escape)?,
        chown: opt(&c.chown, lookup, escape)?,
        chmod: opt(&c.chmod, lookup, escape)?,
        exclude: all(&c.exclude, lookup, escape)?,
        checksum: opt(&c.checksum, lookup, escape)?,
        heredocs: c
            .heredocs
            .iter()
            .map(|h| heredoc(h, lookup))
            .collect::<Result<_, _>>()?,
        ..c.clone()
    })
}

fn mount(m: &RunMount, lookup: Lookup, escape: char) -> Result<RunMount, ExpandError> {
    Ok(RunMount {
        target: opt(&m.target, lookup, escape)?,
        source: opt(&m.source, lookup, escape)?,
        from: opt(&m.from, lookup, escape)?,
        id: opt(&m.id, lookup, escape)?,
        mode: opt(&m.mode, lookup, escape)?,
        uid: opt(&m.uid, lookup, escape)?,
        gid: opt(&m.gid, lookup, escape)?,
        size: opt(&m.size, lookup, escape)?,
        env: opt(&m.env, lookup, escape)?,
        ..m.clone()
    })
}

impl Instruction {
    /// The instruction with variables substituted (and quotes removed) where Docker does;
    /// `lookup` answers the stage's ARG and ENV values at this point of the build.
    pub fn expand(&self, lookup: Lookup, escape: char) -> Result<Instruction, ExpandError> {
        use Instruction as I;
        Ok(match self {
            I::Env(kvs) => I::Env(pairs(kvs, lookup, escape)?),
            I::Label(kvs) => I::Label(pairs(kvs, lookup, escape)?),
            I::Add(c) => I::Add(copy(c, lookup, escape)?),
            I::Copy(c) => I::Copy(copy(c, lookup, escape)?),
            I::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(expand_words(p, lookup, escape)?);
                }
                I::Expose(out)
            }
            I::Volume(v) => I::Volume(all(v, lookup, escape)?),
            I::User(u) => I::User(expand_word(u, lookup, escape)?),
            I::Workdir(w) => I::Workdir(expand_word(w, lookup, escape)?),
            I::StopSignal(s) => I::StopSignal(expand_word(s, lookup, escape)?),
            I::Arg(a) => {
                let mut a = a.clone();
                for d in &mut a.args {
                    d.name = expand_word(&d.name, lookup, escape)?;
                    d.default = opt(&d.default, lookup, escape)?;
                }
                I::Arg(a)
            }
            I::Run(r) => {
                let mut r = r.clone();
                r.mounts = r
                    .mounts
                    .iter()
                    .map(|m| mount(m, lookup, escape))
                    .collect::<Result<_, _>>()?;
                I::Run(r)
            }
            I::Cmd(_)
            | I::Entrypoint(_)
            | I::Shell(_)
            | I::Healthcheck(_)
            | I::Maintainer(_)
            | I::Onbuild(_) => self.clone(),
        })
    }
}

impl FromInstruction {
    /// `FROM` sees only the global (before the first FROM) ARGs: `lookup` should answer
    /// those, with `--build-arg` values applied.
    pub fn expand(&self, lookup: Lookup, escape: char) -> Result<FromInstruction, ExpandError> {
        Ok(FromInstruction {
            image: expand_word(&self.image, lookup, escape)?,
            platform: opt(&self.platform, lookup, escape)?,
            name: self.name.clone(),
        })
    }
}
