//! Where the tools write: results on stdout, notes on stderr.
//!
//! Nothing here panics on a closed stream (`ochopod grep | head`): a stdout nobody reads is
//! [`ToolError::Closed`], which ends the output quietly, and a stderr nobody reads is ignored.

use std::io::{ErrorKind, Write};

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
