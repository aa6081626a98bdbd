//! Cheap checks of a declaration's text before the YAML parser sees it: its size and how deeply it
//! nests. The parser's time grows faster than linearly with nesting (100 000 levels took over 30
//! s), and a declaration never needs more than a handful of levels; so anything past
//! [`MAX_DEPTH`] is refused at the line and column where it goes too deep.

/// A declaration is a few kilobytes; templates make it bigger, never this big.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Levels of mappings and sequences, block and flow together.
pub const MAX_DEPTH: usize = 64;

/// `Err((line, column, message))`, 1-based.
pub fn check(text: &str) -> Result<(), (usize, usize, String)> {
    if text.len() > MAX_BYTES {
        return Err((1, 1, format!("the declaration is {} bytes; at most {MAX_BYTES} are read", text.len())));
    }
    // Indentations of the open block collections (a stack), and whether the lines that follow
    // belong to a block scalar (`|`, `>`) opened at some indentation: its text is not YAML.
    let mut blocks: Vec<usize> = Vec::new();
    let mut scalar_at: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let content = line.trim_start_matches([' ', '-']);
        let indent = line.len() - line.trim_start_matches(' ').len();
        if content.trim().is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some(at) = scalar_at {
            if indent > at {
                continue;
            }
            scalar_at = None;
        }
        while blocks.last().is_some_and(|&i| i >= indent) {
            blocks.pop();
        }
        blocks.push(indent);
        // `- - - x` opens one sequence per dash.
        let dashes = line[indent..].split_inclusive(' ').take_while(|t| t.trim() == "-").count();
        let depth = blocks.len() + dashes;
        if depth > MAX_DEPTH {
            return Err((n + 1, indent + 1, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let flow = flow_depth(line, n + 1, depth)?;
        if flow.opens_block_scalar {
            scalar_at = Some(indent);
        }
    }
    Ok(())
}

struct Flow {
    opens_block_scalar: bool,
}

/// Follows `[` and `{` outside quotes and comments on one line (a flow collection spanning lines
/// is rare in a declaration; each line is checked against the depth it starts at).
fn flow_depth(line: &str, number: usize, base: usize) -> Result<Flow, (usize, usize, String)> {
    let mut depth = base;
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (col, c) in line.char_indices() {
        match quote {
            Some('"') if c == '\\' && prev != '\\' => {}
            Some(q) if c == q && !(q == '"' && prev == '\\') => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' if prev == ' ' || prev == '[' || prev == '{' || prev == ',' || prev == ':' || col == 0 => {
                    quote = Some(c)
                }
                '#' if prev == ' ' => break,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err((number, col + 1, format!("nested deeper than {MAX_DEPTH} levels")));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    let value = line.split('#').next().unwrap_or("").trim_end();
    let opens_block_scalar = quote.is_none()
        && value
            .rsplit([' ', ':'])
            .next()
            .is_some_and(|t| !t.is_empty() && (t.starts_with('|') || t.starts_with('>')) && t.len() <= 3);
    Ok(Flow { opens_block_scalar })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_declarations_pass() {
        let text = "cluster: zk\nmodel:\n  depends_on: [a, b]\n  probe: { command: \"x [y\", every: 5s }\nfiles:\n  - path: a\n    template: |\n      {% for p in pods %}[[[[[[{{ p.ip }}\n      {% endfor %}\n  - path: b\n    template: \"{{ [1, [2]] }}\"\n";
        assert_eq!(check(text), Ok(()));
    }

    #[test]
    fn deep_flow_nesting_is_refused_where_it_goes_too_deep() {
        let text = format!("cluster: x\nmodel:\n  depends_on: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let (line, column, message) = check(&text).unwrap_err();
        assert_eq!((line, message.as_str()), (3, "nested deeper than 64 levels"));
        assert!(column > 14 && column < 80, "{column}");
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let mut text = String::from("cluster: x\n");
        for i in 0..100 {
            text.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(check(&text).unwrap_err().2, "nested deeper than 64 levels");
        let dashes = format!("cluster: x\nfiles:\n  {}x\n", "- ".repeat(80));
        assert!(check(&dashes).is_err());
    }

    #[test]
    fn a_huge_declaration_is_refused() {
        assert!(check(&"#".repeat(MAX_BYTES + 1)).unwrap_err().2.contains("at most"));
    }
}
