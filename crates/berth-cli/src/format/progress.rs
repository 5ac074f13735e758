//! Rendering docker's JSON progress stream (`load`, `import`, later `pull`/`push`), as the
//! docker CLI's `jsonmessage.DisplayJSONMessagesStream` does: plain lines when the output is
//! not a terminal, and on a terminal one line per id updated in place with a progress bar.

use std::collections::HashMap;

use berth_api::models::{JsonMessage, ProgressDetail};

use super::units::human_size;

/// Renders messages one at a time, remembering where each id's line is on a terminal.
pub struct ProgressRenderer {
    terminal: bool,
    /// id → line index (0 = first line printed).
    lines: HashMap<String, usize>,
    count: usize,
}

/// A message carrying an error: the stream failed after the HTTP status was sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StreamError(pub String);

impl ProgressRenderer {
    pub fn new(terminal: bool) -> Self {
        ProgressRenderer {
            terminal,
            lines: HashMap::new(),
            count: 0,
        }
    }

    /// The text to write for one message, or the error it carries.
    pub fn render(&mut self, message: &JsonMessage) -> Result<String, StreamError> {
        if let Some(detail) = &message.error_detail
            && !detail.message.is_empty()
        {
            return Err(StreamError(detail.message.clone()));
        }
        if let Some(error) = &message.error {
            return Err(StreamError(error.clone()));
        }
        let bar = message
            .progress_detail
            .as_ref()
            .map(progress_bar)
            .filter(|b| !b.is_empty())
            .or_else(|| message.progress.clone().filter(|p| !p.is_empty()));
        if !self.terminal && bar.is_some() && message.stream.is_none() {
            // Progress updates are for terminals only.
            return Ok(String::new());
        }
        let mut line = String::new();
        if let Some(id) = message.id.as_deref().filter(|id| !id.is_empty()) {
            line.push_str(id);
            line.push_str(": ");
        }
        let status = message.status.clone().unwrap_or_default();
        if let Some(stream) = &message.stream {
            line.push_str(stream);
            // Streams carry their own newlines.
            return Ok(self.place(message, line, false));
        }
        match (&bar, self.terminal) {
            (Some(bar), true) => line.push_str(&format!("{status} {bar}")),
            _ => line.push_str(&status),
        }
        Ok(self.place(message, line, true))
    }

    fn place(&mut self, message: &JsonMessage, text: String, newline: bool) -> String {
        let id = message.id.clone().filter(|id| !id.is_empty());
        if !self.terminal || id.is_none() || message.stream.is_some() {
            let lines = text.matches('\n').count() + usize::from(newline);
            self.count += lines;
            return if newline { format!("{text}\n") } else { text };
        }
        let id = id.unwrap_or_default();
        match self.lines.get(&id) {
            Some(&index) => {
                let up = self.count - index;
                // Up to the id's line, clear it, write, and back down.
                format!("\x1b[{up}A\x1b[2K\r{text}\x1b[{up}B\r")
            }
            None => {
                self.lines.insert(id, self.count);
                self.count += 1;
                format!("\x1b[2K\r{text}\n")
            }
        }
    }
}

/// docker's `JSONProgress.String()` for a wide terminal: `[=====>     ]  1.2MB/4.26MB`.
pub fn progress_bar(detail: &ProgressDetail) -> String {
    let current = detail.current.unwrap_or(0);
    let total = detail.total.unwrap_or(0);
    if current <= 0 && total <= 0 {
        return String::new();
    }
    if total <= 0 {
        return format!("{:>8}", human_size(current));
    }
    let percent = ((current as f64 / total as f64 * 100.0) as i64 / 2).clamp(0, 50) as usize;
    let bar = format!("[{}>{}] ", "=".repeat(percent), " ".repeat(50 - percent));
    let numbers = if current > total {
        String::new()
    } else {
        format!("{:>8}/{}", human_size(current), human_size(total))
    };
    format!("{bar}{numbers}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_output_skips_progress_and_keeps_streams() {
        let mut r = ProgressRenderer::new(false);
        let progress = JsonMessage {
            status: Some("Loading layer".into()),
            id: Some("abc".into()),
            progress_detail: Some(ProgressDetail {
                current: Some(5),
                total: Some(10),
            }),
            ..Default::default()
        };
        assert_eq!(r.render(&progress).unwrap(), "");
        assert_eq!(
            r.render(&JsonMessage::stream("Loaded image: busybox:latest\n"))
                .unwrap(),
            "Loaded image: busybox:latest\n"
        );
        assert_eq!(
            r.render(&JsonMessage::status("sha256:abc")).unwrap(),
            "sha256:abc\n"
        );
        let err = r.render(&JsonMessage::error("boom")).unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }

    #[test]
    fn bars() {
        let bar = progress_bar(&ProgressDetail {
            current: Some(2_130_688),
            total: Some(4_261_376),
        });
        assert_eq!(
            bar,
            format!("[{}>{}]  2.131MB/4.261MB", "=".repeat(25), " ".repeat(25))
        );
        assert_eq!(progress_bar(&ProgressDetail::default()), "");
    }

    #[test]
    fn terminal_updates_lines_in_place() {
        let mut r = ProgressRenderer::new(true);
        let msg = |cur| JsonMessage {
            status: Some("Loading layer".into()),
            id: Some("abc".into()),
            progress_detail: Some(ProgressDetail {
                current: Some(cur),
                total: Some(10),
            }),
            ..Default::default()
        };
        let first = r.render(&msg(1)).unwrap();
        assert!(first.ends_with('\n'));
        let second = r.render(&msg(5)).unwrap();
        assert!(second.starts_with("\x1b[1A"), "{second:?}");
    }
}
