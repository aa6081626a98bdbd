//! Aligned plain-text tables for people (`--json` is for scripts).

/// Renders `rows` under `headers`, each column as wide as its widest cell, two spaces apart.
/// The last column is not padded, so lines carry no trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            line.push_str(cell);
            if i + 1 < columns {
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Newlines in a cell (a multi-line status) would break the alignment of every column; other
/// control characters come from peers and must not reach the terminal as such.
fn clean(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len());
    for c in cell.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let text = render(
            &["cluster", "ok", "status"],
            &[row(&["test.web", "3/3", "fine"]), row(&["a.b", "10/12", "* configuring 12 pods"])],
        );
        assert_eq!(
            text,
            "cluster   ok     status\n\
             test.web  3/3    fine\n\
             a.b       10/12  * configuring 12 pods\n"
        );
    }

    #[test]
    fn no_trailing_blanks_and_short_rows_are_filled() {
        let text = render(&["a", "b"], &[row(&["x"]), row(&["long cell", ""])]);
        assert_eq!(text, "a          b\nx\nlong cell\n");
        assert!(text.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn width_counts_characters_not_bytes_and_newlines_are_flattened() {
        let text = render(&["pod", "state"], &[row(&["é.ü #1", "two\nlines"])]);
        assert_eq!(text, "pod     state\né.ü #1  two lines\n");
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        let text = render(&["a", "b"], &[row(&["\x1b[2J", "x"])]);
        assert_eq!(text, "a          b\n\\u{1b}[2J  x\n");
    }
}
