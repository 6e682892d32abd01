//! Peer-controlled text, made safe to print.
//!
//! Names, topics, services, goodbye reasons and error texts come from peers. Written as they
//! are, a name like `"evil\nFORGED LOG LINE \x1b[31m"` would forge a log line and drive the
//! reader's terminal. [`Escaped`] prints such text with every control character, and every
//! invisible character that reorders or hides text (bidirectional overrides, zero-width
//! marks), escaped the way Rust writes them (`\n`, `\u{1b}`), and a backslash doubled, so
//! the printed form is one line and says unambiguously what the peer sent.
//!
//! ```
//! use chaski_proto::text::Escaped;
//! assert_eq!(Escaped("evil\n\x1b[31mred").to_string(), "evil\\n\\u{1b}[31mred");
//! assert_eq!(Escaped("sensors/kitchen").to_string(), "sensors/kitchen");
//! ```

use std::fmt;

/// Displays peer-controlled text escaped (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a str);

/// Whether `c` must be escaped: control characters, and the invisible ones that change how
/// the text around them is shown.
pub fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' // zero-width marks, LRM, RLM
                | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings
                | '\u{2060}'..='\u{2069}' // word joiner, bidi isolates
                | '\u{FEFF}'
        )
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(f, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// `s` escaped, as an owned string (see [`Escaped`]).
pub fn escape(s: &str) -> String {
    Escaped(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped_and_nothing_else() {
        assert_eq!(escape("a\r\nb\tc\0"), "a\\r\\nb\\tc\\u{0}");
        assert_eq!(escape("\u{202E}gpj.exe"), "\\u{202e}gpj.exe");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("\u{85}\u{2028}"), "\\u{85}\\u{2028}");
        // Printable text, accents and other scripts pass as they are.
        assert_eq!(escape("café/東京/*"), "café/東京/*");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn the_escaped_form_has_no_character_that_needs_escaping() {
        let all: String = (0..0x3000u32).filter_map(char::from_u32).collect();
        let out = escape(&all);
        // Only the backslashes the escapes themselves introduce.
        assert!(!out.chars().any(|c| c != '\\' && needs_escape(c)));
        assert!(!out.contains('\n'));
    }
}
