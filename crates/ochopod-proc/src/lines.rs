//! Reading a child's piped output line by line, whatever it holds.
//!
//! A child writing into a pipe blocks once the pipe (64 KiB on Linux) is full, so whoever holds
//! the other end must read until EOF no matter what comes: bytes that are not UTF-8, a binary
//! dump, a line of a megabyte. [`for_each_line`] never stops before EOF (or a read error), decodes
//! lossily, and cuts lines longer than its cap into pieces so memory stays bounded.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// A sensible cap for log lines.
pub const MAX_LINE: usize = 16 * 1024;

/// Appended to a piece of a line that was longer than the cap (the rest follows as more lines).
pub const CUT_MARKER: &str = " […]";

/// Call `emit` with every line of `reader` (without its `\n`, nor a `\r` before it), decoded
/// lossily. A line longer than `max` bytes is emitted in pieces of at most `max` bytes, every
/// piece but the last ending with [`CUT_MARKER`]. Returns at EOF or on a read error.
pub async fn for_each_line<R: AsyncBufRead + Unpin>(mut reader: R, max: usize, mut emit: impl FnMut(String)) {
    let max = max.max(4);
    let mut line: Vec<u8> = Vec::with_capacity(256.min(max));
    loop {
        let available = match reader.fill_buf().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the child's output any more");
                break;
            }
        };
        if available.is_empty() {
            if !line.is_empty() {
                emit(decode(&line));
            }
            return;
        }
        // One byte past the room: a newline there still ends the line without cutting it.
        let room = max - line.len();
        let window = &available[..available.len().min(room + 1)];
        match window.iter().position(|b| *b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&window[..i]);
                reader.consume(i + 1);
                emit(decode(&line));
                line.clear();
            }
            None if window.len() > room => {
                line.extend_from_slice(&window[..room]);
                reader.consume(room);
                // Keep a character cut in half for the next piece rather than mangle it.
                let keep = incomplete_tail(&line);
                let rest = line.split_off(line.len() - keep);
                emit(decode(&line) + CUT_MARKER);
                line = rest;
            }
            None => {
                let n = window.len();
                line.extend_from_slice(window);
                reader.consume(n);
            }
        }
    }
    if !line.is_empty() {
        emit(decode(&line));
    }
}

fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 character whose remaining bytes
/// are not there yet (0 to 3).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let needed = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize) -> Vec<String> {
        let mut out = vec![];
        // A tiny buffer, so lines and characters straddle reads.
        let reader = tokio::io::BufReader::with_capacity(7, input);
        for_each_line(reader, max, |l| out.push(l)).await;
        out
    }

    #[tokio::test]
    async fn invalid_utf8_does_not_stop_the_reading() {
        let mut input = b"before\n\xff\xfe bad \xc3\n".to_vec();
        input.extend_from_slice(b"after\r\nlast without newline");
        let lines = lines_of(&input, MAX_LINE).await;
        assert_eq!(lines, ["before", "\u{fffd}\u{fffd} bad \u{fffd}", "after", "last without newline"]);
    }

    #[tokio::test]
    async fn long_lines_are_cut_into_marked_pieces_without_splitting_characters() {
        let lines = lines_of(b"abcdefghij\nxy\n", 4).await;
        assert_eq!(lines, [format!("abcd{CUT_MARKER}"), format!("efgh{CUT_MARKER}"), "ij".into(), "xy".into()]);
        // The 2-byte é straddles the cap of 4 bytes and moves whole to the next piece.
        let lines = lines_of("aaaébbb\n".as_bytes(), 4).await;
        assert_eq!(lines, [format!("aaa{CUT_MARKER}"), format!("ébb{CUT_MARKER}"), "b".into()]);
        // A line of exactly the cap is not cut.
        assert_eq!(lines_of(b"abcd\nef", 4).await, ["abcd", "ef"]);
    }

    #[tokio::test]
    async fn a_megabyte_of_one_line_is_read_to_the_end_in_bounded_pieces() {
        let mut input = vec![b'x'; 1 << 20];
        input.extend_from_slice(b"\nend\n");
        let lines = lines_of(&input, MAX_LINE).await;
        assert_eq!(lines.last().map(String::as_str), Some("end"));
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE + CUT_MARKER.len()));
        assert_eq!(lines.len(), (1 << 20) / MAX_LINE + 1);
    }

    #[test]
    fn incomplete_tails() {
        assert_eq!(incomplete_tail(b"ab"), 0);
        assert_eq!(incomplete_tail("é".as_bytes()), 0);
        assert_eq!(incomplete_tail(&"é".as_bytes()[..1]), 1);
        assert_eq!(incomplete_tail(&"€".as_bytes()[..2]), 2);
        assert_eq!(incomplete_tail(&"😀".as_bytes()[..3]), 3);
        assert_eq!(incomplete_tail(b"\x80\x80\x80"), 0);
    }
}
