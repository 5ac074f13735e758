//! The in-process event bus behind `GET /events`: live delivery through a broadcast channel plus
//! a bounded ring of recent events, so `since` can replay what already happened.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use berth_api::models::{EventActor, EventMessage};
use berth_api::{ApiError, Filters};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio::sync::broadcast;

/// How many past events `since` can reach back to.
pub const RING_CAPACITY: usize = 1024;

pub struct EventBus {
    ring: Mutex<VecDeque<EventMessage>>,
    live: broadcast::Sender<EventMessage>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        EventBus {
            ring: Mutex::new(VecDeque::with_capacity(RING_CAPACITY)),
            live: broadcast::channel(256).0,
        }
    }

    /// Records and broadcasts an event.
    pub fn publish(&self, event: EventMessage) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RING_CAPACITY {
            ring.pop_front();
        }
        ring.push_back(event.clone());
        // No receivers is fine: nobody is listening.
        let _ = self.live.send(event);
    }

    /// An image event with Docker's deprecated `status`/`id` fields filled in.
    pub fn image_event(&self, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        self.publish(new_event("image", action, id, attributes));
    }

    /// The buffered events and a receiver for everything published after them, taken
    /// atomically so nothing is missed or seen twice.
    pub fn subscribe(&self) -> (Vec<EventMessage>, broadcast::Receiver<EventMessage>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        (ring.iter().cloned().collect(), self.live.subscribe())
    }

    /// How many `/events` streams are open.
    pub fn listeners(&self) -> usize {
        self.live.receiver_count()
    }
}

/// Builds an event stamped now. Image and container events carry the deprecated `status`, `id`
/// and `from` fields as Docker sends them.
pub fn new_event(
    kind: &str,
    action: &str,
    id: &str,
    attributes: BTreeMap<String, String>,
) -> EventMessage {
    let now = Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default();
    let legacy = kind == "image" || kind == "container";
    let from = if kind == "container" {
        attributes.get("image").cloned()
    } else {
        None
    };
    EventMessage {
        kind: kind.to_string(),
        action: action.to_string(),
        actor: EventActor {
            id: id.to_string(),
            attributes,
        },
        scope: "local".into(),
        time: now.timestamp(),
        time_nano: nanos,
        status: legacy.then(|| action.to_string()),
        id: legacy.then(|| id.to_string()),
        from,
    }
}

/// Filter names `/events` accepts (Docker's list; those about objects Berth does not have yet
/// simply match nothing of theirs).
pub const EVENT_FILTERS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// Does an event pass `/events` filters? Values of one filter are alternatives; different
/// filters must all pass.
pub fn event_matches(filters: &Filters, ev: &EventMessage) -> bool {
    let any = |key: &str, candidates: &[&str]| {
        let wanted = filters.get(key);
        wanted.is_empty() || wanted.iter().any(|w| candidates.contains(w))
    };
    if !any("type", &[ev.kind.as_str()]) {
        return false;
    }
    let action_base = ev.action.split(':').next().unwrap_or_default();
    if !any("event", &[ev.action.as_str(), action_base]) {
        return false;
    }
    if !any("scope", &[ev.scope.as_str()]) {
        return false;
    }
    if !filters.match_labels("label", &ev.actor.attributes) {
        return false;
    }
    let attr = |name: &str| ev.actor.attributes.get(name).map(String::as_str);
    if filters.contains("image") {
        let name = if ev.kind == "image" {
            attr("name")
        } else {
            attr("image")
        }
        .unwrap_or_default();
        let candidates = [
            ev.actor.id.as_str(),
            name,
            strip_tag(&ev.actor.id),
            strip_tag(name),
        ];
        if !filters
            .get("image")
            .iter()
            .any(|w| !w.is_empty() && candidates.contains(w))
        {
            return false;
        }
    }
    if filters.contains("container") {
        if ev.kind != "container" {
            return false;
        }
        let name = attr("name").unwrap_or_default();
        if !filters
            .get("container")
            .iter()
            .any(|w| *w == name || (!w.is_empty() && ev.actor.id.starts_with(w)))
        {
            return false;
        }
    }
    for (key, kind) in [
        ("network", "network"),
        ("volume", "volume"),
        ("daemon", "daemon"),
        ("plugin", "plugin"),
        ("node", "node"),
        ("service", "service"),
        ("secret", "secret"),
        ("config", "config"),
    ] {
        if filters.contains(key) {
            let name = attr("name").unwrap_or_default();
            if ev.kind != kind || !any(key, &[ev.actor.id.as_str(), name]) {
                return false;
            }
        }
    }
    true
}

/// `busybox:latest` → `busybox`; leaves `localhost:5000/x` alone.
fn strip_tag(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// A point in time as `(seconds, nanoseconds)` since the epoch.
pub type Timestamp = (i64, i64);

/// Parses a `since`/`until` value as Docker does: unix seconds (`1700000000` or
/// `1700000000.000000001`), RFC 3339 or a date, or a Go duration (`10m`, `1h30m`) meaning that
/// long before `now`.
pub fn parse_timestamp(value: &str, now: DateTime<Utc>) -> Result<Timestamp, ApiError> {
    let invalid = || ApiError::invalid(format!("invalid timestamp {value:?}"));
    // As Docker: a bare `0` is the epoch, not a zero duration.
    if let Some(d) = parse_go_duration(value).filter(|_| value != "0") {
        let t = now - d;
        return Ok((t.timestamp(), t.timestamp_subsec_nanos() as i64));
    }
    if value.contains('-') && !value.starts_with('-') {
        let t = if let Ok(t) = DateTime::parse_from_rfc3339(value) {
            t.with_timezone(&Utc)
        } else if let Ok(t) = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f") {
            t.and_utc()
        } else if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            d.and_hms_opt(0, 0, 0).ok_or_else(invalid)?.and_utc()
        } else {
            return Err(invalid());
        };
        return Ok((t.timestamp(), t.timestamp_subsec_nanos() as i64));
    }
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().map_err(|_| invalid())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| invalid())?
    };
    Ok((secs, nanos))
}

/// Go's `time.ParseDuration` (`10m`, `1h30m`); `None` when the text is not a duration.
pub fn parse_go_duration(text: &str) -> Option<chrono::Duration> {
    berth_api::duration::parse_go_duration(text).map(chrono::Duration::nanoseconds)
}

/// Is the event at or after `since` (when given)?
pub fn after(ev: &EventMessage, since: Option<Timestamp>) -> bool {
    since.is_none_or(|(s, n)| ev.time_nano >= s.saturating_mul(1_000_000_000).saturating_add(n))
}

/// Is the event at or before `until` (when given)?
pub fn before(ev: &EventMessage, until: Option<Timestamp>) -> bool {
    until.is_none_or(|(s, n)| ev.time_nano <= s.saturating_mul(1_000_000_000).saturating_add(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> EventMessage {
        new_event(
            kind,
            action,
            id,
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn filters_by_type_action_image_label() {
        let tag = ev(
            "image",
            "tag",
            "sha256:abc",
            &[("name", "busybox:latest"), ("l", "1")],
        );
        let f = |json: &str| Filters::parse(json).unwrap();
        assert!(event_matches(&f("{}"), &tag));
        assert!(event_matches(&f(r#"{"type":["image"]}"#), &tag));
        assert!(!event_matches(&f(r#"{"type":["container"]}"#), &tag));
        assert!(event_matches(&f(r#"{"event":["untag","tag"]}"#), &tag));
        assert!(!event_matches(&f(r#"{"event":["delete"]}"#), &tag));
        assert!(event_matches(&f(r#"{"image":["busybox"]}"#), &tag));
        assert!(event_matches(&f(r#"{"image":["busybox:latest"]}"#), &tag));
        assert!(event_matches(&f(r#"{"image":["sha256:abc"]}"#), &tag));
        assert!(!event_matches(&f(r#"{"image":["alpine"]}"#), &tag));
        assert!(event_matches(&f(r#"{"label":["l=1"]}"#), &tag));
        assert!(!event_matches(&f(r#"{"label":["l=2"]}"#), &tag));
        assert!(!event_matches(&f(r#"{"container":["x"]}"#), &tag));
        assert!(event_matches(&f(r#"{"scope":["local"]}"#), &tag));
        assert_eq!(tag.status.as_deref(), Some("tag"));
        assert_eq!(tag.id.as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn timestamps_and_durations() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_timestamp("1700000000", now).unwrap(), (1700000000, 0));
        assert_eq!(parse_timestamp("0", now).unwrap(), (0, 0));
        assert_eq!(
            parse_timestamp("1700000000.5", now).unwrap(),
            (1700000000, 500_000_000)
        );
        assert_eq!(
            parse_timestamp("1700000000.000000001", now).unwrap(),
            (1700000000, 1)
        );
        let start = now.timestamp() - 600;
        assert_eq!(parse_timestamp("10m", now).unwrap(), (start, 0));
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00Z", now).unwrap(),
            (start, 0)
        );
        assert_eq!(parse_timestamp("2024-01-01", now).unwrap(), (start, 0));
        assert_eq!(
            parse_timestamp("2024-01-01T00:00:00.25+00:00", now).unwrap(),
            (start, 250_000_000)
        );
        assert!(parse_timestamp("yesterday", now).is_err());
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            chrono::Duration::minutes(90)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            chrono::Duration::milliseconds(1500)
        );
        assert!(parse_go_duration("10").is_none());
        assert!(parse_go_duration("5d").is_none());
    }

    #[test]
    fn ring_is_bounded_and_replays() {
        let bus = EventBus::new();
        for i in 0..(RING_CAPACITY + 5) {
            bus.image_event("tag", &format!("id{i}"), BTreeMap::new());
        }
        let (past, mut rx) = bus.subscribe();
        assert_eq!(past.len(), RING_CAPACITY);
        assert_eq!(past[0].actor.id, "id5");
        bus.image_event("delete", "x", BTreeMap::new());
        assert_eq!(rx.try_recv().unwrap().action, "delete");
        let e = &past[0];
        assert!(after(e, Some((e.time, 0))));
        assert!(!after(e, Some((e.time + 1, 0))));
        assert!(before(e, Some((e.time + 1, 0))));
        assert!(!before(e, Some((e.time - 1, 0))));
    }
}
