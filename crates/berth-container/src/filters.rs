//! `GET /containers/json` filters, with Docker's names and validation messages.

use berth_api::{ApiError, Filters};
use chrono::{DateTime, Utc};

use crate::error::{ContainerError, Result, invalid};
use crate::record::{Record, Status};

/// Filter names `GET /containers/json` accepts (Docker's list).
pub const ACCEPTED: &[&str] = &[
    "ancestor",
    "before",
    "expose",
    "exited",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "label!",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
];

const STATUSES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

fn api(e: ApiError) -> ContainerError {
    invalid(e.message)
}

/// A parsed, validated filter set. `before`/`since` and `ancestor` are resolved by the caller.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub filters: Filters,
    pub exited: Vec<i64>,
    names: Vec<regex::Regex>,
    ids: Vec<regex::Regex>,
    /// Image ids (`sha256:...`) that `ancestor` values resolved to.
    pub ancestors: Option<Vec<String>>,
    /// Created before this time (`before`).
    pub before: Option<DateTime<Utc>>,
    /// Created after this time (`since`).
    pub since: Option<DateTime<Utc>>,
}

impl ListFilter {
    /// Validates the filters with Docker's messages.
    pub fn new(filters: Filters) -> Result<ListFilter> {
        filters.validate(ACCEPTED).map_err(api)?;
        for s in filters.get("status") {
            if !STATUSES.contains(&s) {
                return Err(invalid(format!("invalid filter 'status={s}'")));
            }
        }
        for h in filters.get("health") {
            if !["starting", "healthy", "unhealthy", "none"].contains(&h) {
                return Err(invalid(format!("invalid filter 'health={h}'")));
            }
        }
        let mut exited = Vec::new();
        for e in filters.get("exited") {
            exited.push(
                e.parse::<i64>()
                    .map_err(|_| invalid(format!("invalid filter 'exited={e}'")))?,
            );
        }
        let re = |key: &str| -> Result<Vec<regex::Regex>> {
            filters
                .get(key)
                .into_iter()
                .map(|v| {
                    regex::Regex::new(v)
                        .map_err(|e| invalid(format!("invalid filter '{key}={v}': {e}")))
                })
                .collect()
        };
        let names = re("name")?;
        let ids = re("id")?;
        Ok(ListFilter {
            exited,
            names,
            ids,
            filters,
            ..Default::default()
        })
    }

    /// Whether stopped containers are listed even without `all` (a status or exited filter
    /// asks for them).
    pub fn wants_stopped(&self) -> bool {
        self.filters.contains("status") || !self.exited.is_empty()
    }

    /// Does a container pass every filter?
    pub fn matches(&self, r: &Record) -> bool {
        let f = &self.filters;
        let status = r.state.status.as_str();
        if f.contains("status") && !f.get("status").contains(&status) {
            return false;
        }
        if !self.exited.is_empty()
            && (r.state.status != Status::Exited || !self.exited.contains(&r.state.exit_code))
        {
            return false;
        }
        let slash = r.slash_name();
        if !self.names.is_empty() && !self.names.iter().any(|re| re.is_match(&slash)) {
            return false;
        }
        if !self.ids.is_empty() && !self.ids.iter().any(|re| re.is_match(&r.id)) {
            return false;
        }
        let labels = r.config.labels.clone().unwrap_or_default();
        if !f.match_labels("label", &labels) {
            return false;
        }
        for neg in f.get("label!") {
            let hit = match neg.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(neg),
            };
            if hit {
                return false;
            }
        }
        if let Some(ancestors) = &self.ancestors
            && !ancestors.contains(&r.image_id)
        {
            return false;
        }
        if let Some(b) = self.before
            && r.created >= b
        {
            return false;
        }
        if let Some(s) = self.since
            && r.created <= s
        {
            return false;
        }
        if f.contains("health") {
            let h = r
                .state
                .health
                .as_ref()
                .map_or("none", |h| h.status.as_str());
            if !f.get("health").contains(&h) {
                return false;
            }
        }
        if f.contains("network") {
            let mode = r.host_config.network_mode.to_string();
            if !f.get("network").contains(&mode.as_str()) {
                return false;
            }
        }
        if f.contains("expose") {
            let ports = r.config.exposed_ports.clone().unwrap_or_default();
            let hit = f
                .get("expose")
                .iter()
                .any(|p| ports.contains_key(*p) || ports.contains_key(&format!("{p}/tcp")));
            if !hit {
                return false;
            }
        }
        if f.contains("publish") {
            let ports = r.host_config.port_bindings.clone().unwrap_or_default();
            let hit = f
                .get("publish")
                .iter()
                .any(|p| ports.contains_key(*p) || ports.contains_key(&format!("{p}/tcp")));
            if !hit {
                return false;
            }
        }
        if f.contains("volume") {
            let mounts = crate::volumes::entries(r);
            let hit = f.get("volume").iter().any(|v| {
                mounts
                    .iter()
                    .any(|m| m.name == *v || m.source == *v || m.destination == *v)
            });
            if !hit {
                return false;
            }
        }
        if f.contains("is-task") && f.get("is-task").contains(&"true") {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, status: Status, code: i64) -> Record {
        let mut r = Record {
            id: format!("{name}00000000000000"),
            name: name.into(),
            ..Default::default()
        };
        r.state.status = status;
        r.state.exit_code = code;
        r.config.labels = Some([("app".to_string(), name.to_string())].into());
        r
    }

    fn lf(json: &str) -> Result<ListFilter> {
        ListFilter::new(Filters::parse(json).unwrap())
    }

    #[test]
    fn status_name_id_label_exited() {
        let web = rec("web", Status::Running, 0);
        let db = rec("db", Status::Exited, 3);
        let f = lf(r#"{"status":["exited"]}"#).unwrap();
        assert!(f.wants_stopped());
        assert!(!f.matches(&web) && f.matches(&db));
        let f = lf(r#"{"name":["^/we"]}"#).unwrap();
        assert!(f.matches(&web) && !f.matches(&db));
        let f = lf(r#"{"name":["e"]}"#).unwrap();
        assert!(f.matches(&web) && !f.matches(&db));
        let f = lf(r#"{"id":["db0"]}"#).unwrap();
        assert!(f.matches(&db) && !f.matches(&web));
        let f = lf(r#"{"label":["app=db"]}"#).unwrap();
        assert!(f.matches(&db) && !f.matches(&web));
        let f = lf(r#"{"label!":["app=db"]}"#).unwrap();
        assert!(!f.matches(&db) && f.matches(&web));
        let f = lf(r#"{"exited":["3"]}"#).unwrap();
        assert!(f.matches(&db) && !f.matches(&web));
        assert!(!lf(r#"{"exited":["0"]}"#).unwrap().matches(&db));
    }

    #[test]
    fn bad_filters_are_refused_with_dockers_words() {
        assert_eq!(
            lf(r#"{"bogus":["x"]}"#).unwrap_err().to_string(),
            "invalid filter 'bogus'"
        );
        assert_eq!(
            lf(r#"{"status":["sleeping"]}"#).unwrap_err().to_string(),
            "invalid filter 'status=sleeping'"
        );
        assert_eq!(
            lf(r#"{"exited":["x"]}"#).unwrap_err().to_string(),
            "invalid filter 'exited=x'"
        );
    }
}
