//! Progress of long operations (audit verify, export, purge, anonymize) on stderr only.
//!
//! On a terminal it is one line redrawn in place (`\r`), erased when the work ends; otherwise
//! (a pipe, a log file, cron) it is a plain line every 100,000 records, so logs stay readable.
//! `ALIGN_PROGRESS=always|plain|never` overrides the choice. Nothing is ever written to
//! stdout, so `--json` output is unaffected.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the in-place line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);
/// Records between two plain progress lines.
const PLAIN_EVERY: u64 = 100_000;
/// Width of the bar, in characters.
const BAR: usize = 24;
const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A single line redrawn in place.
    Line,
    /// A line every `PLAIN_EVERY` records.
    Plain,
    /// Nothing.
    Off,
}

fn mode() -> Mode {
    match std::env::var("ALIGN_PROGRESS").as_deref() {
        Ok("always") => Mode::Line,
        Ok("plain") => Mode::Plain,
        Ok("never") => Mode::Off,
        _ if std::io::stderr().is_terminal() => Mode::Line,
        _ => Mode::Plain,
    }
}

/// One operation's progress indicator.
pub(crate) struct Progress {
    label: String,
    mode: Mode,
    started: Instant,
    last_draw: Option<Instant>,
    last_plain: u64,
    frame: usize,
    drawn: bool,
}

impl Progress {
    /// An indicator for work described by `label` (e.g. "verifying the audit log").
    pub(crate) fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            mode: mode(),
            started: Instant::now(),
            last_draw: None,
            last_plain: 0,
            frame: 0,
            drawn: false,
        }
    }

    /// Whether the in-place line is in use (a terminal, or `ALIGN_PROGRESS=always`).
    pub(crate) fn is_live(&self) -> bool {
        self.mode == Mode::Line
    }

    /// `done` records of `total` (if known) are finished.
    pub(crate) fn set(&mut self, done: u64, total: Option<u64>) {
        match self.mode {
            Mode::Off => {}
            Mode::Plain => {
                if done >= self.last_plain + PLAIN_EVERY {
                    self.last_plain = done;
                    match total {
                        Some(t) => eprintln!("{}: {done} of {t} records", self.label),
                        None => eprintln!("{}: {done} records", self.label),
                    }
                }
            }
            Mode::Line => {
                if self.due() || total == Some(done) {
                    let line = render(&self.label, done, total, self.started.elapsed());
                    self.draw(&line);
                }
            }
        }
    }

    /// Work of unknown size is still under way: turns the spinner.
    pub(crate) fn spin(&mut self) {
        if self.mode == Mode::Line && self.due() {
            self.frame = (self.frame + 1) % SPINNER.len();
            let secs = self.started.elapsed().as_secs();
            let line = format!("{} {} {secs}s", self.label, SPINNER[self.frame]);
            self.draw(&line);
        }
    }

    /// Erases the line (on a terminal); plain mode has nothing to undo.
    pub(crate) fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            // Carriage return, then erase the line: the next output starts on a clean line.
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }

    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < REDRAW)
        {
            return false;
        }
        self.last_draw = Some(now);
        true
    }

    fn draw(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The in-place line: `label [#####-----]  42% 4200/10000 3s`, or without a total
/// `label 4200 records 3s`.
fn render(label: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    match total {
        Some(total) if total > 0 => {
            let done = done.min(total);
            // u128 so that huge counts cannot overflow; the results fit their types.
            let pct = u128::from(done) * 100 / u128::from(total);
            let filled = usize::try_from(u128::from(done) * BAR as u128 / u128::from(total))
                .unwrap_or(BAR)
                .min(BAR);
            format!(
                "{label} [{}{}] {pct:>3}% {done}/{total} {secs}s",
                "#".repeat(filled),
                "-".repeat(BAR - filled)
            )
        }
        _ => format!("{label} {done} records {secs}s"),
    }
}

/// Runs `work`, turning a spinner on a terminal while it lasts (for library calls that report
/// no progress of their own, such as purge).
pub(crate) async fn while_running<F: std::future::Future>(label: &str, work: F) -> F::Output {
    let mut progress = Progress::new(label);
    if !progress.is_live() {
        return work.await;
    }
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(REDRAW);
    loop {
        tokio::select! {
            out = &mut work => {
                progress.finish();
                return out;
            }
            _ = tick.tick() => progress.spin(),
        }
    }
}

/// A writer that reports every line written through it to a [`Progress`] (for exports,
/// whose size is not known in advance).
pub(crate) struct CountingLines<'a, W> {
    inner: W,
    lines: u64,
    progress: &'a mut Progress,
}

impl<'a, W: Write> CountingLines<'a, W> {
    pub(crate) fn new(inner: W, progress: &'a mut Progress) -> Self {
        Self {
            inner,
            lines: 0,
            progress,
        }
    }

    /// The writer, to flush and close.
    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingLines<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let new_lines = buf[..n].iter().filter(|b| **b == b'\n').count();
        if new_lines > 0 {
            self.lines += new_lines as u64;
            self.progress.set(self.lines, None);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_share_done() {
        let s = Duration::from_secs(3);
        assert_eq!(
            render("verifying", 0, Some(10), s),
            format!("verifying [{}]   0% 0/10 3s", "-".repeat(BAR))
        );
        assert_eq!(
            render("verifying", 5, Some(10), s),
            format!(
                "verifying [{}{}]  50% 5/10 3s",
                "#".repeat(12),
                "-".repeat(12)
            )
        );
        assert_eq!(
            render("verifying", 10, Some(10), s),
            format!("verifying [{}] 100% 10/10 3s", "#".repeat(BAR))
        );
    }

    #[test]
    fn counts_beyond_the_total_or_without_one_do_not_break_the_line() {
        let s = Duration::ZERO;
        assert!(render("x", 11, Some(10), s).contains("100% 10/10"));
        assert_eq!(render("x", 7, None, s), "x 7 records 0s");
        assert_eq!(render("x", 7, Some(0), s), "x 7 records 0s");
        assert!(render("x", u64::MAX - 1, Some(u64::MAX), s).contains(" 99% "));
    }
}
