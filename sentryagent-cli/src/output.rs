//! What people and scripts see: tables and short confirmations for people
//! (colour only on a terminal and never with `NO_COLOR`), exact JSON for
//! scripts, and a spinner on a terminal for slow calls.

use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{Cell, Table, presets};
use serde_json::Value;

/// How long a call runs before a spinner shows.
const SPINNER_DELAY: Duration = Duration::from_millis(300);

/// Output settings of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ui {
    /// `--json`.
    pub(crate) json: bool,
    /// Colour on stdout.
    pub(crate) color: bool,
    /// Colour on stderr.
    pub(crate) color_err: bool,
    /// Whether stderr is a terminal (spinner, prompts).
    pub(crate) err_tty: bool,
}

/// Whether colour is allowed at all (`NO_COLOR` unset or empty).
fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Ui {
    /// Settings from the terminal and environment.
    pub(crate) fn detect(json: bool) -> Ui {
        let allowed = color_allowed();
        Ui {
            json,
            color: allowed && std::io::stdout().is_terminal(),
            color_err: allowed && std::io::stderr().is_terminal(),
            err_tty: std::io::stderr().is_terminal(),
        }
    }

    fn paint(on: bool, code: &str, s: &str) -> String {
        if on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Bold, on stdout.
    pub(crate) fn bold(&self, s: &str) -> String {
        Ui::paint(self.color, "1", s)
    }

    /// Green, on stdout.
    pub(crate) fn green(&self, s: &str) -> String {
        Ui::paint(self.color, "32", s)
    }

    /// Yellow, on stdout.
    pub(crate) fn yellow(&self, s: &str) -> String {
        Ui::paint(self.color, "33", s)
    }

    /// Dim, on stdout.
    pub(crate) fn dim(&self, s: &str) -> String {
        Ui::paint(self.color, "2", s)
    }

    /// Red "error:" prefix for stderr.
    pub(crate) fn error_prefix(&self) -> String {
        Ui::paint(self.color_err, "1;31", "error:")
    }

    /// Yellow "warning:" prefix for stderr.
    pub(crate) fn warning_prefix(&self) -> String {
        Ui::paint(self.color_err, "1;33", "warning:")
    }

    /// A confirmation line on stdout: `✓ message`.
    pub(crate) fn done(&self, message: &str) {
        println!("{} {message}", self.green("✓"));
    }

    /// A table with a header row. Cells hold no escape codes (the table
    /// measures characters), so tables stay aligned on a terminal.
    pub(crate) fn table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::NOTHING);
        t.set_header(header.iter().map(Cell::new));
        t
    }

    /// Prints a table (trailing spaces trimmed).
    pub(crate) fn print_table(&self, table: &Table) {
        for line in table.to_string().lines() {
            println!("{}", line.trim_end());
        }
    }

    /// Key/value lines, keys aligned.
    pub(crate) fn print_fields(&self, fields: &[(&str, String)]) {
        let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in fields {
            let pad = " ".repeat(width - k.len());
            println!("{}{pad}  {v}", self.dim(k));
        }
    }

    /// Runs `fut`, with a spinner on stderr when it is a terminal and the
    /// call is slower than ~300 ms.
    pub(crate) async fn spin<T>(&self, message: &str, fut: impl Future<Output = T>) -> T {
        if !self.err_tty {
            return fut.await;
        }
        tokio::pin!(fut);
        tokio::select! {
            out = &mut fut => return out,
            () = tokio::time::sleep(SPINNER_DELAY) => {}
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        let out = fut.await;
        bar.finish_and_clear();
        out
    }
}

/// Prints JSON: pretty on a terminal, one line otherwise.
pub(crate) fn print_json(value: &Value) {
    let text = if std::io::stdout().is_terminal() {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    println!("{}", text.unwrap_or_default());
}

/// A string field of a JSON object, or "".
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A list field as `a, b, c`.
pub(crate) fn list(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A ten-cell bar for `percent`.
pub(crate) fn bar(percent: u64) -> String {
    let filled = usize::try_from(percent.min(100).div_ceil(10)).unwrap_or(10);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(10 - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars() {
        assert_eq!(bar(0), "[..........]");
        assert_eq!(bar(1), "[#.........]");
        assert_eq!(bar(80), "[########..]");
        assert_eq!(bar(250), "[##########]");
    }
}
