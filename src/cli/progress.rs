//! Progress on stderr: a bar with rows, rate and ETA when stderr is a
//! terminal; otherwise (a log, CI, a pipe) a plain line at most every two
//! seconds. Either way the command ends with one summary line.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Least time between two plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// What the bar's length counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Bytes of the file (a CSV import, whose row count is not known
    /// before reading it all).
    Bytes(u64),
    /// Rows.
    Rows(u64),
    /// Unknown: a spinner.
    Unknown,
}

/// The progress of one command.
pub struct Progress {
    verb: &'static str,
    started: Instant,
    bar: Option<ProgressBar>,
    length: Length,
    last_line: Instant,
}

impl Progress {
    /// Progress of `verb` ("import", "export") over `length`.
    pub fn new(verb: &'static str, length: Length) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match length {
                Length::Bytes(n) | Length::Rows(n) => ProgressBar::new(n),
                Length::Unknown => ProgressBar::new_spinner(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(5));
            // The message carries rows and their rate: for a CSV the bar
            // counts bytes, which would make indicatif's own rate bytes/s.
            let template = match length {
                Length::Unknown => "{spinner} {prefix} {msg} [{elapsed_precise}]",
                _ => "{prefix} [{bar:30}] {percent:>3}% {msg} ETA {eta}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(verb);
            bar
        });
        let now = Instant::now();
        Self {
            verb,
            started: now,
            bar,
            length,
            last_line: now,
        }
    }

    /// Rows per second so far.
    fn rate(&self, rows: u64) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds > 0.0 {
            rows as f64 / seconds
        } else {
            0.0
        }
    }

    /// Reports `rows` done (`failed` of them failed), the file read up to
    /// `position` (in the unit of the length).
    pub fn update(&mut self, rows: u64, failed: u64, position: u64) {
        let rate = self.rate(rows);
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            let failed = if failed > 0 {
                format!(", {} failed", thousands(failed))
            } else {
                String::new()
            };
            bar.set_message(format!(
                "{} rows{failed}, {}/s",
                thousands(rows),
                thousands(rate as u64)
            ));
            return;
        }
        if self.last_line.elapsed() < LINE_EVERY {
            return;
        }
        self.last_line = Instant::now();
        let share = match self.length {
            Length::Bytes(total) | Length::Rows(total) if total > 0 => {
                format!(", {}%", (position.min(total) * 100) / total)
            }
            _ => String::new(),
        };
        let failed = if failed > 0 {
            format!(" ({} failed)", thousands(failed))
        } else {
            String::new()
        };
        eprintln!(
            "{}: {} rows{failed}, {} rows/s{share}",
            self.verb,
            thousands(rows),
            thousands(rate as u64),
        );
    }

    /// Clears the bar and prints the summary line.
    pub fn finish(&mut self, summary: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!("{}: {summary}", self.verb);
    }

    /// Clears the bar without a summary (the command failed; its error
    /// follows).
    pub fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
