//! Java `.properties` text, the format Kafka reads its settings in.
//!
//! berth writes the overlay in it and the Kafka stand-in reads the operator's file plus the overlay with it, so
//! both sides agree on escaping. Only the parts of the format Kafka settings use are handled: `#`/`!` comments,
//! `=`/`:`/blank separators, backslash escapes (`\\`, `\t`, `\n`, `\r`, `\uXXXX`, escaped separators) and
//! backslash line continuations. As in `java.util.Properties`, a later key replaces an earlier one.

use std::collections::BTreeMap;

/// Settings as read from one or more properties files; later values win.
pub type Properties = BTreeMap<String, String>;

/// Parses properties text into `into`, replacing keys that are already there.
pub fn parse_into(text: &str, into: &mut Properties) {
    let mut logical = String::new();
    let mut continuing = false;
    for raw in text.lines() {
        let line = raw.trim_start();
        if !continuing && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let (body, continues) = strip_continuation(line);
        logical.push_str(body);
        continuing = continues;
        if !continuing {
            let (key, value) = split_entry(&logical);
            into.insert(key, value);
            logical.clear();
        }
    }
    if continuing && !logical.is_empty() {
        let (key, value) = split_entry(&logical);
        into.insert(key, value);
    }
}

/// Parses properties text.
pub fn parse(text: &str) -> Properties {
    let mut properties = Properties::new();
    parse_into(text, &mut properties);
    properties
}

/// A line ending in an odd number of backslashes continues on the next line.
fn strip_continuation(line: &str) -> (&str, bool) {
    let trailing = line.bytes().rev().take_while(|&b| b == b'\\').count();
    if trailing % 2 == 1 {
        (&line[..line.len() - 1], true)
    } else {
        (line, false)
    }
}

fn split_entry(line: &str) -> (String, String) {
    let mut chars = line.char_indices().peekable();
    let mut key_end = line.len();
    let mut value_start = line.len();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '=' | ':' => {
                key_end = index;
                value_start = index + 1;
                break;
            }
            c if c.is_whitespace() => {
                key_end = index;
                // Blanks, then optionally one `=` or `:`, then blanks separate key and value.
                let rest = &line[index..];
                let trimmed = rest.trim_start();
                let after_blank = line.len() - trimmed.len();
                value_start = if trimmed.starts_with(['=', ':']) {
                    after_blank + 1
                } else {
                    after_blank
                };
                break;
            }
            _ => {}
        }
    }
    let key = unescape(&line[..key_end]);
    let value = unescape(line[value_start..].trim_start());
    (key, value)
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => out.push(decoded),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Escapes a value so that `java.util.Properties` reads it back unchanged.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (index, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if index == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_kafka_settings_use() {
        let text = "# comment\n! also a comment\n\nbroker.id=1\nlisteners = PLAINTEXT://:9092\n\
                    log.dirs:/a,\\\n    /b\nzookeeper.connect 10.0.0.1:2181/kafka\nbroker.id=2\nescaped\\=key=x\\ty\n";
        let properties = parse(text);
        assert_eq!(properties["broker.id"], "2", "a later key wins");
        assert_eq!(properties["listeners"], "PLAINTEXT://:9092");
        assert_eq!(properties["log.dirs"], "/a,/b");
        assert_eq!(properties["zookeeper.connect"], "10.0.0.1:2181/kafka");
        assert_eq!(properties["escaped=key"], "x\ty");
    }

    #[test]
    fn escaped_values_read_back_unchanged() {
        for value in [
            "/var/lib/kafka/data",
            " leading",
            "back\\slash",
            "multi\nline",
            "PLAINTEXT://10.0.0.1:9092",
        ] {
            let text = format!("key={}\n", escape_value(value));
            assert_eq!(parse(&text)["key"], value, "{text:?}");
        }
    }
}
