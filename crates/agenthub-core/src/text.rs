//! Text from untrusted sources (manifests, agent output) made safe to show on a terminal.

use std::fmt::Write as _;

/// Escapes control characters as `\u{1b}` so that text printed to a terminal cannot move
/// the cursor, change colours, retitle the window or rewrite earlier lines. Newlines and
/// tabs are kept. Also escaped: the Unicode bidirectional overrides and isolates
/// (U+202A–U+202E, U+2066–U+2069), which reorder what a reader sees.
pub fn escape_control(s: &str) -> String {
    let needs_escape = |c: char| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c);
    if !s.contains(needs_escape) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped_and_text_kept() {
        assert_eq!(escape_control("plain\ttext\nnext line, ünïcödé ✓"), "plain\ttext\nnext line, ünïcödé ✓");
        assert_eq!(escape_control("\u{1b}[2J\u{1b}]0;pwned\u{7}"), "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}");
        assert_eq!(escape_control("ok\rfake"), "ok\\u{d}fake");
        assert_eq!(escape_control("\0\u{7f}\u{9b}31m"), "\\u{0}\\u{7f}\\u{9b}31m");
        assert_eq!(escape_control("abc\u{202e}txt.exe"), "abc\\u{202e}txt.exe");
        assert_eq!(escape_control(""), "");
    }
}
