//! Where the tools write: results on stdout, notes on stderr.
//!
//! Nothing here panics on a closed stream (`ochopod grep | head`): a stdout nobody reads is
//! [`ToolError::Closed`], which ends the output quietly, and a stderr nobody reads is ignored.
//! Escape sequences (redrawing a line) go only to a terminal, and not when `NO_COLOR` is set or
//! `TERM` is `dumb`; what peers wrote reaches a terminal escaped, never interpreted.

use std::borrow::Cow;
use std::io::{ErrorKind, IsTerminal, Write};

use serde_json::Value;

use super::error::ToolError;

/// Writes `text` to stdout, as it is, and flushes it.
pub fn print(text: &str) -> Result<(), ToolError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(|e| match e.kind() {
        ErrorKind::BrokenPipe => ToolError::Closed,
        _ => ToolError::Output(e),
    })
}

/// `--json`: one pretty document and a newline.
pub fn print_json(doc: &Value) -> Result<(), ToolError> {
    let text = serde_json::to_string_pretty(doc).unwrap_or_else(|_| doc.to_string());
    print(&format!("{text}\n"))
}

/// Writes `text` to stderr as it is; a stderr nobody reads is nobody to tell.
pub fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// `text` and a newline, on stderr.
pub fn note_line(text: &str) {
    note(&format!("{text}\n"));
}

/// Whether `stream` may get escape sequences: a terminal, without `NO_COLOR` (no-color.org) and
/// not a `dumb` one.
pub fn styled(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && plain_env_allows_style(std::env::var_os("NO_COLOR"), std::env::var_os("TERM"))
}

fn plain_env_allows_style(no_color: Option<std::ffi::OsString>, term: Option<std::ffi::OsString>) -> bool {
    no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

/// Whether stdout is a terminal, where a peer's text must be shown escaped.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// A line a peer wrote (a pod's log), for a terminal: control characters but tabs escaped
/// (`\u{1b}`), so that the terminal shows them instead of obeying them.
pub fn escaped(line: &str) -> Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_needs_no_no_color_and_a_terminal_that_is_not_dumb() {
        assert!(plain_env_allows_style(None, Some("xterm".into())));
        assert!(plain_env_allows_style(Some("".into()), None));
        assert!(!plain_env_allows_style(Some("1".into()), Some("xterm".into())));
        assert!(!plain_env_allows_style(None, Some("dumb".into())));
    }

    #[test]
    fn a_peers_line_is_escaped_but_its_tabs_kept() {
        assert_eq!(escaped("a\tb"), "a\tb");
        assert_eq!(escaped("x \x1b[2J\x07 y\r"), "x \\u{1b}[2J\\u{7} y\\r");
    }
}
