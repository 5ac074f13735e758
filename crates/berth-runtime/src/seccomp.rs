//! Docker-format seccomp profiles (`profiles/seccomp-default.json`, or a user's custom profile)
//! resolved into an OCI [`LinuxSeccomp`] for one container: rules are kept or dropped by their
//! `includes`/`excludes` conditions on capabilities, architecture and kernel version.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::Deserialize;

use crate::error::{Result, RuntimeError};

/// Docker's default profile (moby/profiles, Apache-2.0; see `profiles/NOTICE.md`).
pub const DEFAULT_PROFILE: &str = include_str!("../profiles/seccomp-default.json");

/// What a profile's conditions are evaluated against.
#[derive(Debug, Clone)]
pub struct SeccompContext<'a> {
    /// The container's bounding capabilities, as `CAP_*` names.
    pub caps: &'a [String],
    /// Go-style architecture name of the host (`amd64`, `arm64`), as profiles name them.
    pub arch: &'a str,
    /// Host kernel version (major, minor).
    pub kernel: (u32, u32),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Vec<ArchMapEntry>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: LinuxSeccompOperator,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The Go architecture name for the architecture this binary runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn native_seccomp_arch(go_arch: &str) -> Option<Arch> {
    match go_arch {
        "amd64" => Some(Arch::ScmpArchX86_64),
        "arm64" => Some(Arch::ScmpArchAarch64),
        "386" => Some(Arch::ScmpArchX86),
        "arm" => Some(Arch::ScmpArchArm),
        "ppc64le" => Some(Arch::ScmpArchPpc64le),
        "s390x" => Some(Arch::ScmpArchS390x),
        "riscv64" => Some(Arch::ScmpArchRiscv64),
        _ => None,
    }
}

fn parse_kernel(v: &str) -> Result<(u32, u32)> {
    let mut it = v.split('.');
    let major = it.next().and_then(|s| s.parse().ok());
    let minor = it.next().map(|s| s.parse().ok()).unwrap_or(Some(0));
    match (major, minor) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(RuntimeError::Seccomp(format!("bad minKernel {v:?}"))),
    }
}

/// Resolve a Docker-format profile (`json`) for one container.
pub fn resolve(json: &str, ctx: &SeccompContext<'_>) -> Result<LinuxSeccomp> {
    let profile: Profile =
        serde_json::from_str(json).map_err(|e| RuntimeError::Seccomp(e.to_string()))?;
    let has_cap = |c: &String| ctx.caps.iter().any(|have| have.eq_ignore_ascii_case(c));

    let mut architectures = profile.architectures.clone();
    if architectures.is_empty()
        && let Some(native) = native_seccomp_arch(ctx.arch)
        && let Some(entry) = profile.arch_map.iter().find(|e| e.architecture == native)
    {
        architectures.push(entry.architecture);
        architectures.extend(entry.sub_architectures.iter().flatten().copied());
    }

    let mut syscalls = Vec::new();
    for rule in profile.syscalls {
        let inc = &rule.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == ctx.arch) {
            continue;
        }
        if !inc.caps.iter().all(has_cap) {
            continue;
        }
        if let Some(k) = &inc.min_kernel
            && ctx.kernel < parse_kernel(k)?
        {
            continue;
        }
        let exc = &rule.excludes;
        if exc.arches.iter().any(|a| a == ctx.arch) {
            continue;
        }
        if exc.caps.iter().any(has_cap) {
            continue;
        }
        if let Some(k) = &exc.min_kernel
            && ctx.kernel >= parse_kernel(k)?
        {
            continue;
        }
        let mut names = rule.names;
        names.extend(rule.name);
        if names.is_empty() {
            continue;
        }
        let mut sc = LinuxSyscall::default();
        sc.set_names(names);
        sc.set_action(rule.action);
        sc.set_errno_ret(rule.errno_ret);
        if let Some(args) = rule.args {
            let args = args
                .into_iter()
                .map(|a| {
                    let b = LinuxSeccompArgBuilder::default()
                        .index(a.index)
                        .value(a.value)
                        .op(a.op);
                    let b = if a.value_two != 0 {
                        b.value_two(a.value_two)
                    } else {
                        b
                    };
                    b.build().map_err(|e| RuntimeError::Seccomp(e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            sc.set_args(Some(args));
        }
        syscalls.push(sc);
    }

    let mut out = LinuxSeccomp::default();
    out.set_default_action(profile.default_action);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_architectures(Some(architectures));
    out.set_syscalls(Some(syscalls));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names().clone())
            .collect()
    }

    fn ctx<'a>(caps: &'a [String]) -> SeccompContext<'a> {
        SeccompContext {
            caps,
            arch: "amd64",
            kernel: (6, 18),
        }
    }

    #[test]
    fn default_profile_without_sys_admin() {
        let caps = vec!["CAP_CHOWN".to_string()];
        let s = resolve(DEFAULT_PROFILE, &ctx(&caps)).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        let n = names(&s);
        assert!(n.contains(&"read".to_string()));
        assert!(
            n.contains(&"arch_prctl".to_string()),
            "amd64-only rule kept"
        );
        assert!(
            !n.contains(&"mount".to_string()),
            "CAP_SYS_ADMIN rule dropped"
        );
        assert!(!n.contains(&"reboot".to_string()));
        assert!(
            !n.contains(&"s390_pci_mmio_read".to_string()),
            "s390 rule dropped"
        );
        // clone is allowed with a flag mask when CAP_SYS_ADMIN is absent; clone3 gets ENOSYS.
        let clone3 = s
            .syscalls()
            .iter()
            .flatten()
            .find(|r| r.names().contains(&"clone3".to_string()))
            .unwrap();
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(38));
        let clone = s
            .syscalls()
            .iter()
            .flatten()
            .find(|r| r.names() == &vec!["clone".to_string()])
            .unwrap();
        assert_eq!(
            clone.args().as_ref().unwrap()[0].op(),
            LinuxSeccompOperator::ScmpCmpMaskedEq
        );
    }

    #[test]
    fn default_profile_with_sys_admin() {
        let caps = vec!["CAP_SYS_ADMIN".to_string(), "CAP_SYS_BOOT".to_string()];
        let s = resolve(DEFAULT_PROFILE, &ctx(&caps)).unwrap();
        let n = names(&s);
        assert!(n.contains(&"mount".to_string()));
        assert!(n.contains(&"reboot".to_string()));
        let clone3 = s
            .syscalls()
            .iter()
            .flatten()
            .find(|r| r.names().contains(&"clone3".to_string()));
        assert!(clone3.is_none_or(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
    }

    #[test]
    fn min_kernel_condition() {
        let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["new_call"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"6.20"}},
            {"names":["old_call"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}}]}"#;
        let s = resolve(json, &ctx(&[])).unwrap();
        assert_eq!(names(&s), vec!["old_call".to_string()]);
    }

    #[test]
    fn bad_profile_is_an_error() {
        assert!(matches!(
            resolve("{", &ctx(&[])),
            Err(RuntimeError::Seccomp(_))
        ));
    }
}
