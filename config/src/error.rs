//! The one error of this crate: a message that says where (file, line, column, field) and what was
//! expected. Positions come from the YAML parser itself (see `locate`), so they match what an
//! editor shows.

use std::fmt;

use crate::locate::FieldPath;

/// What went wrong, with where: file, line, column (1-based) and the field path (`process.grace`).
///
/// `line == 0` means "no position": the error is about the file as a whole (it cannot be read) or
/// about an environment variable, in which case `file` reads `env NAME`. Display then drops the
/// `:line:column` part, and an empty `field` (a YAML syntax error) is dropped too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// An error at a position of the YAML file.
    pub fn at(file: &str, (line, column): (usize, usize), field: &FieldPath, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_owned(), line, column, field: field.to_string(), message: message.into() }
    }

    /// An error in the value of an environment variable (`file` reads `env NAME`).
    pub fn env(var: &str, field: &str, message: impl Into<String>) -> Self {
        ConfigError { file: format!("env {var}"), line: 0, column: 0, field: field.to_owned(), message: message.into() }
    }

    /// An error about the file as a whole (cannot be read).
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_owned(), line: 0, column: 0, field: String::new(), message: message.into() }
    }

    /// Translates a yaml_serde error: its location, the path it prints before the message, and
    /// serde's "unknown field" wording rewritten with a suggestion.
    pub(crate) fn from_yaml(file: &str, text: &str, err: &serde_yaml::Error) -> Self {
        let (line, column) = err.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        let shown = err.to_string();
        // yaml_serde appends the position it knows; we print ours in front instead.
        let shown = shown.replacen(&format!(" at line {line} column {column}"), "", 1);
        if is_syntax_error(err) {
            let tab = text.lines().nth(line.saturating_sub(1)).and_then(|l| l.chars().nth(column.saturating_sub(1)));
            let hint = if tab == Some('\t') { " (YAML does not allow tabs for indentation)" } else { "" };
            return ConfigError {
                file: file.to_owned(),
                line,
                column,
                field: String::new(),
                message: format!("invalid YAML: {shown}{hint}"),
            };
        }
        if shown.starts_with("deserializing from YAML containing more than one document") {
            return ConfigError {
                file: file.to_owned(),
                line,
                column,
                field: String::new(),
                message: "invalid YAML: expected a single document, found several (separated by `---`)".to_owned(),
            };
        }
        let (path, message) = split_path(&shown);
        let child = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
        if let Some(name) = message.strip_prefix("duplicate field `").and_then(|r| r.strip_suffix('`')) {
            // serde reports it at the start of the mapping; the field name is what helps.
            return ConfigError {
                file: file.to_owned(),
                line,
                column,
                field: child(name),
                message: format!("is set more than once in this mapping; keep one `{name}:`"),
            };
        }
        if let Some((name, known)) = parse_unknown_field(message) {
            let field = child(&name);
            return ConfigError {
                file: file.to_owned(),
                line,
                column,
                field,
                message: unknown_field_message(&name, &known),
            };
        }
        ConfigError { file: file.to_owned(), line, column, field: path.to_owned(), message: readable_types(message) }
    }
}

/// serde names the Rust type it expected (`struct RawProcess`, `u32`); a YAML author wants "a
/// mapping" or "a whole number".
fn readable_types(message: &str) -> String {
    for rust in ["expected u32", "expected u64", "expected usize"] {
        if let Some(head) = message.strip_suffix(rust) {
            return format!("{head}expected a whole number (0 or more)");
        }
    }
    match message.find("struct Raw") {
        Some(i) => {
            let end = message[i + 7..].find(|c: char| !c.is_alphanumeric()).map_or(message.len(), |e| i + 7 + e);
            format!("{}a mapping{}", &message[..i], &message[end..])
        }
        None => message.to_owned(),
    }
}

/// Syntax errors come from libyaml and carry no serde path; yaml_serde shows no other way to tell
/// them apart than their Debug form, a struct (`Error { kind: SCANNER, .. }`) rather than
/// `Error("message", ..)`. The bad fixtures pin this.
fn is_syntax_error(err: &serde_yaml::Error) -> bool {
    format!("{err:?}").starts_with("Error {")
}

/// yaml_serde prints `path.to.map: message`; a message of ours or serde's always has a space
/// before any `: `, a path never does (our keys have none).
fn split_path(shown: &str) -> (&str, &str) {
    match shown.split_once(": ") {
        Some((path, rest)) if !path.is_empty() && !path.contains(' ') && !path.contains('`') => (path, rest),
        _ => ("", shown),
    }
}

/// Reads serde's `unknown field `x`, expected one of `a`, `b`` (or `expected `a``, or
/// `there are no fields`) back into the name and the known names.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let known = rest.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    Some((name.to_owned(), known))
}

pub(crate) fn unknown_field_message(name: &str, known: &[String]) -> String {
    match suggest(name, known.iter().map(String::as_str)) {
        Some(s) => format!("unknown field `{name}`, did you mean `{s}`?"),
        None if known.is_empty() => format!("unknown field `{name}`, this section takes no fields"),
        None => {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!("unknown field `{name}`, expected one of {}", list.join(", "))
        }
    }
}

/// The closest known name, if it is close enough to be a typo (the threshold clap uses).
pub(crate) fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro(name, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_drops_missing_parts() {
        let e = ConfigError::env("PORT_8080", "ports", "expected a port");
        assert_eq!(e.to_string(), "env PORT_8080: ports: expected a port");
        let e = ConfigError::file("pod.yaml", "cannot read: gone");
        assert_eq!(e.to_string(), "pod.yaml: cannot read: gone");
        let e = ConfigError::at("pod.yaml", (3, 5), &FieldPath::root().key("process").key("grace"), "bad");
        assert_eq!(e.to_string(), "pod.yaml:3:5: process.grace: bad");
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let known = ["grace", "command", "restart"];
        assert_eq!(suggest("gracee", known), Some("grace"));
        assert_eq!(suggest("comand", known), Some("command"));
        assert_eq!(suggest("xyz", known), None);
    }

    #[test]
    fn rust_type_names_become_yaml_words() {
        assert_eq!(
            readable_types("invalid type: string \"x\", expected struct RawProcess"),
            "invalid type: string \"x\", expected a mapping"
        );
        assert_eq!(readable_types("expected a boolean"), "expected a boolean");
        assert_eq!(
            readable_types("invalid type: integer `-1`, expected u32"),
            "invalid type: integer `-1`, expected a whole number (0 or more)"
        );
    }

    #[test]
    fn unknown_field_parsing() {
        let (name, known) = parse_unknown_field("unknown field `gracee`, expected one of `a`, `grace`").unwrap();
        assert_eq!(name, "gracee");
        assert_eq!(known, vec!["a", "grace"]);
        let (_, known) = parse_unknown_field("unknown field `x`, there are no fields").unwrap();
        assert!(known.is_empty());
    }
}
