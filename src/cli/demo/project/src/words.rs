/// Counts the words in `text`: runs of characters between whitespace.
pub fn count_words(text: &str) -> usize {
    text.split(' ').count()
}

#[cfg(test)]
mod tests {
    use super::count_words;

    #[test]
    fn counts_words() {
        assert_eq!(count_words("one two three"), 3);
    }

    #[test]
    fn ignores_extra_whitespace() {
        assert_eq!(count_words(""), 0);
        assert_eq!(count_words("  spaced   out  "), 2);
        assert_eq!(count_words("tabs\tand\nnewlines"), 3);
    }
}
