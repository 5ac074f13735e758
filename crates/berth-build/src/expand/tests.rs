//! BuildKit's lexer vectors (`shell/envVarTest`, `wordsTest`, `lex_test.go`) as tables, and
//! the per-instruction substitution rules.

use super::*;
use crate::instructions::*;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

/// `input | expected` (`error` for an error), with PWD=/home, SHELL=bash, NULL="".
const VECTORS: &str = r#"
hello                    |     hello
he'll'o                  |     hello
he'llo                   |     error
he\'llo                  |     he'llo
he\\'llo                 |     error
abc\tdef                 |     abctdef
"abc\tdef"               |     abc\tdef
"abc\\tdef"              |     abc\tdef
'abc\tdef'               |     abc\tdef
hello\                   |     hello
hello\\                  |     hello\
"hello                   |     error
"hello\"                 |     error
"hel'lo"                 |     hel'lo
'hello                   |     error
'hello\'                 |     hello\
'hello\there'            |     hello\there
'hello\\there'           |     hello\\there
"''"                     |     ''
$.                       |     $.
he$1x                    |     hex
he$.x                    |     he$.x
he$pwd.                  |     he.
he$PWD                   |     he/home
he\$PWD                  |     he$PWD
he\\$PWD                 |     he\/home
"he\$PWD"                |     he$PWD
"he\\$PWD"               |     he\/home
\${}                     |     ${}
\${}aaa                  |     ${}aaa
he\${}                   |     he${}
he\${}xx                 |     he${}xx
${}                      |     error
${}aaa                   |     error
he${}                    |     error
he${}xx                  |     error
he${hi}                  |     he
he${hi}xx                |     hexx
he${PWD}                 |     he/home
he${.}                   |     error
he${XXX:-000}xx          |     he000xx
he${PWD:-000}xx          |     he/homexx
he${XXX:-$PWD}xx         |     he/homexx
he${XXX:-${PWD:-yyy}}xx  |     he/homexx
he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
he${XXX:YYY}             |     error
he${XXX?}                |     error
he${XXX:?}               |     error
he${PWD?}                |     he/home
he${PWD:?}               |     he/home
he${NULL?}               |     he
he${NULL:?}              |     error
he${XXX:+${PWD}}xx       |     hexx
he${PWD:+${XXX}}xx       |     hexx
he${PWD:+${SHELL}}xx     |     hebashxx
he${XXX:+000}xx          |     hexx
he${PWD:+000}xx          |     he000xx
'he${XX}'                |     he${XX}
"he${PWD}"               |     he/home
"he'$PWD'"               |     he'/home'
"$PWD"                   |     /home
'$PWD'                   |     $PWD
'\$PWD'                  |     \$PWD
'"hello"'                |     "hello"
he\$PWD                  |     he$PWD
"he\$PWD"                |     he$PWD
'he\$PWD'                |     he\$PWD
he${PWD                  |     error
he${PWD:=000}xx          |     error
he${PWD:+${PWD}:}xx      |     he/home:xx
he${XXX:-\$PWD:}xx       |     he$PWD:xx
he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
"#;

#[test]
fn buildkit_env_var_vectors() {
    let lookup = env(&[("PWD", "/home"), ("SHELL", "bash"), ("NULL", "")]);
    for line in VECTORS.lines().filter(|l| !l.trim().is_empty()) {
        let (input, want) = line.split_once('|').unwrap();
        let (input, want) = (input.trim(), want.trim());
        let got = expand_word(input, &lookup, '\\');
        if want == "error" {
            assert!(got.is_err(), "{input:?} gave {got:?}");
        } else {
            assert_eq!(got.as_deref(), Ok(want), "{input:?}");
        }
    }
}

#[test]
fn words_split_after_substitution() {
    let lookup = env(&[("hi", "hi"), ("space", "abc  def"), ("leading", "  ab c")]);
    let cases: &[(&str, &[&str])] = &[
        ("hello${hi}bye", &["hellohibye"]),
        ("hello${space}bye", &["helloabc", "defbye"]),
        ("hello\"${space}\"bye", &["helloabc  defbye"]),
        ("hello \"${space}\"bye", &["hello", "abc  defbye"]),
        ("hello${leading}def", &["hello", "ab", "cdef"]),
        ("hello\\ there", &["hello there"]),
        ("hello\\\" there", &["hello\"", "there"]),
        ("hello'$there'", &["hello$there"]),
        ("'' x", &["x"]),
    ];
    for (input, want) in cases {
        assert_eq!(
            expand_words(input, &lookup, '\\').unwrap(),
            *want,
            "{input:?}"
        );
    }
    assert!(expand_words("hello\" there", &lookup, '\\').is_err());
}

#[test]
fn patterns_and_replacement() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            &[("FOO", "()[]{}^$.*?|\\x")],
            "x",
        ),
        ("${FOO%%\\**}", &[("FOO", "xx**")], "xx"),
        ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
        ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
        ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
        ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
        ("${FOO#?\\?}", &[("FOO", "???y")], "?y"),
        ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
        ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], "a"),
        ("${FOO%y*}", &[("FOO", "xxyy")], "xxy"),
        ("${FOO%%y*}", &[("FOO", "xxyy")], "xx"),
        ("${P%/*}", &[("P", "/usr/local/bin")], "/usr/local"),
        ("${P##*/}", &[("P", "/usr/local/bin")], "bin"),
        ("${V/./-}", &[("V", "1.2.3")], "1-2.3"),
        ("${V//./-}", &[("V", "1.2.3")], "1-2-3"),
        ("${V//x/}", &[("V", "axbxc")], "abc"),
        ("${V/a*b/X}", &[("V", "zab ab")], "zX"),
        ("${U/a/b}", &[], ""),
        ("${V-d}", &[("V", "")], ""),
        ("${V:-d}", &[("V", "")], "d"),
        ("${V+a}", &[("V", "")], "a"),
        ("${V:+a}", &[("V", "")], ""),
    ];
    for (input, e, want) in cases {
        assert_eq!(
            expand_word(input, &env(e), '\\').as_deref(),
            Ok(*want),
            "{input:?}"
        );
    }
    let errs: &[(&str, &str)] = &[
        (
            "${FOO:#}",
            "failed to process \"${FOO:#}\": unsupported modifier (:#) in substitution",
        ),
        (
            "${FOO=}",
            "failed to process \"${FOO=}\": unsupported modifier (=) in substitution",
        ),
        (
            "${V?}",
            "failed to process \"${V?}\": V: is not allowed to be unset",
        ),
        (
            "${V:?need V}",
            "failed to process \"${V:?need V}\": V: need V",
        ),
        (
            "${V",
            "failed to process \"${V\": syntax error: missing '}'",
        ),
        (
            "${}",
            "failed to process \"${}\": syntax error: bad substitution",
        ),
        (
            "${V/a",
            "failed to process \"${V/a\": syntax error: missing '/' in ${}",
        ),
        (
            "'a",
            "failed to process \"'a\": unexpected end of statement while looking for matching single-quote",
        ),
    ];
    for (input, want) in errs {
        assert_eq!(
            expand_word(input, &env(&[]), '\\').unwrap_err().to_string(),
            *want
        );
    }
}

#[test]
fn backtick_escape_and_used_names() {
    let lookup = env(&[("A", "1"), ("B", "2")]);
    assert_eq!(expand_word("`$A$A\\x", &lookup, '`').unwrap(), "$A1\\x");
    let (w, used) = expand_word_used("$A ${C:-$B}", &lookup, '\\').unwrap();
    assert_eq!(w, "1 2");
    assert_eq!(used.into_iter().collect::<Vec<_>>(), vec!["A", "B"]);
}

fn stage_instructions(text: &str) -> Vec<Instruction> {
    crate::parse(text).unwrap().stages[0]
        .instructions
        .iter()
        .map(|l| l.value.clone())
        .collect()
}

#[test]
fn instructions_expand_where_docker_does() {
    let lookup = env(&[
        ("V", "1.0"),
        ("D", "/app"),
        ("U", "app"),
        ("P", "8080"),
        ("S", "build"),
        ("N", "x y"),
    ]);
    let text = "FROM scratch\n\
        ENV A=$V B=\"$N\" C='$V' ${U}_K=v\n\
        LABEL \"ver\"=\"${V}\" k=v\\ w\n\
        COPY --from=$S --chown=$U:$U --chmod=${P%80}0 --exclude=$U.* src/$V $D/\n\
        ADD --checksum=$V <<EOF <<'RAW' $D\n$V \"q\"\nEOF\n$V\nRAW\n\
        EXPOSE $P ${P}/udp\n\
        VOLUME $D /data\n\
        USER $U\n\
        WORKDIR ${D}/src\n\
        STOPSIGNAL SIG$U\n\
        ARG X=$V\n\
        RUN --mount=type=cache,target=$D/cache,id=$U echo $V\n\
        CMD echo $V\n\
        ENTRYPOINT [\"$V\"]\n\
        ONBUILD RUN echo $V\n\
        HEALTHCHECK CMD echo $V\n\
        SHELL [\"$V\"]\n\
        MAINTAINER $U\n";
    let got: Vec<Instruction> = stage_instructions(text)
        .iter()
        .map(|i| i.expand(&lookup, '\\').unwrap())
        .collect();
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: v.into(),
    };
    assert_eq!(
        got[0],
        Instruction::Env(vec![
            kv("A", "1.0"),
            kv("B", "x y"),
            kv("C", "$V"),
            kv("app_K", "v")
        ])
    );
    assert_eq!(
        got[1],
        Instruction::Label(vec![kv("ver", "1.0"), kv("k", "v w")])
    );
    let Instruction::Copy(c) = &got[2] else {
        panic!()
    };
    assert_eq!(
        (
            c.from.as_deref(),
            c.chown.as_deref(),
            c.chmod.as_deref(),
            c.exclude.clone(),
            c.sources.clone(),
            c.dest.as_str()
        ),
        (
            Some("build"),
            Some("app:app"),
            Some("800"),
            vec!["app.*".to_string()],
            vec!["src/1.0".to_string()],
            "/app/"
        )
    );
    let Instruction::Add(a) = &got[3] else {
        panic!()
    };
    assert_eq!(
        (a.checksum.as_deref(), a.dest.as_str()),
        (Some("1.0"), "/app")
    );
    assert_eq!(a.sources, vec!["EOF", "RAW"]);
    assert_eq!(a.heredocs[0].content, "1.0 \"q\"\n");
    assert_eq!(a.heredocs[1].content, "$V\n");
    assert_eq!(
        got[4],
        Instruction::Expose(vec!["8080".into(), "8080/udp".into()])
    );
    assert_eq!(
        got[5],
        Instruction::Volume(vec!["/app".into(), "/data".into()])
    );
    assert_eq!(got[6], Instruction::User("app".into()));
    assert_eq!(got[7], Instruction::Workdir("/app/src".into()));
    assert_eq!(got[8], Instruction::StopSignal("SIGapp".into()));
    let Instruction::Arg(arg) = &got[9] else {
        panic!()
    };
    assert_eq!(arg.args[0].default.as_deref(), Some("1.0"));
    let Instruction::Run(r) = &got[10] else {
        panic!()
    };
    assert_eq!(
        (r.mounts[0].target.as_deref(), r.mounts[0].id.as_deref()),
        (Some("/app/cache"), Some("app"))
    );
    assert_eq!(r.command, CommandLine::Shell("echo $V".into()));
    // Not expanded: left to the shell or to the image that triggers them.
    let orig = stage_instructions(text);
    for i in 11..=16 {
        assert_eq!(got[i], orig[i], "{i}");
    }

    let from = crate::parse("ARG T=3.19\nFROM --platform=$P alpine:${T} AS b\n")
        .unwrap()
        .stages[0]
        .from
        .value
        .clone();
    let from = from
        .expand(&env(&[("T", "3.20"), ("P", "linux/arm64")]), '\\')
        .unwrap();
    assert_eq!(
        (
            from.image.as_str(),
            from.platform.as_deref(),
            from.name.as_deref()
        ),
        ("alpine:3.20", Some("linux/arm64"), Some("b"))
    );
}
