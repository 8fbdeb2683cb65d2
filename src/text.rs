//! Text as orch shows it to people and models: cut at character boundaries,
//! one-line previews, and escaping that keeps model or plugin text from
//! restyling a terminal. One rule for each, used by every module.

/// The longest start of `text` of at most `max` bytes that ends on a
/// character boundary.
pub fn head(text: &str, max: usize) -> &str {
    &text[..floor_boundary(text, max)]
}

/// The longest end of `text` of at most `max` bytes that starts on a
/// character boundary.
pub fn tail(text: &str, max: usize) -> &str {
    &text[ceil_boundary(text, text.len().saturating_sub(max))..]
}

/// At most `max_chars` characters of `text`, with `…` when something was cut.
pub fn preview(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The first line of `text`, trimmed, with control characters dropped, so
/// it fits one terminal line and cannot move the cursor.
pub fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string()
}

/// Runs of whitespace as one space, trimmed.
pub fn squash_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` with control characters other than newline and tab escaped
/// (`\u{1b}`), so it cannot move the cursor or restyle the terminal it is
/// shown on, while a reader still sees that they were there.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` without control characters other than newline and tab.
pub fn strip_controls(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// Cut `text` to at most `max` bytes at a character boundary; how many bytes
/// were dropped (0 when it fit).
pub fn truncate(text: &mut String, max: usize) -> usize {
    let cut = floor_boundary(text, max);
    let dropped = text.len() - cut;
    text.truncate(cut);
    dropped
}

/// `text` with its middle replaced by a line saying how many bytes were cut,
/// keeping about `keep` bytes at each end. Unchanged when it is no longer
/// than `2 * keep` bytes.
pub fn keep_ends(text: &str, keep: usize) -> String {
    let head_end = floor_boundary(text, keep);
    let tail_start = ceil_boundary(text, text.len().saturating_sub(keep)).max(head_end);
    if tail_start == head_end {
        return text.to_string();
    }
    format!(
        "{}\n[… {} bytes cut to fit the context window …]\n{}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    )
}

/// The largest character boundary of `text` at or below `index`.
pub fn floor_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The smallest character boundary of `text` at or above `index`.
pub fn ceil_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_never_split_a_character() {
        let text = "aé€😀b"; // 1 + 2 + 3 + 4 + 1 bytes
        let heads: Vec<&str> = (0..=11).map(|max| head(text, max)).collect();
        assert_eq!(
            heads,
            [
                "",
                "a",
                "a",
                "aé",
                "aé",
                "aé",
                "aé€",
                "aé€",
                "aé€",
                "aé€",
                "aé€😀",
                "aé€😀b"
            ]
        );
        assert_eq!(tail(text, 1), "b");
        assert_eq!(tail(text, 4), "b");
        assert_eq!(tail(text, 5), "😀b");
        assert_eq!(tail(text, 100), text);
        let mut owned = text.to_string();
        assert_eq!(truncate(&mut owned, 5), 8);
        assert_eq!(owned, "aé");
        assert_eq!(truncate(&mut owned, 50), 0);
    }

    #[test]
    fn previews_count_characters_and_mark_the_cut() {
        assert_eq!(preview("héllo", 5), "héllo");
        assert_eq!(preview("héllo", 2), "hé…");
        assert_eq!(preview("", 0), "");
        assert_eq!(one_line("  first \u{1b}[2Jline \nsecond"), "first [2Jline");
        assert_eq!(one_line(""), "");
        assert_eq!(squash_spaces(" git \t push  origin "), "git push origin");
    }

    #[test]
    fn control_characters_are_escaped_or_dropped_but_lines_stay() {
        assert_eq!(printable("a\u{1b}[31mb\n\tc"), "a\\u{1b}[31mb\n\tc");
        assert_eq!(strip_controls("a\u{1b}[31mb\n\tc\u{7}"), "a[31mb\n\tc");
    }

    #[test]
    fn keeping_the_ends_cuts_the_middle_on_boundaries() {
        assert_eq!(keep_ends("short", 10), "short");
        let text = format!("{}{}{}", "a".repeat(10), "é".repeat(50), "z".repeat(10));
        // 11 bytes would end inside an `é`: the head keeps 10, the tail 10.
        let kept = keep_ends(&text, 11);
        assert_eq!(
            kept,
            format!(
                "{}\n[… 100 bytes cut to fit the context window …]\n{}",
                "a".repeat(10),
                "z".repeat(10)
            )
        );
        let kept = keep_ends(&text, 12);
        assert!(
            kept.starts_with(&format!("{}é\n", "a".repeat(10))),
            "{kept}"
        );
        assert!(kept.ends_with(&format!("\né{}", "z".repeat(10))), "{kept}");
        assert!(kept.contains("[… 96 bytes cut"), "{kept}");
    }
}
