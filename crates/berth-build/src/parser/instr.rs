//! The instruction level (BuildKit's `instructions.ParseInstruction`): each line-level node
//! becomes a typed instruction, its flags checked and its arguments validated.

use super::error::{InstructionError, MountError, suggest};
use super::flags::{Flags, Kind};
use super::lines::{Node, RawHeredoc, parse_heredoc};
use super::words::parse_go_duration;
use crate::instructions::*;

pub(crate) enum Parsed {
    From(FromInstruction),
    Instruction(Instruction),
}

type E = InstructionError;

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

pub(crate) fn parse_node(node: &Node) -> Result<Parsed, InstructionError> {
    let no_flags = || Flags::parse(&node.flags, &[]).map(|_| ());
    let one = |keyword: &'static str| -> Result<String, E> {
        if node.args.len() != 1 {
            return Err(E::ExactlyOneArgument { keyword });
        }
        Ok(node.args[0].clone())
    };
    let instruction = match node.keyword.to_ascii_lowercase().as_str() {
        "from" => return parse_from(node).map(Parsed::From),
        "env" => {
            no_flags()?;
            Instruction::Env(key_values(node, "ENV")?)
        }
        "label" => {
            no_flags()?;
            Instruction::Label(key_values(node, "LABEL")?)
        }
        "maintainer" => {
            let m = one("MAINTAINER")?;
            no_flags()?;
            Instruction::Maintainer(m)
        }
        "add" => Instruction::Add(parse_copy(node, "ADD")?),
        "copy" => Instruction::Copy(parse_copy(node, "COPY")?),
        "onbuild" => parse_onbuild(node)?,
        "workdir" => {
            let w = one("WORKDIR")?;
            no_flags()?;
            Instruction::Workdir(w)
        }
        "run" => Instruction::Run(parse_run(node)?),
        "cmd" => {
            no_flags()?;
            Instruction::Cmd(command_line(node))
        }
        "entrypoint" => {
            no_flags()?;
            Instruction::Entrypoint(command_line(node))
        }
        "healthcheck" => Instruction::Healthcheck(parse_healthcheck(node)?),
        "expose" => {
            if node.args.is_empty() {
                return Err(E::AtLeastOneArgument { keyword: "EXPOSE" });
            }
            no_flags()?;
            // dockerd sorts the ports as written.
            let mut ports = node.args.clone();
            ports.sort();
            Instruction::Expose(ports)
        }
        "user" => {
            let u = one("USER")?;
            no_flags()?;
            Instruction::User(u)
        }
        "volume" => {
            if node.args.is_empty() {
                return Err(E::AtLeastOneArgument { keyword: "VOLUME" });
            }
            no_flags()?;
            let mut volumes = Vec::new();
            for v in &node.args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(E::EmptyVolume);
                }
                volumes.push(v.to_string());
            }
            Instruction::Volume(volumes)
        }
        // STOPSIGNAL and ARG do not look at flags in dockerd; neither does Berth.
        "stopsignal" => Instruction::StopSignal(one("STOPSIGNAL")?),
        "arg" => Instruction::Arg(parse_arg(node)?),
        "shell" => {
            no_flags()?;
            if node.args.is_empty() {
                return Err(E::AtLeastOneArgument { keyword: "SHELL" });
            }
            if !node.json {
                return Err(E::NotJson { keyword: "SHELL" });
            }
            Instruction::Shell(node.args.clone())
        }
        _ => {
            return Err(E::UnknownInstruction {
                name: node.keyword.clone(),
                suggestion: suggest(&node.keyword, KEYWORDS, false),
            });
        }
    };
    Ok(Parsed::Instruction(instruction))
}

fn parse_from(node: &Node) -> Result<FromInstruction, E> {
    let args = &node.args;
    let name = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_lowercase();
            if !valid_stage_name(&name) {
                return Err(E::StageName {
                    name: args[2].clone(),
                });
            }
            Some(name)
        }
        1 => None,
        _ => return Err(E::FromArguments),
    };
    let flags = Flags::parse(&node.flags, &[("platform", Kind::String)])?;
    Ok(FromInstruction {
        image: args[0].clone(),
        platform: flags.string("platform"),
        name,
    })
}

/// `^[a-z][a-z0-9-_.]*$`, as BuildKit's `validStageName`.
pub(crate) fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn key_values(node: &Node, keyword: &'static str) -> Result<Vec<KeyValue>, E> {
    if node.pairs.is_empty() {
        return Err(E::AtLeastOneArgument { keyword });
    }
    node.pairs
        .iter()
        .map(|(k, v, _)| {
            if k.is_empty() {
                Err(E::BlankName { keyword })
            } else {
                Ok(KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
            }
        })
        .collect()
}

fn parse_arg(node: &Node) -> Result<ArgInstruction, E> {
    if node.args.is_empty() {
        return Err(E::AtLeastOneArgument { keyword: "ARG" });
    }
    let mut args = Vec::new();
    for a in &node.args {
        let decl = match a.split_once('=') {
            Some(("", _)) => return Err(E::BlankName { keyword: "ARG" }),
            Some((k, v)) => ArgDecl {
                name: k.to_string(),
                default: Some(v.to_string()),
            },
            None => ArgDecl {
                name: a.clone(),
                default: None,
            },
        };
        args.push(decl);
    }
    Ok(ArgInstruction { args })
}

fn heredoc(raw: &RawHeredoc) -> Heredoc {
    let content = if raw.chomp {
        raw.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    } else {
        raw.content.clone()
    };
    Heredoc {
        name: raw.name.clone(),
        content,
        expand: raw.expand,
    }
}

fn parse_copy(node: &Node, keyword: &'static str) -> Result<CopyInstruction, E> {
    if node.args.len() < 2 {
        return Err(E::NoDestination { keyword });
    }
    let add = keyword == "ADD";
    let decl: &[(&'static str, Kind)] = if add {
        &[
            ("chown", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::String),
            ("unpack", Kind::Bool),
            ("exclude", Kind::Strings),
        ]
    } else {
        &[
            ("chown", Kind::String),
            ("from", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("exclude", Kind::Strings),
            ("parents", Kind::Bool),
        ]
    };
    let flags = Flags::parse(&node.flags, decl)?;
    let (srcs, dest) = node.args.split_at(node.args.len() - 1);
    let dest = dest[0].clone();
    if matches!(parse_heredoc(&dest), Ok(Some(_))) {
        return Err(E::BadHeredoc {
            keyword,
            what: "a destination",
        });
    }
    let mut sources = Vec::new();
    let mut heredocs = Vec::new();
    for src in srcs {
        match parse_heredoc(src) {
            Ok(Some(doc)) => {
                let raw = node.heredocs.iter().find(|h| h.name == doc.name);
                let mut h = raw.map(heredoc).unwrap_or(Heredoc {
                    name: doc.name.clone(),
                    content: String::new(),
                    expand: doc.expand,
                });
                h.expand = doc.expand;
                sources.push(doc.name);
                heredocs.push(h);
            }
            _ => sources.push(src.clone()),
        }
    }
    Ok(CopyInstruction {
        sources,
        dest,
        from: if add { None } else { flags.string("from") },
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: !add && flags.bool("parents"),
        exclude: flags.strings("exclude"),
        checksum: if add { flags.string("checksum") } else { None },
        keep_git_dir: add && flags.bool("keep-git-dir"),
        unpack: if add && flags.string("unpack").is_some() {
            Some(flags.bool("unpack"))
        } else {
            None
        },
        heredocs,
    })
}

fn parse_onbuild(node: &Node) -> Result<Instruction, E> {
    if node.args.is_empty() {
        return Err(E::AtLeastOneArgument { keyword: "ONBUILD" });
    }
    Flags::parse(&node.flags, &[])?;
    let trigger = node.args[0].trim().to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => return Err(E::OnbuildChain),
        "MAINTAINER" | "FROM" => return Err(E::OnbuildTrigger { trigger }),
        _ => {}
    }
    // The expression is the line without the ONBUILD keyword; here-document bodies follow,
    // each closed by its delimiter, so the stored trigger can be parsed again later.
    let original = node.original.trim_start();
    let mut expr = original[node.keyword.len().min(original.len())..]
        .trim_start()
        .to_string();
    for doc in &node.heredocs {
        expr.push('\n');
        expr.push_str(&doc.content);
        expr.push_str(&doc.name);
    }
    Ok(Instruction::Onbuild(expr))
}

fn command_line(node: &Node) -> CommandLine {
    if node.json {
        CommandLine::Exec(node.args.clone())
    } else {
        CommandLine::Shell(node.args.join(" "))
    }
}

fn parse_run(node: &Node) -> Result<RunInstruction, E> {
    let flags = Flags::parse(
        &node.flags,
        &[
            ("mount", Kind::Strings),
            ("network", Kind::String),
            ("security", Kind::String),
        ],
    )?;
    let mounts = flags
        .strings("mount")
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>, _>>()?;
    let network = match flags.string("network").as_deref() {
        None => None,
        Some("default") => Some(RunNetwork::Default),
        Some("none") => Some(RunNetwork::None),
        Some("host") => Some(RunNetwork::Host),
        Some(other) => {
            return Err(E::Network {
                value: other.to_string(),
            });
        }
    };
    let security = flags.string("security");
    if let Some(s) = security
        .as_ref()
        .filter(|s| *s != "sandbox" && *s != "insecure")
    {
        return Err(E::Security { value: s.clone() });
    }
    Ok(RunInstruction {
        command: command_line(node),
        mounts,
        network,
        security,
        heredocs: node.heredocs.iter().map(heredoc).collect(),
    })
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, E> {
    let Some(kind) = node.args.first() else {
        return Err(E::AtLeastOneArgument {
            keyword: "HEALTHCHECK",
        });
    };
    let kind = kind.to_ascii_uppercase();
    let rest = &node.args[1..];
    if kind == "NONE" {
        if !rest.is_empty() {
            return Err(E::HealthcheckNoneArguments);
        }
        return Ok(Healthcheck::None);
    }
    let flags = Flags::parse(
        &node.flags,
        &[
            ("interval", Kind::String),
            ("timeout", Kind::String),
            ("start-period", Kind::String),
            ("start-interval", Kind::String),
            ("retries", Kind::String),
        ],
    )?;
    if kind != "CMD" {
        return Err(E::HealthcheckType { kind });
    }
    if rest.is_empty() {
        return Err(E::HealthcheckMissingCommand);
    }
    let test = if node.json {
        CommandLine::Exec(rest.to_vec())
    } else {
        CommandLine::Shell(rest.join(" "))
    };
    let duration = |name: &str| -> Result<Option<String>, E> {
        let Some(v) = flags.string(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let d = parse_go_duration(&v).ok_or_else(|| E::Duration { value: v.clone() })?;
        if !d.is_zero() && d < std::time::Duration::from_millis(1) {
            return Err(E::IntervalTooShort {
                flag: name.to_string(),
            });
        }
        Ok(Some(v))
    };
    let interval = duration("interval")?;
    let timeout = duration("timeout")?;
    let start_period = duration("start-period")?;
    let start_interval = duration("start-interval")?;
    let retries = flags.string("retries").filter(|v| !v.is_empty());
    if let Some(r) = &retries {
        let n: i64 = r
            .parse()
            .ok()
            .filter(|n| i32::try_from(*n).is_ok())
            .ok_or_else(|| E::Retries { value: r.clone() })?;
        if n < 0 {
            return Err(E::NegativeRetries { value: n });
        }
    }
    Ok(Healthcheck::Cmd {
        test,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    })
}

/// Splits one CSV record (double quotes group, `""` is a quote), as `--mount` values are.
fn csv_fields(s: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            '"' if at_start => quoted = true,
            _ => cur.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(MountError::Csv(
            "extraneous or missing \" in quoted-field".into(),
        ));
    }
    fields.push(cur);
    Ok(fields)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, MountError> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(MountError::Value {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

fn kind_name(k: MountKind) -> &'static str {
    match k {
        MountKind::Bind => "bind",
        MountKind::Cache => "cache",
        MountKind::Tmpfs => "tmpfs",
        MountKind::Secret => "secret",
        MountKind::Ssh => "ssh",
    }
}

/// Parses one `--mount=` value with BuildKit's keys, aliases and checks. Values stay as
/// written (`$VAR` is expanded later, with the instruction); numbers that hold no variable
/// are checked now.
pub(crate) fn parse_mount(value: &str) -> Result<RunMount, MountError> {
    let mut m = RunMount {
        kind: MountKind::Bind,
        target: None,
        source: None,
        from: None,
        read_write: false,
        id: None,
        sharing: CacheSharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    let mut sharing_set = false;
    let secret_or_ssh = |m: &RunMount| matches!(m.kind, MountKind::Secret | MountKind::Ssh);
    for field in csv_fields(value)? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => m.read_write = false,
                "readwrite" | "rw" => m.read_write = true,
                "required" if secret_or_ssh(&m) => {
                    m.required = true;
                    continue;
                }
                "required" => {
                    return Err(MountError::KeyForType {
                        key,
                        kind: kind_name(m.kind),
                    });
                }
                _ => return Err(MountError::NotKeyValue { field }),
            }
            ro_auto = false;
            continue;
        };
        let has_var = val.contains('$');
        match key.as_str() {
            "type" => {
                m.kind = match val.to_ascii_lowercase().as_str() {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "tmpfs" => MountKind::Tmpfs,
                    "secret" => MountKind::Secret,
                    "ssh" => MountKind::Ssh,
                    _ => {
                        let types = ["bind", "cache", "tmpfs", "secret", "ssh"];
                        return Err(MountError::Type {
                            suggestion: suggest(&val, &types, true),
                            value: val,
                        });
                    }
                }
            }
            "from" => {
                // Stage references are resolved before the build runs: no variables.
                if val.find('$').is_some_and(|i| i != val.len() - 1) {
                    return Err(MountError::FromVariable);
                }
                m.from = Some(val);
            }
            "source" | "src" => m.source = Some(val),
            "target" | "dst" | "destination" => m.target = Some(val),
            "readonly" | "ro" => {
                m.read_write = !parse_bool(&key, &val)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_write = parse_bool(&key, &val)?;
                ro_auto = false;
            }
            "required" if secret_or_ssh(&m) => m.required = parse_bool(&key, &val)?,
            "size" if m.kind == MountKind::Tmpfs => m.size = Some(val),
            "required" | "size" => {
                return Err(MountError::KeyForType {
                    key,
                    kind: kind_name(m.kind),
                });
            }
            "id" => m.id = Some(val),
            "sharing" => {
                m.sharing = match val.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        let modes = ["shared", "private", "locked"];
                        return Err(MountError::Sharing {
                            suggestion: suggest(&val, &modes, true),
                            value: val,
                        });
                    }
                };
                sharing_set = true;
            }
            "mode" => {
                if !has_var && u32::from_str_radix(&val, 8).is_err() {
                    return Err(MountError::Number {
                        key: "mode",
                        value: val,
                    });
                }
                m.mode = Some(val);
            }
            "uid" | "gid" => {
                let k = if key == "uid" { "uid" } else { "gid" };
                if !has_var && val.parse::<u32>().is_err() {
                    return Err(MountError::Number { key: k, value: val });
                }
                if k == "uid" {
                    m.uid = Some(val);
                } else {
                    m.gid = Some(val);
                }
            }
            "env" => m.env = Some(val),
            _ => {
                let keys = [
                    "type",
                    "from",
                    "source",
                    "target",
                    "readonly",
                    "id",
                    "sharing",
                    "required",
                    "size",
                    "mode",
                    "uid",
                    "gid",
                    "src",
                    "dst",
                    "destination",
                    "ro",
                    "rw",
                    "readwrite",
                    "env",
                ];
                return Err(MountError::UnknownKey {
                    suggestion: suggest(&key, &keys, true),
                    key,
                    field,
                });
            }
        }
    }
    let kind = kind_name(m.kind);
    if !matches!(
        m.kind,
        MountKind::Secret | MountKind::Ssh | MountKind::Cache
    ) {
        for (what, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::FileInfo { what, kind });
            }
        }
    }
    if ro_auto {
        m.read_write = matches!(m.kind, MountKind::Cache | MountKind::Tmpfs);
    }
    if m.kind == MountKind::Secret {
        if m.from.is_some() {
            return Err(MountError::SecretFrom);
        }
        if sharing_set {
            return Err(MountError::SecretSharing);
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err(MountError::SecretTarget);
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::SecretSourceAndId);
        }
    }
    if sharing_set && m.kind != MountKind::Cache {
        return Err(MountError::SharingNotCache { kind });
    }
    Ok(m)
}
