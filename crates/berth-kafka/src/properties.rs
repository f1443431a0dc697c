//! Writing Java `.properties` values, the format Kafka reads its settings in.
//!
//! Java reads a properties file as ISO-8859-1: a UTF-8 `ä` written raw comes back as `Ã¤` (measured on Kafka
//! 4.4.0: `broker.rack = zone-Ã¤` in its startup log). So a value is written as `java.util.Properties.store`
//! writes it: printable ASCII as is, the usual escapes for `\` and control characters, a leading blank
//! escaped, and every other character as `\uXXXX` (UTF-16 code units, a surrogate pair outside the BMP).
//! berth only writes properties; its one reader is `berth_logdir::parse`.

use std::fmt::Write as _;

/// Escapes a value so that `java.util.Properties` (and so Kafka) reads it back unchanged.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (index, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            ' ' if index == 0 => out.push_str("\\ "),
            ' '..='~' => out.push(c),
            _ => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(out, "\\u{unit:04X}");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read back by a Java-compatible parser that is not berth's (the `java-properties` crate, which follows
    /// `java.util.Properties.load`); tests/kafka_*.rs read a non-ASCII rack back through real Kafka.
    fn java_reads(text: &str) -> String {
        let map = java_properties::read(std::io::Cursor::new(text.as_bytes())).expect("parses");
        map["key"].clone()
    }

    #[test]
    fn values_read_back_unchanged_by_a_java_parser() {
        for value in [
            "/var/lib/kafka/data",
            " leading",
            "back\\slash",
            "multi\nline\ttab\rreturn\u{c}feed",
            "PLAINTEXT://10.0.0.1:9092",
            "zone-ä",
            "東京-1a",
            "bell-\u{7}-del-\u{7f}",
            "#not-a-comment!",
        ] {
            let text = format!("key={}\n", escape_value(value));
            assert!(text.is_ascii(), "{text:?} is not ASCII");
            assert_eq!(java_reads(&text), value, "{text:?}");
            assert_eq!(
                berth_logdir::parse(&text)["key"],
                value,
                "berth's reader agrees: {text:?}"
            );
        }
    }

    /// Outside the BMP Java writes a surrogate pair of escapes; the `java-properties` crate decodes each escape
    /// to a char on its own and so refuses them, which is why this case is read back by berth's reader here and
    /// by real Kafka in tests/kafka_kraft.rs.
    #[test]
    fn characters_outside_the_bmp_are_surrogate_pairs() {
        let text = format!("key={}\n", escape_value("emoji-😀"));
        assert_eq!(text, "key=emoji-\\uD83D\\uDE00\n");
        assert_eq!(berth_logdir::parse(&text)["key"], "emoji-😀");
    }

    #[test]
    fn non_ascii_is_written_as_java_does() {
        // What Properties.store writes (upper-case hex, UTF-16 units).
        assert_eq!(escape_value("zone-ä"), "zone-\\u00E4");
        assert_eq!(escape_value("😀"), "\\uD83D\\uDE00");
    }
}
