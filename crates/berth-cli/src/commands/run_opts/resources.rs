//! The resource flags `run`, `create` and `update` share (memory, CPU, block IO, pids),
//! declared once and flattened into each command.
//!
//! docker words and shows a few of them differently in `update`: there no flag has a default
//! (an absent flag leaves the container's value alone, where `run` and `create` send zero), and
//! three help lines differ. [`ResourceFlags::for_update`] applies those differences.

use anyhow::Result;
use berth_api::models::container::Resources;
use clap::{Arg, Args};

use super::flag_error;
use super::parse::{bytes_flag, parse_nano_cpus, swap_flag};

#[derive(Debug, Args, Clone, Default)]
pub struct ResourceFlags {
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight", value_name = "uint16", default_value = "0")]
    pub blkio_weight: Option<u16>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "int", default_value = "0")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(
        long = "cpu-quota",
        value_name = "int",
        default_value = "0",
        allow_hyphen_values = true
    )]
    pub cpu_quota: Option<i64>,
    /// Limit CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period", value_name = "int", default_value = "0")]
    pub cpu_rt_period: Option<i64>,
    /// Limit CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime", value_name = "int", default_value = "0")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(
        short = 'c',
        long = "cpu-shares",
        value_name = "int",
        default_value = "0"
    )]
    pub cpu_shares: Option<i64>,
    /// Number of CPUs
    #[arg(long, value_name = "decimal")]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "string", default_value = "")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "string", default_value = "")]
    pub cpuset_mems: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "bytes")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(
        long = "pids-limit",
        value_name = "int",
        default_value = "0",
        allow_hyphen_values = true
    )]
    pub pids_limit: Option<i64>,
}

impl ResourceFlags {
    /// `update`'s version of the flags (see the module comment); for `#[command(mut_args)]`.
    pub fn for_update(arg: Arg) -> Arg {
        let help = match arg.get_id().as_str() {
            "cpu_rt_period" => Some("Limit the CPU real-time period in microseconds"),
            "cpu_rt_runtime" => Some("Limit the CPU real-time runtime in microseconds"),
            "memory_swap" => {
                Some("Swap limit equal to memory plus swap: -1 to enable unlimited swap")
            }
            _ => None,
        };
        let arg = arg.default_value(None);
        match help {
            Some(text) => arg.help(text),
            None => arg,
        }
    }

    /// No flag given (only meaningful for `update`, where flags have no defaults).
    pub fn is_empty(&self) -> bool {
        self.blkio_weight.is_none()
            && self.cpu_period.is_none()
            && self.cpu_quota.is_none()
            && self.cpu_rt_period.is_none()
            && self.cpu_rt_runtime.is_none()
            && self.cpu_shares.is_none()
            && self.cpus.is_none()
            && self.cpuset_cpus.is_none()
            && self.cpuset_mems.is_none()
            && self.memory.is_none()
            && self.memory_reservation.is_none()
            && self.memory_swap.is_none()
            && self.pids_limit.is_none()
    }

    /// The limits these flags set; an absent flag is zero (unchanged, for `update`), and an
    /// absent pids limit is left out.
    pub fn to_resources(&self) -> Result<Resources> {
        Ok(Resources {
            memory: bytes_flag(&self.memory, "-m, --memory")?,
            memory_reservation: bytes_flag(&self.memory_reservation, "--memory-reservation")?,
            memory_swap: swap_flag(&self.memory_swap)?,
            nano_cpus: match &self.cpus {
                Some(v) => parse_nano_cpus(v).map_err(|e| flag_error(v, "--cpus", e))?,
                None => 0,
            },
            blkio_weight: self.blkio_weight.unwrap_or(0),
            cpu_period: self.cpu_period.unwrap_or(0),
            cpu_quota: self.cpu_quota.unwrap_or(0),
            cpu_realtime_period: self.cpu_rt_period.unwrap_or(0),
            cpu_realtime_runtime: self.cpu_rt_runtime.unwrap_or(0),
            cpu_shares: self.cpu_shares.unwrap_or(0),
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
            pids_limit: self.pids_limit,
            ..Default::default()
        })
    }
}
