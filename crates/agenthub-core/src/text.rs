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

/// `word` as one POSIX shell word, for commands shown to people (`agenthub env rebuild
/// './my agent'`): as it is when it is plain, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    let plain =
        !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%~".contains(&b));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}

/// Levenshtein distance over bytes.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The one name in `known` closest to `wanted`, when it is close enough to be a typo (at
/// most a third of its length in edits, at least one) and no other is as close.
pub fn closest_name<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut scored: Vec<(usize, &str)> = known.into_iter().map(|k| (edit_distance(wanted, k), k)).collect();
    scored.sort_unstable();
    match scored.as_slice() {
        [(d, k), rest @ ..]
            if *d > 0 && *d <= (k.len() / 3).max(1) && rest.first().is_none_or(|(e, _)| e > d) =>
        {
            Some(k)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_close_name_is_suggested_only_when_it_is_the_one_close_name() {
        let methods = ["greet", "word_count", "add"];
        assert_eq!(super::closest_name("gret", methods), Some("greet"));
        assert_eq!(super::closest_name("word_cont", methods), Some("word_count"));
        assert_eq!(super::closest_name("nope", methods), None);
        assert_eq!(super::closest_name("greet", methods), None, "an exact name is no typo");
        assert_eq!(super::closest_name("ab", ["aa", "bb"]), None, "two as close: no guess");
    }

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
