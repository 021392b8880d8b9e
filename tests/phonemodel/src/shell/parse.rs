//! Command-line parsing as `/system/bin/sh -c` does it, for the subset the model supports:
//! words with single quotes, double quotes (where `\` escapes `"`, `\`, `$` and a backquote)
//! and backslash escapes; `#` comments; sequencing with `;`, newlines, `&&` and `||`; and the
//! redirections `>`, `>>`, `N>`, `N>>`, `N>&M` and `<` (ignored). No variable, command or glob
//! expansion happens: `$`, backquotes and `*` are literal. Pipes, background jobs and
//! subshells are rejected with a clear error.

/// How a command is joined to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connector {
    /// `;`, a newline, or the first command.
    Always,
    /// `&&`
    IfOk,
    /// `||`
    IfFailed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedirectTarget {
    File {
        path: String,
        append: bool,
    },
    /// `N>&M`: duplicate descriptor M.
    Fd(u8),
    /// `< FILE`: read, but no modelled command reads stdin.
    Input(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    pub fd: u8,
    pub target: RedirectTarget,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Command {
    pub argv: Vec<String>,
    pub redirects: Vec<Redirect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    UnterminatedQuote,
    Unexpected(String),
    Unsupported(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnterminatedQuote => f.write_str("syntax error: unterminated quoted string"),
            Self::Unexpected(t) => write!(f, "syntax error: unexpected '{t}'"),
            Self::Unsupported(what) => write!(f, "{what} not supported by the phone model"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Op(Connector),
    Sep,
    Redir { fd: u8, kind: RedirKind },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedirKind {
    Out,
    Append,
    Dup,
    In,
}

fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = input.chars().peekable();

    fn flush(word: &mut Option<String>, tokens: &mut Vec<Token>) {
        if let Some(w) = word.take() {
            tokens.push(Token::Word(w));
        }
    }

    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => flush(&mut word, &mut tokens),
            '\n' | ';' => {
                flush(&mut word, &mut tokens);
                if c == ';' && chars.peek() == Some(&';') {
                    return Err(ParseError::Unexpected(";;".into()));
                }
                tokens.push(Token::Sep);
            }
            '&' => {
                flush(&mut word, &mut tokens);
                if chars.peek() == Some(&'&') {
                    chars.next();
                    tokens.push(Token::Op(Connector::IfOk));
                } else {
                    return Err(ParseError::Unsupported("background jobs (&) are"));
                }
            }
            '|' => {
                flush(&mut word, &mut tokens);
                if chars.peek() == Some(&'|') {
                    chars.next();
                    tokens.push(Token::Op(Connector::IfFailed));
                } else {
                    return Err(ParseError::Unsupported("pipes (|) are"));
                }
            }
            '(' | ')' => {
                flush(&mut word, &mut tokens);
                return Err(ParseError::Unexpected(c.to_string()));
            }
            '>' | '<' => {
                // A word made only of digits right before the operator is its descriptor.
                let fd = match &word {
                    Some(w)
                        if !w.is_empty()
                            && w.len() <= 2
                            && w.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        let fd = w.parse::<u8>().unwrap_or(u8::MAX);
                        word = None;
                        fd
                    }
                    _ => {
                        flush(&mut word, &mut tokens);
                        if c == '>' { 1 } else { 0 }
                    }
                };
                let kind = if c == '<' {
                    RedirKind::In
                } else if chars.peek() == Some(&'>') {
                    chars.next();
                    RedirKind::Append
                } else if chars.peek() == Some(&'&') {
                    chars.next();
                    RedirKind::Dup
                } else {
                    RedirKind::Out
                };
                tokens.push(Token::Redir { fd, kind });
            }
            '#' if word.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        tokens.push(Token::Sep);
                        break;
                    }
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\'' {
                        closed = true;
                        break;
                    }
                    w.push(c);
                }
                if !closed {
                    return Err(ParseError::UnterminatedQuote);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.peek() {
                            Some(&n) if matches!(n, '"' | '\\' | '$' | '`') => {
                                chars.next();
                                w.push(n);
                            }
                            Some(&'\n') => {
                                chars.next();
                            }
                            _ => w.push('\\'),
                        },
                        other => w.push(other),
                    }
                }
                if !closed {
                    return Err(ParseError::UnterminatedQuote);
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(n) => word.get_or_insert_with(String::new).push(n),
                None => word.get_or_insert_with(String::new).push('\\'),
            },
            other => word.get_or_insert_with(String::new).push(other),
        }
    }
    flush(&mut word, &mut tokens);
    Ok(tokens)
}

/// Parses a command line into commands, each with the connector that precedes it.
pub(crate) fn parse(input: &str) -> Result<Vec<(Connector, Command)>, ParseError> {
    let tokens = tokenize(input)?;
    let mut out: Vec<(Connector, Command)> = Vec::new();
    let mut pending = Connector::Always;
    let mut current = Command::default();
    let mut iter = tokens.into_iter();
    // An operator with nothing before it is an error; `;` with nothing after it is fine.
    let mut need_command = false;
    while let Some(tok) = iter.next() {
        match tok {
            Token::Word(w) => current.argv.push(w),
            Token::Redir { fd, kind } => {
                let Some(Token::Word(target)) = iter.next() else {
                    return Err(ParseError::Unexpected("newline".into()));
                };
                let target = match kind {
                    RedirKind::Out => RedirectTarget::File {
                        path: target,
                        append: false,
                    },
                    RedirKind::Append => RedirectTarget::File {
                        path: target,
                        append: true,
                    },
                    RedirKind::In => RedirectTarget::Input(target),
                    RedirKind::Dup => match target.parse::<u8>() {
                        Ok(n) => RedirectTarget::Fd(n),
                        Err(_) => RedirectTarget::File {
                            path: target,
                            append: false,
                        },
                    },
                };
                current.redirects.push(Redirect { fd, target });
            }
            Token::Sep => {
                // Blank lines and a newline after `&&`/`||` are fine in sh.
                if current.argv.is_empty() && current.redirects.is_empty() {
                    continue;
                }
                out.push((pending, std::mem::take(&mut current)));
                pending = Connector::Always;
                need_command = false;
            }
            Token::Op(c) => {
                if current.argv.is_empty() && current.redirects.is_empty() {
                    let t = if c == Connector::IfOk { "&&" } else { "||" };
                    return Err(ParseError::Unexpected(t.into()));
                }
                out.push((pending, std::mem::take(&mut current)));
                pending = c;
                need_command = true;
            }
        }
    }
    if !current.argv.is_empty() || !current.redirects.is_empty() {
        out.push((pending, current));
    } else if need_command {
        return Err(ParseError::Unexpected("end of file".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(input: &str) -> Vec<Vec<String>> {
        parse(input)
            .unwrap()
            .into_iter()
            .map(|(_, c)| c.argv)
            .collect()
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            argv(r#"echo 'a b' "c \"d\" \$e \x" f\ g"#),
            vec![vec!["echo", "a b", "c \"d\" $e \\x", "f g"]]
        );
        assert_eq!(argv("echo '' \"\""), vec![vec!["echo", "", ""]]);
        assert_eq!(argv("echo a'b'\"c\"d"), vec![vec!["echo", "abcd"]]);
        assert_eq!(argv("echo 'it''s'"), vec![vec!["echo", "its"]]);
    }

    #[test]
    fn sequencing() {
        let parsed = parse("true && echo a; false || echo b\necho c;").unwrap();
        let connectors: Vec<_> = parsed.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            connectors,
            vec![
                Connector::Always,
                Connector::IfOk,
                Connector::Always,
                Connector::IfFailed,
                Connector::Always
            ]
        );
        assert_eq!(parsed.len(), 5);
    }

    #[test]
    fn redirections() {
        let parsed = parse("ls /x 2>/dev/null >> out.txt 2>&1").unwrap();
        let cmd = &parsed[0].1;
        assert_eq!(cmd.argv, vec!["ls", "/x"]);
        assert_eq!(
            cmd.redirects,
            vec![
                Redirect {
                    fd: 2,
                    target: RedirectTarget::File {
                        path: "/dev/null".into(),
                        append: false
                    }
                },
                Redirect {
                    fd: 1,
                    target: RedirectTarget::File {
                        path: "out.txt".into(),
                        append: true
                    }
                },
                Redirect {
                    fd: 2,
                    target: RedirectTarget::Fd(1)
                },
            ]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse("echo 'x"), Err(ParseError::UnterminatedQuote));
        assert_eq!(parse("echo \"x"), Err(ParseError::UnterminatedQuote));
        assert!(matches!(
            parse("ls | grep x"),
            Err(ParseError::Unsupported(_))
        ));
        assert!(matches!(
            parse("sleep 1 &"),
            Err(ParseError::Unsupported(_))
        ));
        assert_eq!(parse("&& ls"), Err(ParseError::Unexpected("&&".into())));
        assert_eq!(
            parse("ls &&"),
            Err(ParseError::Unexpected("end of file".into()))
        );
        assert_eq!(
            parse("echo >"),
            Err(ParseError::Unexpected("newline".into()))
        );
    }

    #[test]
    fn comments_and_blank() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("   # only a comment").unwrap().is_empty());
        assert_eq!(
            argv("echo a # tail\necho b"),
            vec![vec!["echo", "a"], vec!["echo", "b"]]
        );
        assert_eq!(argv("echo a#b"), vec![vec!["echo", "a#b"]]);
    }
}
