//! Turning text into `input text` shell commands.
//!
//! `input text ARG` types ARG on the focused field, with one escape of its own: every `%s` in
//! ARG becomes a space. So a space is sent as `%s`, and a literal `%s` in the text is split across
//! two commands (`…%` then `s…`) so that it is never rewritten. Each argument is wrapped in single
//! quotes for the phone's `sh` (a `'` becomes `'\''`), so no shell metacharacter is interpreted.
//!
//! `input text` can only type what the current key map can produce: printable ASCII. Anything
//! else (non-ASCII letters, emoji, newlines, tabs, control characters) is refused with
//! [`TextError::Unsupported`] before any command is sent, instead of typing garbage; send a
//! newline as `KEYCODE_ENTER` yourself if a field accepts it.

/// Why text cannot be typed with `input text`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("input text cannot type {ch:?} (char {index}): only printable ascii is supported")]
    Unsupported { ch: char, index: usize },
}

/// Quotes `s` for `sh` with single quotes.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `input text …` commands that type `text`, in order (none for an empty text).
pub fn input_text_commands(text: &str) -> Result<Vec<String>, TextError> {
    if let Some((index, ch)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| !(' '..='~').contains(c))
    {
        return Err(TextError::Unsupported { ch, index });
    }
    let mut chunks: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("%s") {
        // Cut after the '%': this command ends with '%', the next starts with 's'.
        chunks.push(&rest[..=at]);
        rest = &rest[at + 1..];
    }
    if !rest.is_empty() {
        chunks.push(rest);
    }
    Ok(chunks
        .into_iter()
        .map(|chunk| format!("input text {}", shell_quote(&chunk.replace(' ', "%s"))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Android's `input text` does with its argument (the `%s` rule of `Input.sendText`).
    fn android_unescape(arg: &str) -> String {
        let mut out: Vec<char> = Vec::new();
        let mut escape = false;
        for c in arg.chars() {
            if escape && c == 's' {
                out.pop();
                out.push(' ');
                escape = false;
                continue;
            }
            escape = c == '%';
            out.push(c);
        }
        out.into_iter().collect()
    }

    /// What `sh` passes for one single-quoted word built by `shell_quote`.
    fn sh_unquote(word: &str) -> String {
        word.strip_prefix('\'')
            .and_then(|w| w.strip_suffix('\''))
            .unwrap()
            .replace(r"'\''", "'")
    }

    fn typed(text: &str) -> String {
        input_text_commands(text)
            .unwrap()
            .iter()
            .map(|c| android_unescape(&sh_unquote(c.strip_prefix("input text ").unwrap())))
            .collect()
    }

    #[test]
    fn spaces_and_quotes() {
        assert_eq!(
            input_text_commands("it's a test").unwrap(),
            vec![r"input text 'it'\''s%sa%stest'".to_string()]
        );
        assert!(input_text_commands("").unwrap().is_empty());
    }

    #[test]
    fn literal_percent_s_survives() {
        assert_eq!(input_text_commands("50%sale").unwrap().len(), 2);
        for text in [
            "50%sale",
            "%s",
            "a%%sb",
            "a% b",
            "%",
            "%%s%s s",
            "$(rm -rf /) `x` \"q\" ;|&<>",
        ] {
            assert_eq!(typed(text), text, "{text:?}");
        }
    }

    #[test]
    fn non_ascii_is_refused() {
        assert_eq!(
            input_text_commands("café"),
            Err(TextError::Unsupported { ch: 'é', index: 3 })
        );
        assert!(input_text_commands("a\nb").is_err());
        assert!(input_text_commands("tab\there").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_printable_ascii_round_trips(text in "[ -~]{0,40}") {
            proptest::prop_assert_eq!(typed(&text), text);
        }
    }
}
