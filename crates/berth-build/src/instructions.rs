//! The typed Dockerfile: what the parser produces and the engine consumes.
//!
//! One struct per instruction (as BuildKit's `instructions/commands.go` has one command type
//! each), every field as written in the Dockerfile: the engine substitutes variables just
//! before a step runs, because ARG and ENV values are only known then. Flags that an
//! instruction does not accept are refused by the parser, so the engine never sees them.

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives from the head of the file.
    pub directives: Directives,
    /// `ARG`s before the first `FROM`: the global scope, usable in every `FROM` line and
    /// redeclared (without a value) inside a stage to be used there.
    pub meta_args: Vec<Located<ArgInstruction>>,
    /// The stages, in file order; a stage's index is its position here.
    pub stages: Vec<Stage>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// Recorded, otherwise ignored: Berth has one frontend.
    pub syntax: Option<String>,
    /// The escape character, `\` unless `# escape=` says `` ` ``.
    pub escape: char,
    /// The `check` directive as written (build checks are not run).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A value with the place in the Dockerfile it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// 1-based line of the instruction's first line.
    pub line: usize,
    /// 1-based line of its last line (continuations and here-documents included).
    pub end_line: usize,
    /// The instruction as the legacy builder prints it in `Step N/M : <original>`: the
    /// keyword and its arguments as written, continuation lines joined, here-document
    /// bodies left out.
    pub original: String,
    pub value: T,
}

/// One `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS name`, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    pub from: Located<FromInstruction>,
    pub instructions: Vec<Located<Instruction>>,
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInstruction {
    /// The base as written (may hold `$VAR` from global ARGs; `scratch`; a stage name).
    pub image: String,
    pub platform: Option<String>,
    /// Same as [`Stage::name`].
    pub name: Option<String>,
}

/// Every instruction but `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(RunInstruction),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    /// `LABEL k=v ...` (and the legacy `LABEL k v`), in order.
    Label(Vec<KeyValue>),
    /// `MAINTAINER name`: the deprecated author field.
    Maintainer(String),
    /// `EXPOSE 80 443/tcp ...`, each word as written.
    Expose(Vec<String>),
    /// `ENV k=v ...` and the legacy `ENV k v`, in order.
    Env(Vec<KeyValue>),
    Add(CopyInstruction),
    Copy(CopyInstruction),
    /// `VOLUME ["/a", "/b"]` or `VOLUME /a /b`.
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(ArgInstruction),
    /// `ONBUILD <instruction>`: kept as text (the image config stores it so), and parsed when
    /// an image built from this one runs it. `ONBUILD FROM|ONBUILD|MAINTAINER` are refused
    /// by the parser.
    Onbuild(String),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// `SHELL ["executable", "params"]` (JSON form only).
    Shell(Vec<String>),
}

/// `key=value` as written: quotes, escapes and `$` untouched, so that `'$x'` stays literal.
/// [`Instruction::expand`] substitutes and removes quotes as Docker's shell lexer does
/// (`LABEL "a b"="c d"` gives the key `a b`); call it even when no variable is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// The shell form runs through the stage's SHELL; the exec form is the argv itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    pub command: CommandLine,
    pub mounts: Vec<RunMount>,
    pub network: Option<RunNetwork>,
    /// `--security=insecure|sandbox` as written.
    pub security: Option<String>,
    /// Here-documents of this instruction (`RUN <<EOF`), in order. With a shell-form
    /// command that is only `<<EOF` (or `<<EOF` piped to nothing else), the first one is the
    /// script: see the Dockerfile reference's "Here-Documents" for how RUN uses them.
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNetwork {
    Default,
    None,
    Host,
}

/// One `RUN --mount=type=...,k=v,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub kind: MountKind,
    /// `target`/`dst`/`destination` (required except for `secret` and `ssh`).
    pub target: Option<String>,
    /// `source`/`src`: a path in the context or in `from`.
    pub source: Option<String>,
    /// `from`: a stage name or an image for bind and cache mounts.
    pub from: Option<String>,
    /// `rw`/`readwrite` (bind mounts are read-only by default; cache mounts read-write).
    pub read_write: bool,
    /// `id` of a cache, secret or ssh mount.
    pub id: Option<String>,
    /// `sharing` of a cache mount.
    pub sharing: CacheSharing,
    /// `mode`, `uid`, `gid` as written (octal mode).
    pub mode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// `required` of a secret or ssh mount.
    pub required: bool,
    /// `size` of a tmpfs mount as written.
    pub size: Option<String>,
    /// `env` of a secret mount: the variable that receives the secret.
    pub env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// `COPY` and `ADD` (ADD accepts URLs, `--checksum`, `--keep-git-dir` and auto-extracts
/// local tars; the parser refuses flags the instruction does not take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstruction {
    /// Sources as written (may hold wildcards and `$VAR`); for here-documents, their names
    /// (in place of `<<EOF`), each with its entry in `heredocs`.
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from=stage|index|image`.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    /// `--exclude=pattern`, repeatable.
    pub exclude: Vec<String>,
    /// ADD `--checksum=sha256:...`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD `--unpack[=bool]`: `None` when not given (auto-extract local tars only).
    pub unpack: Option<bool>,
    /// `COPY <<EOF /dest`: each here-document becomes a file named after it.
    pub heredocs: Vec<Heredoc>,
}

/// A here-document (`<<EOF`, `<<-EOF`, `<<"EOF"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word (`EOF`), which is also a COPY here-document's file name.
    pub name: String,
    /// The body, every line ending in `\n`, leading tabs already removed for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no variable expansion.
    pub expand: bool,
}

/// `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgInstruction {
    pub args: Vec<ArgDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    None,
    Cmd {
        test: CommandLine,
        /// Durations as written (`30s`, `1m30s`); the engine converts them.
        interval: Option<String>,
        timeout: Option<String>,
        start_period: Option<String>,
        start_interval: Option<String>,
        retries: Option<String>,
    },
}

impl Instruction {
    /// The instruction's keyword in capitals, as Docker names it in messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
        }
    }
}
