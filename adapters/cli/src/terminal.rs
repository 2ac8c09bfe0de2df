//! Text from outside — a peer's message, an attachment's name, a refusal's reason, an address
//! the rendezvous handed out — made safe to print on a terminal.
//!
//! A terminal acts on some characters instead of showing them: a carriage return or a line
//! feed starts a line that could pass for one Parley wrote (`alice: … [delivered, verified]`),
//! an escape sequence can recolour the screen, retitle the window, move the cursor or, on some
//! terminals, answer back, and the Unicode bidirectional controls reorder what follows them
//! on the line. Each such character is printed as a visible escape instead:
//!
//! | characters | shown as |
//! |---|---|
//! | tab, carriage return, line feed | `\t`, `\r`, `\n` |
//! | the other C0 controls (U+0000–U+001F, ESC among them) and DEL (U+007F) | `\x1b`, `\x00`, `\x7f`, … |
//! | the C1 controls (U+0080–U+009F) | `\u{9b}`, … |
//! | the bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), the line and paragraph separators (U+2028, U+2029) | `\u{202e}`, … |
//!
//! Everything else, accents and emoji included, is printed as it is; a backslash too, so
//! `\x1b` on the screen is either an escape this module wrote or the four characters a peer
//! typed, and neither reaches the terminal as a control. [`lines`] splits a text at its line
//! breaks (`\n`, and `\r\n` as one) so that a multi-line message can be printed as
//! continuation lines under a prefix no message line has. Only human output goes through
//! here: `--json` carries the text exactly as it was received.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` on one line: every control, line breaks included, as a visible escape.
#[must_use]
pub fn inline(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

/// The lines of `text` (split at `\n`, a `\r\n` counting as one break), each with every other
/// control as a visible escape. A text ending with a line break ends with an empty line.
pub fn lines(text: &str) -> impl Iterator<Item = Cow<'_, str>> {
    let ends_with_break = text.ends_with('\n');
    text.split_inclusive('\n')
        .map(|piece| {
            // Only a carriage return right before a line feed is part of the break.
            let line = match piece.strip_suffix('\n') {
                Some(line) => line.strip_suffix('\r').unwrap_or(line),
                None => piece,
            };
            escape(line, false)
        })
        .chain(ends_with_break.then_some(Cow::Borrowed("")))
        .chain(text.is_empty().then_some(Cow::Borrowed("")))
}

/// Whether a terminal would act on `c` rather than show it.
fn acted_on(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

fn escape(text: &str, newlines: bool) -> Cow<'_, str> {
    if !text.chars().any(acted_on) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' if newlines => out.push_str("\\n"),
            // Writing to a String cannot fail.
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if acted_on(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected_inline: &str) {
        let shown = inline(text);
        assert_eq!(shown, expected_inline, "{text:?}");
        assert!(
            !shown.chars().any(acted_on),
            "{shown:?} still holds a control"
        );
    }

    #[test]
    fn controls_become_visible_escapes_and_the_rest_stays() {
        check("plain text, déjà vu 🙂", "plain text, déjà vu 🙂");
        check("\u{1b}[31mred\u{1b}[0m", "\\x1b[31mred\\x1b[0m");
        check("\u{1b}]0;owned\u{7}", "\\x1b]0;owned\\x07");
        check("a\tb\rc\nd", "a\\tb\\rc\\nd");
        check("nul\0 del\u{7f}", "nul\\x00 del\\x7f");
        check("csi\u{9b}2J nel\u{85}", "csi\\u{9b}2J nel\\u{85}");
        check("abc\u{202e}fed", "abc\\u{202e}fed");
        check("\u{2066}x\u{2069}\u{2028}", "\\u{2066}x\\u{2069}\\u{2028}");
        check("a backslash \\x1b stays", "a backslash \\x1b stays");
    }

    #[test]
    fn plain_text_is_borrowed_not_copied() {
        assert!(matches!(inline("hello"), Cow::Borrowed(_)));
    }

    #[test]
    fn lines_split_at_line_feeds_and_crlf_and_escape_the_rest() {
        let split: Vec<_> = lines("one\r\ntwo\n\x1b[2Kthree\rfour\n").collect();
        assert_eq!(split, ["one", "two", "\\x1b[2Kthree\\rfour", ""]);
        assert_eq!(lines("single").collect::<Vec<_>>(), ["single"]);
        assert_eq!(
            lines("ends with a return\r").collect::<Vec<_>>(),
            ["ends with a return\\r"]
        );
        assert_eq!(lines("").collect::<Vec<_>>(), [""]);
    }
}
