//! Progress of long command-line operations (replay, import, export, verify, dump to a
//! file): an indicatif bar with rate and ETA when stderr is a terminal, plain lines on
//! stderr every few seconds otherwise (logs of scripted runs), nothing when quiet.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the plain form prints a line, unless `ANNAL_PROGRESS_EVERY_MS` says.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

fn plain_every() -> Duration {
    std::env::var("ANNAL_PROGRESS_EVERY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(PLAIN_EVERY, Duration::from_millis)
}

/// One operation's progress.
pub struct Progress {
    label: String,
    unit: &'static str,
    total: Option<u64>,
    pos: u64,
    started: Instant,
    kind: Kind,
}

enum Kind {
    Bar(ProgressBar),
    Plain { last: Instant, every: Duration },
    Quiet,
}

impl Progress {
    /// Progress of `label`, counted in `unit` (`events`, `rows`, `bytes`) up to `total`
    /// if known: a bar on a terminal, plain lines otherwise.
    pub fn new(label: impl Into<String>, unit: &'static str, total: Option<u64>) -> Self {
        let kind = if std::io::stderr().is_terminal() {
            Self::bar(unit, total)
        } else {
            Kind::Plain { last: Instant::now(), every: plain_every() }
        };
        let progress = Self { label: label.into(), unit, total, pos: 0, started: Instant::now(), kind };
        if let Kind::Bar(bar) = &progress.kind {
            bar.set_message(progress.label.clone());
        }
        progress.plain_line(false);
        progress
    }

    /// No output at all (e.g. `--quiet`, or a dump to a terminal, where lines are the
    /// progress).
    pub fn quiet() -> Self {
        Self {
            label: String::new(),
            unit: "",
            total: None,
            pos: 0,
            started: Instant::now(),
            kind: Kind::Quiet,
        }
    }

    fn bar(unit: &'static str, total: Option<u64>) -> Kind {
        let template = match (total, unit) {
            (Some(_), "bytes") => "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})",
            (Some(_), _) => "{msg} [{bar:40}] {human_pos}/{human_len} {prefix} ({per_sec}, ETA {eta})",
            (None, _) => "{spinner} {msg} {human_pos} {prefix} ({per_sec}, {elapsed})",
        };
        let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(unit);
        bar.enable_steady_tick(Duration::from_millis(200));
        Kind::Bar(bar)
    }

    /// The total became known or changed.
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Kind::Bar(bar) = &self.kind {
            bar.set_length(total);
        }
    }

    /// `n` more done.
    pub fn inc(&mut self, n: u64) {
        self.set(self.pos + n);
    }

    /// `pos` done so far.
    pub fn set(&mut self, pos: u64) {
        self.pos = pos;
        match &mut self.kind {
            Kind::Bar(bar) => bar.set_position(pos),
            Kind::Plain { last, every } if last.elapsed() >= *every => {
                *last = Instant::now();
                self.plain_line(false);
            }
            Kind::Plain { .. } | Kind::Quiet => {}
        }
    }

    /// Done: clear the bar, or print the last plain line.
    pub fn finish(self) {
        match &self.kind {
            Kind::Bar(bar) => bar.finish_and_clear(),
            Kind::Plain { .. } => self.plain_line(true),
            Kind::Quiet => {}
        }
    }

    fn plain_line(&self, done: bool) {
        if !matches!(self.kind, Kind::Plain { .. }) {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { self.pos as f64 / secs } else { 0.0 };
        let of = match self.total {
            Some(total) if total > 0 => {
                let eta = if rate > 0.0 && !done {
                    format!(", ETA {:.0} s", total.saturating_sub(self.pos) as f64 / rate)
                } else {
                    String::new()
                };
                format!("/{total} ({:.1}%{eta})", self.pos as f64 * 100.0 / total as f64)
            }
            _ => String::new(),
        };
        let state = if done { "done" } else { "progress" };
        let _ = writeln!(
            std::io::stderr(),
            "{}: {state} {}{of} {}, {rate:.0} {}/s, {secs:.1} s",
            self.label,
            self.pos,
            self.unit,
            self.unit
        );
    }
}
