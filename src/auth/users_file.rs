//! The users file (`users_file`): one `name:PHC-hash` a line, for secrets managers that
//! write a file rather than set variables. Blank lines and lines starting with `#` are
//! ignored. Only hashes are accepted (argon2id, or the PBKDF2 strings of the official server):
//! a file of plain passwords would be a secret lying on disk.
//!
//! A file is taken whole or not at all: any bad line makes the whole file an error that
//! names every bad line, so a half-written or mistyped file can never remove the users (and
//! their data) it no longer lists by accident.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::password::check_phc;

/// One user the file declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUser {
    pub line: usize,
    pub name: String,
    pub phc: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("users file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("users file {path}: {}", describe(.problems))]
    Invalid {
        path: PathBuf,
        /// (line number, what is wrong), in line order.
        problems: Vec<(usize, String)>,
    },
}

fn describe(problems: &[(usize, String)]) -> String {
    problems
        .iter()
        .map(|(line, what)| format!("line {line}: {what}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Read and check the whole file.
pub fn read_users_file(path: &Path) -> Result<Vec<FileUser>, UsersFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|problems| UsersFileError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

fn parse(text: &str) -> Result<Vec<FileUser>, Vec<(usize, String)>> {
    let mut users = Vec::new();
    let mut problems = Vec::new();
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let entry = raw.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let Some((name, phc)) = entry.split_once(':') else {
            problems.push((line, "expected name:hash".to_string()));
            continue;
        };
        if let Err(reason) = super::validate_user_name(name) {
            problems.push((line, reason));
            continue;
        }
        // The message never repeats the line: it holds a password hash.
        if let Err(e) = check_phc(phc) {
            problems.push((line, format!("{name}: {e}")));
            continue;
        }
        if let Some(first) = first_line_of.get(name) {
            problems.push((line, format!("{name} is already declared on line {first}")));
            continue;
        }
        first_line_of.insert(name.to_string(), line);
        users.push(FileUser {
            line,
            name: name.to_string(),
            phc: phc.to_string(),
        });
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_password;

    #[test]
    fn names_and_hashes_with_comments_and_blank_lines() {
        let phc = hash_password("pw").unwrap();
        let text = format!("# managed by vault\n\nalice:{phc}\n  bob:{phc}  \n");
        let users = parse(&text).unwrap();
        let got: Vec<_> = users.iter().map(|u| (u.line, u.name.as_str())).collect();
        assert_eq!(got, [(3, "alice"), (4, "bob")]);
        assert_eq!(users[0].phc, phc);
    }

    #[test]
    fn every_bad_line_is_named_and_no_hash_is_repeated() {
        let phc = hash_password("pw").unwrap();
        let text =
            format!("alice:{phc}\nnocolon\n:{phc}\nbob:plain-password\nalice:{phc}\ncarol:{phc}\n");
        let problems = parse(&text).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.0).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(problems[3].1.contains("line 1"), "{problems:?}");
        let message = describe(&problems);
        assert!(!message.contains("plain-password"), "{message}");
        assert!(!message.contains(&phc), "{message}");
    }

    #[test]
    fn an_empty_file_declares_nobody() {
        assert_eq!(parse("# nobody yet\n").unwrap(), []);
    }
}
