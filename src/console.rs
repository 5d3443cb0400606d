/*!
The server's console output: one line per event on stdout, flushed at once.

Scripts and the reference's own tests read these lines, so their text is fixed (SPEC.md,
"Console output"); colours are added only for people: when stdout is a terminal, unless
`NO_COLOR` is set, and `AM_FORCE_COLOR_OUTPUT=on|off` overrides both. Lines that belong together
(`> Upload via HTTP:` and its result) are queued as one piece so threads never interleave them.

Nobody may be reading stdout (a CI step capturing it, a terminal paused with Ctrl-S, `| less`),
and then a write blocks. So only one writer thread ever writes: everybody else queues text
for it and goes on, never waiting, whatever lock they hold. The queue holds at most
`QUEUE_BYTES`; beyond, lines are dropped and counted, and once stdout takes lines again a
line says how many were lost.
*/

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bytes of console text waiting for stdout, at most.
const QUEUE_BYTES: usize = 1 << 20;

/// The queue to the writer thread.
struct Output {
    sender: Mutex<Sender<Message>>,
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
    /// Lines dropped and not reported yet, and whether a report is queued.
    dropped: AtomicU64,
    report_queued: AtomicBool,
}

enum Message {
    Text(String),
    /// Say how many lines were dropped: queued after the lines that were waiting when the
    /// first was dropped, so the report comes where the gap is.
    DroppedReport,
}

static OUTPUT: OnceLock<Output> = OnceLock::new();

fn output() -> &'static Output {
    OUTPUT.get_or_init(|| {
        let (sender, receiver) = channel();
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || write_lines(receiver))
            .ok();
        Output {
            sender: Mutex::new(sender),
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            report_queued: AtomicBool::new(false),
        }
    })
}

/// The writer thread: the only place that writes to stdout while the server runs.
fn write_lines(receiver: Receiver<Message>) {
    let stdout = std::io::stdout();
    for message in receiver {
        let output = output();
        let mut out = stdout.lock();
        // A closed stdout must not stop the server.
        match message {
            Message::Text(text) => {
                let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
                output.queued.fetch_sub(text.len(), Ordering::Relaxed);
            }
            Message::DroppedReport => {
                output.report_queued.store(false, Ordering::Relaxed);
                let dropped = output.dropped.swap(0, Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "> {dropped} console line{} dropped: stdout was not read",
                    if dropped == 1 { "" } else { "s" }
                )
                .and_then(|_| out.flush());
            }
        }
    }
}

fn send(output: &Output, message: Message) -> bool {
    output
        .sender
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(message)
        .is_ok()
}

/// Queue `text` (whole lines) for stdout, or drop it when the queue is full. Never blocks.
fn queue(text: String) {
    let output = output();
    let size = text.len();
    let before = output.queued.fetch_add(size, Ordering::Relaxed);
    if before + size > QUEUE_BYTES {
        output.queued.fetch_sub(size, Ordering::Relaxed);
        let lines = text.bytes().filter(|&b| b == b'\n').count() as u64;
        output.dropped.fetch_add(lines, Ordering::Relaxed);
        if !output.report_queued.swap(true, Ordering::Relaxed) {
            send(output, Message::DroppedReport);
        }
        return;
    }
    if !send(output, Message::Text(text)) {
        output.queued.fetch_sub(size, Ordering::Relaxed);
    }
}

/// Wait until what was queued is written, for at most `patience` (at shutdown: a stdout that
/// nobody reads must not keep the server from stopping).
pub fn flush(patience: Duration) {
    let Some(output) = OUTPUT.get() else { return };
    let deadline = Instant::now() + patience;
    while output.queued.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What happened to a package or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Adding {
        id: String,
        arch: String,
    },
    Updating {
        id: String,
        arch: String,
    },
    Unchanged {
        id: String,
        arch: String,
    },
    Failed {
        file: String,
        reason: String,
    },
    Removing {
        id: String,
        arch: String,
    },
    NoMatch {
        pattern: String,
    },
    Skipping {
        file: String,
        reason: String,
    },
    Dropped {
        file: String,
        reason: String,
    },
    /// A rejected file from `upload/`, kept at `place`.
    Kept {
        file: String,
        place: String,
    },
    Warning {
        id: String,
        arch: String,
        reason: String,
    },
}

impl Event {
    /// The line without colours, control characters escaped.
    pub fn text(&self) -> String {
        escape_controls(&self.raw_text()).into_owned()
    }

    fn raw_text(&self) -> String {
        match self {
            Event::Adding { id, arch } => format!(" + adding   {id} [{arch}]"),
            Event::Updating { id, arch } => format!(" ! updating {id} [{arch}]"),
            Event::Unchanged { id, arch } => format!(" = skipping {id} [{arch}] (no changes)"),
            Event::Failed { file, reason } => format!(" x failed   {file} ({reason})"),
            Event::Removing { id, arch } => format!(" - removing {id} [{arch}]"),
            Event::NoMatch { pattern } => format!(" = skipping {pattern} (no match)"),
            Event::Skipping { file, reason } => format!(" = skipping {file} ({reason})"),
            Event::Dropped { file, reason } => format!(" - dropping {file} ({reason})"),
            Event::Kept { file, place } => format!(" = keeping  {file} in {place}"),
            Event::Warning { id, arch, reason } => format!(" ! warning  {id} [{arch}] ({reason})"),
        }
    }

    fn color(&self) -> &'static str {
        match self {
            Event::Adding { .. } => GREEN,
            Event::Updating { .. } | Event::Warning { .. } => YELLOW,
            Event::Failed { .. } => RED,
            Event::Removing { .. } => MAGENTA,
            _ => GRAY,
        }
    }
}

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const MAGENTA: &str = "\x1b[35m";
const GRAY: &str = "\x1b[90m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Writes the server's console lines.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    color: bool,
}

/// One line of output: a heading (`> ...`) or an event.
pub enum Line<'a> {
    Heading(&'a str),
    Event(&'a Event),
}

impl Console {
    /// Decide on colours from the environment and whether stdout is a terminal.
    pub fn from_environment() -> Console {
        let forced = std::env::var("AM_FORCE_COLOR_OUTPUT").ok();
        let color = match forced.as_deref() {
            Some("on") => true,
            Some("off") => false,
            _ => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stdout().is_terminal()
            }
        };
        Console { color }
    }

    /// The program's title line.
    pub fn title(&self) {
        let title = "Qt ApplicationManager Package Server";
        if self.color {
            self.write(&format!("{BOLD}{title}{RESET}"));
        } else {
            self.write(title);
        }
    }

    /// `> <text>`
    pub fn heading(&self, text: &str) {
        self.lines(&[Line::Heading(text)]);
    }

    pub fn event(&self, event: &Event) {
        self.lines(&[Line::Event(event)]);
    }

    /// Several lines, never interleaved with other threads' output.
    pub fn lines(&self, lines: &[Line<'_>]) {
        let mut text = String::new();
        for line in lines {
            match (line, self.color) {
                (Line::Heading(h), false) => text.push_str(&format!("> {}", escape_controls(h))),
                (Line::Heading(h), true) => {
                    text.push_str(&format!("{BOLD}>{RESET} {}", escape_controls(h)))
                }
                (Line::Event(e), false) => text.push_str(&e.text()),
                (Line::Event(e), true) => {
                    text.push_str(&format!("{}{}{RESET}", e.color(), e.text()))
                }
            }
            text.push('\n');
        }
        queue(text);
    }

    /// A line of the request log, as it is but with control characters escaped.
    pub fn request(&self, line: &str) {
        self.write(&escape_controls(line));
    }

    /// A line as it is, without colours.
    pub fn plain(&self, line: &str) {
        self.write(line);
    }

    fn write(&self, line: &str) {
        queue(format!("{line}\n"));
    }
}

/// `text` with every character that could end a line or steer a terminal escaped: ASCII and
/// C1 controls (`\n`, `\r`, `\t`, `\x1b`, ...), Unicode line separators and bidirectional
/// overrides. Names in events come from packages and file names, which are untrusted: one
/// event must always be one line, and never rewrite the terminal.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let event = Event::Failed {
            file: "evil\n + adding   forged [all]\x1b[2K".into(),
            reason: "tab\there\u{202e}".into(),
        };
        assert_eq!(
            event.text(),
            " x failed   evil\\n + adding   forged [all]\\x1b[2K (tab\\there\\u{202e})"
        );
        assert_eq!(escape_controls("plain: ok"), "plain: ok");
        assert_eq!(escape_controls("\u{85}\x7f"), "\\u{0085}\\x7f");
    }
}
