//! Where a message's text comes from: the command line, a file, or standard input.
//!
//! Standard input is the default because an argument sits in `/proc/<pid>/cmdline` (readable
//! by every local user while the command runs) and in the shell's history; a file or a pipe
//! leaves neither.

use std::{
    io::{IsTerminal, Read},
    path::Path,
};

use anyhow::Result;
use parley_domain::{
    MessageText,
    message::{MAX_TEXT_BYTES, TextError},
};

use crate::Usage;

/// The text to send: `arg` when given, else the contents of `file`, else standard input (a
/// terminal is told to end it with Ctrl-D). From a file or standard input, one final newline
/// (`\n` or `\r\n`) is dropped, since `echo` and editors add it.
///
/// # Errors
/// A one-sentence [`Usage`] error: the file cannot be read, the bytes are not UTF-8, or the
/// text is empty or too long.
pub fn text(arg: Option<String>, file: Option<&Path>) -> Result<MessageText> {
    let raw = match (arg, file) {
        (Some(text), _) => text,
        (None, Some(path)) => {
            let file = std::fs::File::open(path)
                .map_err(|e| Usage(format!("cannot read --text-file {}: {e}", path.display())))?;
            read_bounded(file, &format!("--text-file {}", path.display()))?
        }
        (None, None) => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("type the message, then press Ctrl-D on a line of its own to send it");
            }
            read_bounded(stdin.lock(), "standard input")?
        }
    };
    MessageText::parse(raw).map_err(|e| Usage(format!("cannot send: {e}")).into())
}

/// Reads at most one byte over the longest text, so a huge input is refused without being
/// held, and drops one final newline.
fn read_bounded(source: impl Read, what: &str) -> Result<String> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_TEXT_BYTES + 2).unwrap_or(u64::MAX);
    source
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Usage(format!("cannot read the text from {what}: {e}")))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.len() > MAX_TEXT_BYTES {
        // What was read may end inside a character: say what is wrong with the whole.
        return Err(Usage(format!("cannot send: {}", TextError::TooLong)).into());
    }
    String::from_utf8(bytes).map_err(|_| Usage(format!("the text from {what} is not UTF-8")).into())
}
