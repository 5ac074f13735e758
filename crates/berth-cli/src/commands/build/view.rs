//! Showing the legacy build stream. Piped (or `--progress plain`): the daemon's text as is,
//! as the docker CLI prints it. On a terminal: a compact live view, one line per step with
//! its time or CACHED, and under the running step its last few output lines, redrawn in
//! place; a failed step's output stays on screen.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Output lines of the running step kept on screen.
const TAIL: usize = 5;
/// Output lines kept to show when a step fails.
const KEEP: usize = 200;

struct Step {
    title: String,
    start: Instant,
    cached: bool,
    output: VecDeque<String>,
}

/// The live view's state; [`LiveView::feed`] and [`LiveView::tick`] return the bytes to
/// write (cursor movement included).
pub struct LiveView {
    width: usize,
    current: Option<Step>,
    /// An incomplete line of stream text.
    partial: String,
    /// Lines of the live region now on screen (erased before the next draw).
    drawn: usize,
}

fn fmt_duration(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// ` ---> 0123456789ab`: a step's result (an image ID), not output to show.
fn is_result_line(line: &str) -> bool {
    line.strip_prefix(" ---> ")
        .is_some_and(|id| id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()))
}

impl LiveView {
    pub fn new(width: usize) -> Self {
        LiveView {
            width: width.max(20),
            current: None,
            partial: String::new(),
            drawn: 0,
        }
    }

    fn erase(&mut self) -> String {
        let s = if self.drawn > 0 {
            format!("\x1b[{}A\r\x1b[J", self.drawn)
        } else {
            String::new()
        };
        self.drawn = 0;
        s
    }

    fn draw(&mut self) -> String {
        let Some(step) = &self.current else {
            return String::new();
        };
        let mut s = format!(
            "{:>6} {}\n",
            fmt_duration(step.start.elapsed()),
            truncate(&step.title, self.width - 7)
        );
        let skip = step.output.len().saturating_sub(TAIL);
        let mut lines = 1;
        for line in step.output.iter().skip(skip) {
            s.push_str(&format!(
                "\x1b[2m       {}\x1b[0m\n",
                truncate(line, self.width - 7)
            ));
            lines += 1;
        }
        self.drawn = lines;
        s
    }

    /// The finished step's permanent line.
    fn finish_step(&mut self) -> String {
        match self.current.take() {
            Some(step) => {
                let status = if step.cached {
                    "CACHED".to_string()
                } else {
                    fmt_duration(step.start.elapsed())
                };
                format!("{status:>6} {}\n", truncate(&step.title, self.width - 7))
            }
            None => String::new(),
        }
    }

    fn line(&mut self, line: &str, out: &mut String) {
        if let Some(rest) = line.strip_prefix("Step ") {
            out.push_str(&self.finish_step());
            // `Step 2/5 : RUN make` → `[2/5] RUN make`.
            let title = match rest.split_once(" : ") {
                Some((n, instr)) => format!("[{n}] {instr}"),
                None => rest.to_string(),
            };
            self.current = Some(Step {
                title,
                start: Instant::now(),
                cached: false,
                output: VecDeque::new(),
            });
            return;
        }
        if line == " ---> Using cache" {
            if let Some(s) = &mut self.current {
                s.cached = true;
            }
            return;
        }
        if line.starts_with(" ---> Running in ")
            || line.starts_with("Removing intermediate container ")
            || line.starts_with("Sending build context to ")
            || is_result_line(line)
            || line.trim().is_empty()
        {
            return;
        }
        if line.starts_with("Successfully built ") || line.starts_with("Successfully tagged ") {
            out.push_str(&self.finish_step());
            out.push_str(line);
            out.push('\n');
            return;
        }
        match &mut self.current {
            Some(step) => {
                step.output.push_back(line.to_string());
                if step.output.len() > KEEP {
                    step.output.pop_front();
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }

    /// Stream text from the daemon.
    pub fn feed(&mut self, text: &str) -> String {
        let mut out = self.erase();
        self.partial.push_str(&text.replace('\r', "\n"));
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.line(line.trim_end_matches('\n'), &mut out);
        }
        out.push_str(&self.draw());
        out
    }

    /// Other text to print above the live region (pull progress, warnings).
    pub fn print(&mut self, text: &str) -> String {
        let mut out = self.erase();
        out.push_str(text);
        if !text.ends_with('\n') && !text.is_empty() {
            out.push('\n');
        }
        out.push_str(&self.draw());
        out
    }

    /// A transient line (the context being sent) shown until the build's output starts.
    pub fn status(&mut self, text: &str) -> String {
        let mut out = self.erase();
        out.push_str(&truncate(text, self.width));
        out.push('\n');
        self.drawn = 1;
        out
    }

    /// Redraws the running step's time.
    pub fn tick(&mut self) -> String {
        if self.current.is_none() {
            return String::new();
        }
        let mut out = self.erase();
        out.push_str(&self.draw());
        out
    }

    /// The end of the stream: the last step's line; on failure with its whole output kept.
    pub fn finish(&mut self, failed: bool) -> String {
        let mut out = self.erase();
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.line(&rest, &mut out);
        }
        let output: Vec<String> = match (&self.current, failed) {
            (Some(s), true) => s.output.iter().cloned().collect(),
            _ => Vec::new(),
        };
        if failed && let Some(s) = &mut self.current {
            s.cached = false;
        }
        out.push_str(&self.finish_step());
        for line in output {
            out.push_str(&format!("       {line}\n"));
        }
        out
    }

    pub fn is_running(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> String {
        // Drop the escape sequences: what stays is what remains readable.
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn steps_become_one_line_each() {
        let mut v = LiveView::new(80);
        let mut all = String::new();
        all += &v.feed("Step 1/3 : FROM busybox\n ---> 0123456789ab\nStep 2/3 : COPY . /app\n ---> Using cache\n ---> 1123456789ab\n");
        all += &v.feed("Step 3/3 : RUN make\n ---> Running in abc\nbuilding\npart");
        assert!(v.is_running());
        all += &v.feed("ial\nRemoving intermediate container abc\n ---> 2123456789ab\nSuccessfully built 2123456789ab\nSuccessfully tagged app:1\n");
        all += &v.finish(false);
        let text = strip(&all);
        assert!(text.contains("[1/3] FROM busybox\n"), "{text}");
        assert!(text.contains("CACHED [2/3] COPY . /app\n"), "{text}");
        // The running step's output shows while it runs; a finished step keeps one line.
        assert!(text.contains("       building\n"), "{text}");
        assert!(
            text.ends_with("Successfully built 2123456789ab\nSuccessfully tagged app:1\n"),
            "{text}"
        );
        assert!(!text.contains("Removing intermediate"));
    }

    #[test]
    fn the_status_line_goes_when_steps_start() {
        let mut v = LiveView::new(80);
        let first = v.status("Sending build context to Berth daemon  1MB");
        assert_eq!(first, "Sending build context to Berth daemon  1MB\n");
        let second = v.status("Sending build context to Berth daemon  2MB");
        assert!(second.starts_with("\x1b[1A\r\x1b[J"));
        assert!(v.feed("Step 1/1 : FROM x\n").starts_with("\x1b[1A\r\x1b[J"));
    }

    #[test]
    fn a_failed_step_keeps_its_output() {
        let mut v = LiveView::new(80);
        v.feed(
            "Step 1/1 : RUN for i in 1 2 3 4 5 6 7; do echo $i; done; exit 3\n ---> Running in x\n",
        );
        v.feed("1\n2\n3\n4\n5\n6\n7\n");
        let end = strip(&v.finish(true));
        assert!(end.contains("[1/1] RUN for i"));
        for i in 1..=7 {
            assert!(end.contains(&format!("       {i}\n")), "{end}");
        }
    }
}
