//! Golden-style tables: Dockerfile text → expected AST, and every error's exact text.

use super::*;
use crate::instructions::*;

fn p(text: &str) -> Dockerfile {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The instructions of the only stage.
fn ins(text: &str) -> Vec<Instruction> {
    p(text).stages[0]
        .instructions
        .iter()
        .map(|l| l.value.clone())
        .collect()
}

fn one(text: &str) -> Instruction {
    let v = ins(&format!("FROM scratch\n{text}"));
    assert_eq!(v.len(), 1, "{text}");
    v[0].clone()
}

fn err(text: &str) -> String {
    parse(text).expect_err(text).to_string()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn copy(sources: &[&str], dest: &str) -> CopyInstruction {
    CopyInstruction {
        sources: s(sources),
        dest: dest.into(),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: vec![],
        checksum: None,
        keep_git_dir: false,
        unpack: None,
        heredocs: vec![],
    }
}

#[test]
fn from_stages_and_meta_args() {
    let d = p(
        "ARG V=1\nARG B\nFROM --platform=linux/amd64 busybox:$V AS Build\nRUN x\nfrom build as T2\n",
    );
    assert_eq!(d.meta_args.len(), 2);
    assert_eq!(
        d.meta_args[0].value.args,
        vec![ArgDecl {
            name: "V".into(),
            default: Some("1".into())
        }]
    );
    assert_eq!(d.stages.len(), 2);
    assert_eq!(d.stages[0].name.as_deref(), Some("build"));
    assert_eq!(
        d.stages[0].from.value,
        FromInstruction {
            image: "busybox:$V".into(),
            platform: Some("linux/amd64".into()),
            name: Some("build".into())
        }
    );
    assert_eq!(d.stages[0].from.line, 3);
    assert_eq!(
        d.stages[0].from.original,
        "FROM --platform=linux/amd64 busybox:$V AS Build"
    );
    assert_eq!(d.stages[1].name.as_deref(), Some("t2"));
    assert_eq!(d.stages[1].from.value.image, "build");
    assert_eq!(d.directives, Directives::default());
}

#[test]
fn directives_comments_and_continuations() {
    let d = p(
        "# syntax=docker/dockerfile:1\n# escape=`\n#check=skip=all\n\nFROM scratch\n# a comment\nRUN echo a `\n  # comment inside\n\n  b\nENV X=`$y\n",
    );
    assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.directives.escape, '`');
    assert_eq!(d.directives.check.as_deref(), Some("skip=all"));
    let run = &d.stages[0].instructions[0];
    assert_eq!(run.line, 7);
    assert_eq!(run.end_line, 10);
    assert_eq!(run.original, "RUN echo a   b");
    assert_eq!(
        run.value,
        Instruction::Run(RunInstruction {
            command: CommandLine::Shell("echo a   b".into()),
            mounts: vec![],
            network: None,
            security: None,
            heredocs: vec![],
        })
    );
    assert_eq!(
        d.stages[0].instructions[1].value,
        Instruction::Env(vec![kv("X", "`$y")])
    );
    // A directive after a comment is a comment; an escaped escape is no continuation.
    let d = p("# hello\n# escape=`\nFROM scratch\nRUN a \\\\\nRUN b\n");
    assert_eq!(d.directives.escape, '\\');
    assert_eq!(d.stages[0].instructions.len(), 2);
    // A continuation at the end of the file, CRLF line ends, a BOM.
    let d = p("\u{feff}FROM scratch\r\nRUN a \\\r\n b \\");
    assert_eq!(d.stages[0].instructions[0].original, "RUN a  b");
}

#[test]
fn exec_and_shell_forms() {
    assert_eq!(
        one(r#"CMD ["a", "b c"]"#),
        Instruction::Cmd(CommandLine::Exec(s(&["a", "b c"])))
    );
    assert_eq!(
        one("CMD a  b"),
        Instruction::Cmd(CommandLine::Shell("a  b".into()))
    );
    // Not valid JSON: the shell form.
    assert_eq!(
        one("CMD [a, b]"),
        Instruction::Cmd(CommandLine::Shell("[a, b]".into()))
    );
    assert_eq!(
        one("ENTRYPOINT []"),
        Instruction::Entrypoint(CommandLine::Exec(vec![]))
    );
    assert_eq!(
        one(r#"SHELL ["/bin/bash", "-c"]"#),
        Instruction::Shell(s(&["/bin/bash", "-c"]))
    );
    assert_eq!(one("VOLUME /a  /b"), Instruction::Volume(s(&["/a", "/b"])));
    assert_eq!(one(r#"VOLUME ["/a b"]"#), Instruction::Volume(s(&["/a b"])));
    assert_eq!(
        one("EXPOSE 443/tcp 80"),
        Instruction::Expose(s(&["443/tcp", "80"]))
    );
    assert_eq!(one("USER  app:app "), Instruction::User("app:app".into()));
    assert_eq!(one("WORKDIR /a b"), Instruction::Workdir("/a b".into()));
    assert_eq!(
        one("STOPSIGNAL SIGTERM"),
        Instruction::StopSignal("SIGTERM".into())
    );
    assert_eq!(
        one("MAINTAINER Jo <jo@x>"),
        Instruction::Maintainer("Jo <jo@x>".into())
    );
    assert_eq!(
        one(r#"COPY ["a b", "/c"]"#),
        Instruction::Copy(copy(&["a b"], "/c"))
    );
}

#[test]
fn env_label_arg_forms() {
    assert_eq!(
        one(r#"ENV A=1 B="two words" C=three\ words D='$x'"#),
        Instruction::Env(vec![
            kv("A", "1"),
            kv("B", "\"two words\""),
            kv("C", "three\\ words"),
            kv("D", "'$x'")
        ])
    );
    assert_eq!(
        one("ENV A  one two"),
        Instruction::Env(vec![kv("A", "one two")])
    );
    assert_eq!(
        one(r#"LABEL "com.x"="a b" v=1"#),
        Instruction::Label(vec![kv("\"com.x\"", "\"a b\""), kv("v", "1")])
    );
    assert_eq!(one("LABEL k v"), Instruction::Label(vec![kv("k", "v")]));
    assert_eq!(
        one(r#"ARG a b=2 c="x y""#),
        Instruction::Arg(ArgInstruction {
            args: vec![
                ArgDecl {
                    name: "a".into(),
                    default: None
                },
                ArgDecl {
                    name: "b".into(),
                    default: Some("2".into())
                },
                ArgDecl {
                    name: "c".into(),
                    default: Some("\"x y\"".into())
                },
            ]
        })
    );
}

#[test]
fn copy_add_flags() {
    let c = one(
        "COPY --from=build --chown=1:2 --chmod=0755 --link --parents --exclude=*.md --exclude=x a b /d/",
    );
    assert_eq!(
        c,
        Instruction::Copy(CopyInstruction {
            from: Some("build".into()),
            chown: Some("1:2".into()),
            chmod: Some("0755".into()),
            link: true,
            parents: true,
            exclude: s(&["*.md", "x"]),
            ..copy(&["a", "b"], "/d/")
        })
    );
    let a = one(
        "ADD --checksum=sha256:ab --keep-git-dir=true --unpack=false --link=false http://x/y /z",
    );
    assert_eq!(
        a,
        Instruction::Add(CopyInstruction {
            checksum: Some("sha256:ab".into()),
            keep_git_dir: true,
            unpack: Some(false),
            ..copy(&["http://x/y"], "/z")
        })
    );
    // Quotes inside a flag word, and `--` ending the flags.
    let c = one(r#"COPY --chown="a b" -- --weird /d"#);
    assert_eq!(
        c,
        Instruction::Copy(CopyInstruction {
            chown: Some("a b".into()),
            ..copy(&["--weird"], "/d")
        })
    );
}

#[test]
fn run_mounts_network_security() {
    let r = one(
        "RUN --mount=type=cache,target=/root/.cache,id=c1,sharing=locked,mode=0700,uid=1 --mount=type=bind,src=x,dst=/x,from=stage,rw --mount=type=secret,id=s,required,env=TOKEN --mount=type=tmpfs,destination=/t,size=64m --network=none --security=insecure make",
    );
    let Instruction::Run(r) = r else { panic!() };
    assert_eq!(r.network, Some(RunNetwork::None));
    assert_eq!(r.security.as_deref(), Some("insecure"));
    assert_eq!(r.command, CommandLine::Shell("make".into()));
    let m = &r.mounts;
    assert_eq!(m.len(), 4);
    assert_eq!(
        (m[0].kind, m[0].target.as_deref(), m[0].id.as_deref()),
        (MountKind::Cache, Some("/root/.cache"), Some("c1"))
    );
    assert_eq!(
        (
            m[0].sharing,
            m[0].mode.as_deref(),
            m[0].uid.as_deref(),
            m[0].read_write
        ),
        (CacheSharing::Locked, Some("0700"), Some("1"), true)
    );
    assert_eq!(
        (
            m[1].kind,
            m[1].source.as_deref(),
            m[1].target.as_deref(),
            m[1].from.as_deref(),
            m[1].read_write
        ),
        (MountKind::Bind, Some("x"), Some("/x"), Some("stage"), true)
    );
    assert_eq!(
        (
            m[2].kind,
            m[2].required,
            m[2].env.as_deref(),
            m[2].read_write
        ),
        (MountKind::Secret, true, Some("TOKEN"), false)
    );
    assert_eq!(
        (m[3].kind, m[3].size.as_deref(), m[3].read_write),
        (MountKind::Tmpfs, Some("64m"), true)
    );
    // Bind mounts are read-only unless asked.
    let Instruction::Run(r) = one("RUN --mount=target=/x,ro=false true") else {
        panic!()
    };
    assert!(r.mounts[0].read_write);
    let Instruction::Run(r) = one("RUN --mount=target=/x true") else {
        panic!()
    };
    assert!(!r.mounts[0].read_write);
}

#[test]
fn heredocs() {
    let d = p(
        "FROM scratch\nRUN <<EOF\necho $A\n  indented\nEOF\nRUN <<-\"END\" cat >/x && 3<<'B' sh\n\tline\n\tEND\nbody\nB\nCOPY --chmod=644 <<one <<two /dest/\n1\none\n2\ntwo\nRUN echo done\n",
    );
    let i = &d.stages[0].instructions;
    assert_eq!(i.len(), 4);
    let Instruction::Run(r) = &i[0].value else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell("<<EOF".into()));
    assert_eq!(
        r.heredocs,
        vec![Heredoc {
            name: "EOF".into(),
            content: "echo $A\n  indented\n".into(),
            expand: true
        }]
    );
    assert_eq!(
        (i[0].line, i[0].end_line, i[0].original.as_str()),
        (2, 5, "RUN <<EOF")
    );
    let Instruction::Run(r) = &i[1].value else {
        panic!()
    };
    assert_eq!(
        r.heredocs,
        vec![
            Heredoc {
                name: "END".into(),
                content: "line\n".into(),
                expand: false
            },
            Heredoc {
                name: "B".into(),
                content: "body\n".into(),
                expand: false
            },
        ]
    );
    let Instruction::Copy(c) = &i[2].value else {
        panic!()
    };
    assert_eq!(c.sources, s(&["one", "two"]));
    assert_eq!(
        c.heredocs[1],
        Heredoc {
            name: "two".into(),
            content: "2\n".into(),
            expand: true
        }
    );
    assert_eq!(c.chmod.as_deref(), Some("644"));
    assert_eq!(i[3].line, 16);
    // JSON form has no here-documents.
    assert_eq!(
        one(r#"RUN ["cat", "<<EOF"]"#),
        Instruction::Run(RunInstruction {
            command: CommandLine::Exec(s(&["cat", "<<EOF"])),
            mounts: vec![],
            network: None,
            security: None,
            heredocs: vec![],
        })
    );
}

#[test]
fn onbuild_healthcheck() {
    assert_eq!(
        one("ONBUILD  RUN echo hi"),
        Instruction::Onbuild("RUN echo hi".into())
    );
    assert_eq!(
        one("onbuild copy --from=x a b"),
        Instruction::Onbuild("copy --from=x a b".into())
    );
    let d = p("FROM scratch\nONBUILD RUN <<EOF\nhi\nEOF\n");
    assert_eq!(
        d.stages[0].instructions[0].value,
        Instruction::Onbuild("RUN <<EOF\nhi\nEOF".into())
    );
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    assert_eq!(
        one(
            "HEALTHCHECK --interval=5m --timeout=3s --start-period=1s --start-interval=2s --retries=3 CMD curl -f http://x/ || exit 1"
        ),
        Instruction::Healthcheck(Healthcheck::Cmd {
            test: CommandLine::Shell("curl -f http://x/ || exit 1".into()),
            interval: Some("5m".into()),
            timeout: Some("3s".into()),
            start_period: Some("1s".into()),
            start_interval: Some("2s".into()),
            retries: Some("3".into()),
        })
    );
    assert_eq!(
        one(r#"HEALTHCHECK cmd ["true"]"#),
        Instruction::Healthcheck(Healthcheck::Cmd {
            test: CommandLine::Exec(s(&["true"])),
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        })
    );
}

#[test]
fn errors_in_dockers_words() {
    let cases: &[(&str, &str)] = &[
        ("", "the Dockerfile (Dockerfile) cannot be empty"),
        (
            "# only\n\n",
            "failed to parse Dockerfile: file with no instructions",
        ),
        (
            "FROM scratch\nRUN x\nFOOBAR bar\n",
            "dockerfile parse error on line 3: unknown instruction: FOOBAR",
        ),
        (
            "FROM scratch\nRUN x\nFOO bar\n",
            "dockerfile parse error on line 3: unknown instruction: FOO (did you mean FROM?)",
        ),
        (
            "FROM scratch\nCOPPY a b\n",
            "dockerfile parse error on line 2: unknown instruction: COPPY (did you mean COPY?)",
        ),
        ("RUN x\nFROM scratch\n", "no build stage in current context"),
        (
            "ARG x\n",
            "No image was generated. Is your Dockerfile empty?",
        ),
        (
            "FROM scratch\nENV =x\n",
            "dockerfile parse error on line 2: ENV names can not be blank",
        ),
        (
            "FROM scratch\nLABEL =x\n",
            "dockerfile parse error on line 2: LABEL names can not be blank",
        ),
        (
            "FROM scratch\nARG =x\n",
            "dockerfile parse error on line 2: ARG names can not be blank",
        ),
        (
            "FROM scratch\nENV X\n",
            "failed to parse Dockerfile: ENV must have two arguments",
        ),
        (
            "FROM scratch\nENV a=b c\n",
            "failed to parse Dockerfile: Syntax error - can't find = in \"c\". Must be of the form: name=value",
        ),
        (
            "FROM scratch\nENV\n",
            "dockerfile parse error on line 2: ENV requires at least one argument",
        ),
        (
            "FROM scratch\nWORKDIR --x=1 /a\n",
            "dockerfile parse error on line 2: unknown flag: --x",
        ),
        (
            "FROM scratch\nCOPY --chmo=1 a b\n",
            "dockerfile parse error on line 2: unknown flag: --chmo (did you mean chmod?)",
        ),
        (
            "FROM scratch\nCOPY --from=a --from=b a b\n",
            "dockerfile parse error on line 2: duplicate flag specified: --from",
        ),
        (
            "FROM scratch\nCOPY --from a b\n",
            "dockerfile parse error on line 2: missing a value on flag: --from",
        ),
        (
            "FROM scratch\nCOPY --link=maybe a b\n",
            "dockerfile parse error on line 2: expecting boolean value for flag --link, not: maybe",
        ),
        (
            "FROM scratch\nCOPY a\n",
            "dockerfile parse error on line 2: COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        (
            "FROM scratch\nCOPY a <<EOF\nx\nEOF\n",
            "dockerfile parse error on line 2: COPY cannot accept a heredoc as a destination",
        ),
        (
            "FROM scratch\nRUN <<EOF\nx\n",
            "failed to parse Dockerfile: unterminated heredoc",
        ),
        (
            "FROM a b\n",
            "dockerfile parse error on line 1: FROM requires either one or three arguments",
        ),
        (
            "FROM a AS 1x\n",
            "dockerfile parse error on line 1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols",
        ),
        (
            "FROM scratch\nONBUILD ONBUILD RUN x\n",
            "dockerfile parse error on line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM scratch\nONBUILD from x\n",
            "dockerfile parse error on line 2: FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM scratch\nONBUILD MAINTAINER x\n",
            "dockerfile parse error on line 2: MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM scratch\nWORKDIR\n",
            "dockerfile parse error on line 2: WORKDIR requires exactly one argument",
        ),
        (
            "FROM scratch\nSHELL sh -c\n",
            "dockerfile parse error on line 2: SHELL requires the arguments to be in JSON form",
        ),
        (
            "FROM scratch\nCMD [1]\n",
            "failed to parse Dockerfile: when using JSON array syntax, arrays must be comprised of strings only",
        ),
        (
            "FROM scratch\nVOLUME [\"\"]\n",
            "dockerfile parse error on line 2: VOLUME specified can not be an empty string",
        ),
        (
            "FROM scratch\nHEALTHCHECK NONE x\n",
            "dockerfile parse error on line 2: HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM scratch\nHEALTHCHECK CMD\n",
            "dockerfile parse error on line 2: Missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM scratch\nHEALTHCHECK CMX x\n",
            "dockerfile parse error on line 2: Unknown type \"CMX\" in HEALTHCHECK (try CMD)",
        ),
        (
            "FROM scratch\nHEALTHCHECK --interval=5 CMD x\n",
            "dockerfile parse error on line 2: time: invalid duration \"5\"",
        ),
        (
            "FROM scratch\nHEALTHCHECK --timeout=1us CMD x\n",
            "dockerfile parse error on line 2: Interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "FROM scratch\nHEALTHCHECK --retries=-1 CMD x\n",
            "dockerfile parse error on line 2: --retries cannot be negative (-1)",
        ),
        (
            "FROM scratch\nRUN --network=bridge x\n",
            "dockerfile parse error on line 2: invalid network mode \"bridge\"",
        ),
        (
            "FROM scratch\nRUN --security=x x\n",
            "dockerfile parse error on line 2: security \"x\" is not valid",
        ),
        (
            "FROM scratch\nRUN --mount=type=cach,target=/x x\n",
            "dockerfile parse error on line 2: unsupported mount type \"cach\" (did you mean cache?)",
        ),
        (
            "FROM scratch\nRUN --mount=target=/x,sharing=locked x\n",
            "dockerfile parse error on line 2: invalid cache sharing set for bind mount",
        ),
        (
            "FROM scratch\nRUN --mount=type=bind,mode=0700 x\n",
            "dockerfile parse error on line 2: mode not allowed for \"bind\" type mounts",
        ),
        (
            "FROM scratch\nRUN --mount=type=secret x\n",
            "dockerfile parse error on line 2: invalid secret mount. one of source, target required",
        ),
        (
            "FROM scratch\nRUN --mount=type=cache,targt=/x x\n",
            "dockerfile parse error on line 2: unexpected key 'targt' in 'targt=/x' (did you mean target?)",
        ),
        (
            "FROM scratch\nRUN --mount=type=bind,from=$X x\n",
            "dockerfile parse error on line 2: 'from' doesn't support variable expansion, define alias stage instead",
        ),
        (
            "FROM scratch\nRUN --mount=foo x\n",
            "dockerfile parse error on line 2: invalid field 'foo' must be a key=value pair",
        ),
        (
            "FROM scratch\nCOPY\t\n\t\tquux \\\n      bar",
            "dockerfile parse error on line 2: COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        (
            "FROM scratch\nMAINTAINER --boo joe@example.com",
            "dockerfile parse error on line 2: unknown flag: --boo",
        ),
        (
            "FROM scratch\nfoo bar",
            "dockerfile parse error on line 2: unknown instruction: foo (did you mean from?)",
        ),
        (
            "FROM scratch\nHEALTHCHECK --interval=0.5ms CMD x",
            "dockerfile parse error on line 2: Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "# escape=x\nFROM scratch\n",
            "failed to parse Dockerfile: invalid escape token 'x' does not match ` or \\",
        ),
        (
            "# escape=`\n# escape=\\\nFROM scratch\n",
            "failed to parse Dockerfile: only one escape parser directive can be used",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "{text:?}");
    }
    assert_eq!(
        parse_named("", "docker/Dockerfile.dev")
            .unwrap_err()
            .to_string(),
        "the Dockerfile (docker/Dockerfile.dev) cannot be empty"
    );
    assert_eq!(parse("FROM scratch\n\nBAD x").unwrap_err().line(), Some(3));
}

#[test]
fn flags_ignored_where_docker_ignores_them() {
    assert_eq!(one("STOPSIGNAL --x 9"), Instruction::StopSignal("9".into()));
    assert_eq!(
        one("HEALTHCHECK --x NONE"),
        Instruction::Healthcheck(Healthcheck::None)
    );
}

#[test]
fn go_durations() {
    use std::time::Duration;
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("10"), None);
    assert_eq!(parse_go_duration("x"), None);
}

/// The line level in BuildKit's dump format (checked against BuildKit's own golden files with
/// `cargo run -p berth-build --example parse_dir <dir>`; these cases are Berth's).
#[test]
fn line_level_golden() {
    let cases: &[(&str, &str)] = &[
        (
            "from alpine AS base\nRUN apk add \\\n    curl \\\n\n  # note\n    jq\nCOPY --chown=a:b [\"x y\", \"/z\"]\n",
            "(from \"alpine\" \"AS\" \"base\")\n(run \"apk add     curl     jq\")\n(copy [\"--chown=a:b\"] \"x y\" \"/z\")\n",
        ),
        (
            "ENV a=1 b=\"two three\" c\\ d=4\nENV old form  here\nLABEL \"x\"='y z'\n",
            "(env \"a\" \"1\" \"=\" \"b\" \"\\\"two three\\\"\" \"=\" \"c\\\\ d\" \"4\" \"=\")\n(env \"old\" \"form  here\" \"\")\n(label \"\\\"x\\\"\" \"'y z'\" \"=\")\n",
        ),
        (
            "ONBUILD RUN --network=none [\"a\"]\nHEALTHCHECK --retries=2 CMD [\"b\", \"c\"]\nEXPOSE 80  443/udp\nARG x=\"1 2\" y\n",
            "(onbuild (run [\"--network=none\"] \"a\"))\n(healthcheck [\"--retries=2\"] \"CMD\" \"b\" \"c\")\n(expose \"80\" \"443/udp\")\n(arg \"x=\\\"1 2\\\"\" \"y\")\n",
        ),
        ("CMD [\"\\b\\f\"]\n", "(cmd \"\\b\\f\")\n"),
    ];
    for (text, want) in cases {
        assert_eq!(dump(text).unwrap(), *want, "{text:?}");
    }
}

#[test]
fn heredoc_delimiters() {
    let d = p(
        "FROM scratch\nRUN \"<<NOT\"\nRUN <<x\\'y\nbody\nx'y\nRUN <<'a b' sh\nq\na b\nRUN <<  SP  > out\nSP\nRUN <<$V\n$V\n",
    );
    let docs: Vec<Vec<(String, String, bool)>> = d.stages[0]
        .instructions
        .iter()
        .map(|l| match &l.value {
            Instruction::Run(r) => r
                .heredocs
                .iter()
                .map(|h| (h.name.clone(), h.content.clone(), h.expand))
                .collect(),
            _ => vec![],
        })
        .collect();
    let t = |n: &str, c: &str, e: bool| (n.to_string(), c.to_string(), e);
    assert_eq!(
        docs,
        vec![
            vec![],
            // An escaped quote is part of the name and does not stop expansion.
            vec![t("x'y", "body\n", true)],
            vec![t("a b", "q\n", false)],
            vec![t("SP", "", true)],
            vec![t("$V", "", true)],
        ]
    );
}

#[test]
fn empty_continuation_warnings() {
    let (_, w) =
        parse_with_warnings("FROM scratch\nRUN a \\\n\n  b\nRUN c\n", "Dockerfile").unwrap();
    assert_eq!(
        w,
        [
            "[WARNING]: Empty continuation line found in: RUN a   b\n",
            "[WARNING]: Empty continuation lines will become errors in a future release.\n"
        ]
    );
    let (_, w) = parse_with_warnings("FROM scratch\nRUN a \\\n  # c\n  b\n", "Dockerfile").unwrap();
    assert!(w.is_empty());
}
