//! The environment file (`/etc/berth/environment`): where the example user data writes a host's
//! `BERTH_<SECTION>__<KEY>` overrides. berth.service reads it with `EnvironmentFile=`; every subcommand reads it
//! itself, so `berth plan` or `berth check-config` in an operator's shell sees what the daemon sees.
//!
//! The syntax is systemd's (systemd.exec(5), `EnvironmentFile=`): one `KEY=VALUE` per line; empty lines and lines
//! starting with `#` or `;` are ignored, as are lines without `=`; a value may be enclosed in double quotes
//! (where `\"`, `\\`, `\$` and `` \` `` are escapes) or single quotes (taken literally); an unquoted value is
//! trimmed and a backslash escapes the next character; a backslash at the end of a line continues it.

use std::path::Path;

use crate::ConfigError;

/// The default location of the environment file.
pub const DEFAULT_ENV_FILE: &str = "/etc/berth/environment";

/// Reads an environment file: its assignments in file order. A missing file is `Ok(None)` (the unit's
/// `EnvironmentFile=-` makes it optional); any other failure to read it is an error naming the file.
pub fn read_env_file(path: &Path) -> Result<Option<Vec<(String, String)>>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(parse_env_file(&text))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ConfigError::Unreadable {
            path: path.to_owned(),
            reason: error.to_string(),
        }),
    }
}

/// The environment file's assignments a command run from a shell lacks: what systemd's `EnvironmentFile=` gives
/// the daemon beyond berth's own keys (`AWS_*` credentials or region, a proxy), so that `berth plan` reaches AWS
/// as the daemon does. berth's own `BERTH_*` keys are left out (the configuration sources read them, naming the
/// file as their origin), and so is a variable the process already has (the shell wins, as for berth's keys);
/// of two lines with one name the later wins, as in systemd.
pub fn missing_from_process(
    assignments: Vec<(String, String)>,
    is_set: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let mut missing: Vec<(String, String)> = Vec::new();
    for (name, value) in assignments {
        if name.starts_with("BERTH_") || is_set(&name) {
            continue;
        }
        missing.retain(|(earlier, _)| *earlier != name);
        missing.push((name, value));
    }
    missing
}

/// The assignments of an environment file's text, in order (a later one of the same name wins when applied).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    joined_lines(text)
        .iter()
        .filter_map(|line| {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                return None;
            }
            let (name, value) = line.split_once('=')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name.to_owned(), unquote(value.trim())))
        })
        .collect()
}

/// The file's logical lines: a line ending in an unescaped backslash continues on the next.
fn joined_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            current.push_str(&line[..line.len() - 1]);
        } else {
            current.push_str(line);
            lines.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// A value without its quotes and escapes.
fn unquote(value: &str) -> String {
    let quoted =
        |quote: char| value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote);
    if quoted('\'') {
        return value[1..value.len() - 1].to_owned();
    }
    let (inner, escapable): (&str, &[char]) = if quoted('"') {
        (&value[1..value.len() - 1], &['"', '\\', '$', '`'])
    } else {
        (value, &[])
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next)) if escapable.is_empty() || escapable.contains(&next) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_env_file(text)
    }

    fn pair(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn assignments_comments_and_blank_lines() {
        let text = "# written by user data\n\nBERTH_CLUSTER__NAME=events\n; another comment\n  \
                    BERTH_CLUSTER__BROKER_COUNT = 6  \nnot an assignment\n=no name\n";
        assert_eq!(
            pairs(text),
            [
                pair("BERTH_CLUSTER__NAME", "events"),
                pair("BERTH_CLUSTER__BROKER_COUNT", "6")
            ]
        );
    }

    #[test]
    fn quotes_and_escapes_as_systemd_reads_them() {
        let text = concat!(
            "A=\"two words\"\n",
            "B='single $literal \\n'\n",
            "C=\"escaped \\\" quote and \\\\ backslash, \\n kept\"\n",
            "D=unquoted\\ escape\n",
            "E=\"\"\n",
            "F=a=b\n",
        );
        assert_eq!(
            pairs(text),
            [
                pair("A", "two words"),
                pair("B", "single $literal \\n"),
                pair("C", "escaped \" quote and \\ backslash, \\n kept"),
                pair("D", "unquoted escape"),
                pair("E", ""),
                pair("F", "a=b"),
            ]
        );
    }

    #[test]
    fn a_trailing_backslash_continues_the_line() {
        assert_eq!(
            pairs("BERTH_KAFKA__CONTROLLER_IDS=0,\\\n1,2\nNEXT=x\n"),
            [
                pair("BERTH_KAFKA__CONTROLLER_IDS", "0,1,2"),
                pair("NEXT", "x")
            ]
        );
    }

    #[test]
    fn a_missing_file_is_none_an_unreadable_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_env_file(&dir.path().join("absent")).unwrap(), None);
        let error = read_env_file(dir.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&dir.path().display().to_string()),
            "{error}"
        );
        let file = dir.path().join("environment");
        std::fs::write(&file, "BERTH_CLUSTER__NAME=x\n").unwrap();
        assert_eq!(
            read_env_file(&file).unwrap(),
            Some(vec![pair("BERTH_CLUSTER__NAME", "x")])
        );
    }

    #[test]
    fn a_shell_gets_the_files_variables_it_lacks_and_keeps_its_own() {
        let file = parse_env_file(
            "AWS_REGION=eu-west-1\nHTTPS_PROXY=http://proxy:3128\nAWS_REGION=eu-west-2\nBERTH_HEALTH__LISTEN=0.0.0.0:1\n",
        );
        let missing = missing_from_process(file, |name| name == "HTTPS_PROXY");
        assert_eq!(
            missing,
            vec![("AWS_REGION".to_owned(), "eu-west-2".to_owned())]
        );
    }
}
