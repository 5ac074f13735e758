//! The stage graph, as pure functions: which stage a `FROM` or `--from` names, which stages
//! the target needs (the others are skipped), and the legacy `Step N/M` numbering of what
//! runs.

use std::collections::BTreeSet;

use crate::instructions::{Dockerfile, Instruction};

/// What a stage starts from or copies from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An earlier stage, by index.
    Stage(usize),
    /// An image by name.
    Image(String),
    Scratch,
}

/// The stages to run and their dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indexes of the stages to run, in file order; the last one is the target.
    pub stages: Vec<usize>,
    /// Per stage of the Dockerfile (all of them): the stages it waits for.
    pub deps: Vec<BTreeSet<usize>>,
    /// Per stage: the `Step` number of its FROM (0 for a skipped stage).
    pub first_step: Vec<usize>,
    /// The `M` of `Step N/M`.
    pub total_steps: usize,
}

/// A name used in `FROM name` or `--from=name` resolved against the stages before `before`
/// (stage names are case-insensitive; `--from` also takes an index).
pub fn resolve_source(df: &Dockerfile, before: usize, name: &str, allow_index: bool) -> Source {
    let lower = name.to_ascii_lowercase();
    if let Some(i) = df.stages[..before]
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Source::Stage(i);
    }
    if allow_index
        && let Ok(i) = name.parse::<usize>()
        && i < before
    {
        return Source::Stage(i);
    }
    if lower == "scratch" {
        return Source::Scratch;
    }
    Source::Image(name.to_string())
}

/// The stages instruction `inst` of stage `stage` reads from (`COPY --from`, `RUN --mount
/// from=`), as written (variables in `--from` are not expanded: Docker does not either).
pub fn instruction_deps(df: &Dockerfile, stage: usize, inst: &Instruction) -> Vec<usize> {
    let mut names: Vec<&str> = Vec::new();
    match inst {
        Instruction::Copy(c) | Instruction::Add(c) => names.extend(c.from.as_deref()),
        Instruction::Run(r) => names.extend(r.mounts.iter().filter_map(|m| m.from.as_deref())),
        _ => {}
    }
    names
        .into_iter()
        .filter_map(|n| match resolve_source(df, stage, n, true) {
            Source::Stage(i) => Some(i),
            _ => None,
        })
        .collect()
}

/// Plans a build of `target` (the last stage when `None`). `from_names[i]` is stage `i`'s
/// FROM image after substitution of the global ARGs.
pub fn plan(df: &Dockerfile, from_names: &[String], target: Option<&str>) -> Result<Plan, String> {
    if df.stages.is_empty() {
        return Err("no build stage in current context".into());
    }
    let target_ix = match target.filter(|t| !t.is_empty()) {
        None => df.stages.len() - 1,
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            df.stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
                .ok_or_else(|| format!("failed to reach build target {t} in Dockerfile"))?
        }
    };
    let mut deps = vec![BTreeSet::new(); df.stages.len()];
    for (i, stage) in df.stages.iter().enumerate() {
        if let Source::Stage(d) = resolve_source(df, i, &from_names[i], false) {
            deps[i].insert(d);
        }
        for inst in &stage.instructions {
            deps[i].extend(instruction_deps(df, i, &inst.value));
        }
    }
    let mut needed = BTreeSet::new();
    let mut todo = vec![target_ix];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(deps[i].iter().copied());
        }
    }
    let stages: Vec<usize> = needed.into_iter().collect();
    let mut first_step = vec![0; df.stages.len()];
    let mut n = df.meta_args.len() + 1;
    for &i in &stages {
        first_step[i] = n;
        n += 1 + df.stages[i].instructions.len();
    }
    Ok(Plan {
        stages,
        deps,
        first_step,
        total_steps: n - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::*;

    fn loc<T>(v: T) -> Located<T> {
        Located {
            line: 1,
            end_line: 1,
            original: String::new(),
            value: v,
        }
    }

    pub(crate) fn stage(name: Option<&str>, from: &str, insts: Vec<Instruction>) -> Stage {
        Stage {
            name: name.map(str::to_string),
            from: loc(FromInstruction {
                image: from.into(),
                platform: None,
                name: name.map(str::to_string),
            }),
            instructions: insts.into_iter().map(loc).collect(),
        }
    }

    fn copy_from(from: &str) -> Instruction {
        Instruction::Copy(CopyInstruction {
            sources: vec!["/a".into()],
            dest: "/b".into(),
            from: Some(from.into()),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: vec![],
            checksum: None,
            keep_git_dir: false,
            unpack: None,
            heredocs: vec![],
        })
    }

    #[test]
    fn target_needs_only_its_stages() {
        let df = Dockerfile {
            directives: Directives::default(),
            meta_args: vec![],
            stages: vec![
                stage(Some("a"), "busybox", vec![]),
                stage(Some("b"), "busybox", vec![Instruction::User("x".into())]),
                stage(Some("c"), "A", vec![copy_from("1")]),
                stage(None, "busybox", vec![]),
            ],
        };
        let names: Vec<String> = df
            .stages
            .iter()
            .map(|s| s.from.value.image.clone())
            .collect();
        let p = plan(&df, &names, Some("C")).unwrap();
        assert_eq!(p.stages, [0, 1, 2]);
        assert_eq!(p.first_step[..3], [1, 2, 4]);
        assert_eq!(p.total_steps, 5);
        let all = plan(&df, &names, None).unwrap();
        assert_eq!(all.stages, [3]);
        assert_eq!(all.total_steps, 1);
        assert_eq!(
            plan(&df, &names, Some("nope")).unwrap_err(),
            "failed to reach build target nope in Dockerfile"
        );
        assert_eq!(resolve_source(&df, 3, "scratch", false), Source::Scratch);
        assert_eq!(
            resolve_source(&df, 1, "b", false),
            Source::Image("b".into())
        );
    }
}
