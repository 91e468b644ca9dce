//! Whether `agent.py` has a `main()` block the warm worker can replay, decided in Rust the
//! way `bootstrap.py`'s `_main_guard` decides it with Python's `ast` (that one is the truth:
//! it decides how a worker serves; this one is what `info` reports). The rule: exactly one
//! top-level `if __name__ == "__main__":` (either operand order, either quote style), no
//! `else`/`elif`, and a body of exactly one statement in one of the forms
//! `main()`, `sys.exit(main())`, `exit(main())`, `quit(main())`, `raise SystemExit(main())`,
//! `asyncio.run(main())`. A small tokenizer (strings, comments, brackets, continuation
//! lines) and a parser of just those expressions, so that comments, spacing, parentheses
//! and `;` are read as Python reads them; a test runs both on the same snippets.

/// How the guard calls `main()` (the bootstrap's names: `call`, `exit`, `async`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainForm {
    /// `main()`.
    Call,
    /// `sys.exit(main())`, `exit(main())`, `quit(main())` or `raise SystemExit(main())`.
    Exit,
    /// `asyncio.run(main())`.
    Async,
}

impl MainForm {
    /// The bootstrap's name for it.
    /// The name `bootstrap.py` gives the form: `call`, `exit` or `async`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Exit => "exit",
            Self::Async => "async",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Name(String),
    /// A string literal's text between its quotes, unless it is a bytes or f-string or
    /// holds an escape (none of which can be a plain `"__main__"` as written).
    Str(Option<String>),
    Op(&'static str),
    Other,
}

/// A logical line: whether it is indented, and its tokens.
struct Line {
    indented: bool,
    tokens: Vec<Tok>,
}

const OPS: [&str; 16] =
    ["==", "!=", "<=", ">=", ":=", "->", "(", ")", "[", "]", "{", "}", ":", ";", ".", ","];

/// Splits `source` into logical lines (brackets and `\` join physical lines), dropping
/// comments and blank lines. `None` where the tokenizer is lost (an unterminated string).
fn logical_lines(source: &str) -> Option<Vec<Line>> {
    let chars: Vec<char> = source.strip_prefix('\u{feff}').unwrap_or(source).chars().collect();
    let mut lines = Vec::new();
    let mut tokens = Vec::new();
    let (mut depth, mut i) = (0usize, 0);
    let mut at_line_start = true;
    let mut indented = false;
    while i < chars.len() {
        let c = chars[i];
        if at_line_start {
            indented = c == ' ' || c == '\t' || c == '\x0c';
            at_line_start = false;
        }
        match c {
            '\n' | '\r' => {
                i += 1;
                if c == '\r' && chars.get(i) == Some(&'\n') {
                    i += 1;
                }
                if depth == 0 {
                    if !tokens.is_empty() {
                        lines.push(Line { indented, tokens: std::mem::take(&mut tokens) });
                    }
                    at_line_start = true;
                }
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                    i += 1;
                }
            }
            '\\' if matches!(chars.get(i + 1), Some('\n' | '\r')) => {
                i += 2;
                if chars[i - 1] == '\r' && chars.get(i) == Some(&'\n') {
                    i += 1;
                }
            }
            c if c.is_whitespace() => i += 1,
            '"' | '\'' => {
                let (tok, next) = string(&chars, i, "")?;
                tokens.push(tok);
                i = next;
            }
            c if c == '_' || c.is_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i] == '_' || chars[i].is_alphanumeric()) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if matches!(chars.get(i), Some('"' | '\'')) && is_prefix(&word) {
                    let (tok, next) = string(&chars, i, &word)?;
                    tokens.push(tok);
                    i = next;
                } else {
                    tokens.push(Tok::Name(word));
                }
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i] == '_' || chars[i] == '.' || chars[i].is_alphanumeric()) {
                    i += 1;
                }
                tokens.push(Tok::Other);
            }
            _ => {
                let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
                // Two-character operators come first in `OPS`.
                if let Some(op) = OPS.iter().find(|op| two.starts_with(**op)) {
                    match *op {
                        "(" | "[" | "{" => depth += 1,
                        ")" | "]" | "}" => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    tokens.push(Tok::Op(op));
                    i += op.len();
                } else {
                    tokens.push(Tok::Other);
                    i += 1;
                }
            }
        }
    }
    if !tokens.is_empty() {
        lines.push(Line { indented, tokens });
    }
    Some(lines)
}

/// Whether `word` is a string prefix (`r`, `u`, `b`, `f`, `rb`, `fr`, … in any case).
fn is_prefix(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    matches!(lower.as_str(), "r" | "u" | "b" | "f" | "rb" | "br" | "fr" | "rf" | "t" | "tr" | "rt")
}

/// The string literal whose quote is at `start`, and the index after it.
fn string(chars: &[char], start: usize, prefix: &str) -> Option<(Tok, usize)> {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    let body_start = i;
    let mut escaped = false;
    loop {
        let c = *chars.get(i)?;
        if c == '\\' {
            escaped = true;
            i += 2;
            continue;
        }
        if !triple && (c == '\n' || c == '\r') {
            return None;
        }
        if c == quote && (!triple || (chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote))) {
            let text: String = chars[body_start..i].iter().collect();
            let plain = !prefix.to_ascii_lowercase().contains(['b', 'f', 't']) && !escaped;
            return Some((Tok::Str(plain.then_some(text)), i + if triple { 3 } else { 1 }));
        }
        i += 1;
    }
}

/// The few expressions the rule looks at.
#[derive(Debug)]
enum Expr {
    Name(String),
    Attr(Box<Expr>, String),
    Call(Box<Expr>, Vec<Expr>),
}

/// Parses all of `tokens` as one expression made of names, attributes and calls with
/// positional arguments (in any parentheses); `None` for anything else.
fn expression(tokens: &[Tok]) -> Option<Expr> {
    let (expr, rest) = primary(tokens)?;
    rest.is_empty().then_some(expr)
}

fn primary(tokens: &[Tok]) -> Option<(Expr, &[Tok])> {
    let (mut expr, mut rest) = match tokens.first()? {
        Tok::Name(name) if !is_keyword(name) => (Expr::Name(name.clone()), &tokens[1..]),
        Tok::Op("(") => {
            let (inner, rest) = primary(&tokens[1..])?;
            match rest.first()? {
                Tok::Op(")") => (inner, &rest[1..]),
                _ => return None,
            }
        }
        _ => return None,
    };
    loop {
        match rest.first() {
            Some(Tok::Op(".")) => match rest.get(1)? {
                Tok::Name(attr) if !is_keyword(attr) => {
                    expr = Expr::Attr(Box::new(expr), attr.clone());
                    rest = &rest[2..];
                }
                _ => return None,
            },
            Some(Tok::Op("(")) => {
                let mut args = Vec::new();
                rest = &rest[1..];
                loop {
                    if let Some(Tok::Op(")")) = rest.first() {
                        rest = &rest[1..];
                        break;
                    }
                    let (arg, after) = primary(rest)?;
                    args.push(arg);
                    rest = match after.first()? {
                        Tok::Op(",") => &after[1..],
                        Tok::Op(")") => after,
                        _ => return None,
                    };
                }
                expr = Expr::Call(Box::new(expr), args);
            }
            _ => return Some((expr, rest)),
        }
    }
}

fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "False"
            | "None"
            | "True"
            | "and"
            | "as"
            | "assert"
            | "async"
            | "await"
            | "break"
            | "class"
            | "continue"
            | "def"
            | "del"
            | "elif"
            | "else"
            | "except"
            | "finally"
            | "for"
            | "from"
            | "global"
            | "if"
            | "import"
            | "in"
            | "is"
            | "lambda"
            | "nonlocal"
            | "not"
            | "or"
            | "pass"
            | "raise"
            | "return"
            | "try"
            | "while"
            | "with"
            | "yield"
    )
}

/// `main()`: a call of the name `main` without arguments.
fn is_main_call(expr: &Expr) -> bool {
    matches!(expr, Expr::Call(callee, args) if args.is_empty() && matches!(&**callee, Expr::Name(n) if n == "main"))
}

/// `name` or `name.attr` of a callee, as the bootstrap's `callee` spells it.
fn callee(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Name(name) => Some(name.clone()),
        Expr::Attr(value, attr) => match &**value {
            Expr::Name(name) => Some(format!("{name}.{attr}")),
            _ => None,
        },
        Expr::Call(..) => None,
    }
}

/// The form of one statement, if it is one the worker replays.
fn statement_form(tokens: &[Tok]) -> Option<MainForm> {
    let (wrapper, raise) = match tokens.first()? {
        Tok::Name(word) if word == "raise" => (expression(&tokens[1..])?, true),
        _ => {
            let expr = expression(tokens)?;
            if is_main_call(&expr) {
                return Some(MainForm::Call);
            }
            (expr, false)
        }
    };
    let Expr::Call(function, args) = wrapper else { return None };
    if args.len() != 1 || !is_main_call(&args[0]) {
        return None;
    }
    match (callee(&function)?.as_str(), raise) {
        ("SystemExit", true) | ("sys.exit" | "exit" | "quit", false) => Some(MainForm::Exit),
        ("asyncio.run", false) => Some(MainForm::Async),
        _ => None,
    }
}

/// Where `tokens` split at `sep` outside brackets.
fn split_top<'a>(tokens: &'a [Tok], sep: &str) -> Vec<&'a [Tok]> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, tok) in tokens.iter().enumerate() {
        match tok {
            Tok::Op("(" | "[" | "{") => depth += 1,
            Tok::Op(")" | "]" | "}") => depth = depth.saturating_sub(1),
            Tok::Op(op) if depth == 0 && *op == sep => {
                parts.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[start..]);
    parts
}

/// `tokens` without parentheses around all of them.
fn unparenthesized(mut tokens: &[Tok]) -> &[Tok] {
    while let (Some(Tok::Op("(")), Some(Tok::Op(")"))) = (tokens.first(), tokens.last()) {
        let inner = &tokens[1..tokens.len() - 1];
        // Only when the first `(` closes at the end: `(a) == (b)` keeps its own.
        let mut depth = 0usize;
        let balanced = inner.iter().all(|tok| {
            match tok {
                Tok::Op("(" | "[" | "{") => depth += 1,
                Tok::Op(")" | "]" | "}") => {
                    if depth == 0 {
                        return false;
                    }
                    depth -= 1;
                }
                _ => {}
            }
            true
        });
        if !balanced {
            break;
        }
        tokens = inner;
    }
    tokens
}

/// Whether `test` is `__name__ == "__main__"` (either order, any parentheses).
fn is_name_main(test: &[Tok]) -> bool {
    let sides = split_top(unparenthesized(test), "==");
    let [left, right] = sides.as_slice() else { return false };
    let is_name = |side: &[Tok]| matches!(unparenthesized(side), [Tok::Name(n)] if n == "__name__");
    let is_main = |side: &[Tok]| {
        let side = unparenthesized(side);
        // Adjacent literals are one string, as in Python.
        let mut text = String::new();
        for tok in side {
            match tok {
                Tok::Str(Some(part)) => text.push_str(part),
                _ => return false,
            }
        }
        !side.is_empty() && text == "__main__"
    };
    (is_name(left) && is_main(right)) || (is_main(left) && is_name(right))
}

/// The statements of a simple-statement line (`a; b;`); `None` for an empty one (`a;;`).
fn statements(tokens: &[Tok]) -> Option<Vec<&[Tok]>> {
    let mut parts = split_top(tokens, ";");
    if parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts.iter().all(|p| !p.is_empty()).then_some(parts)
}

/// How `source`'s single top-level `if __name__ == "__main__":` block calls `main()`, or
/// `None` when there is no such block, more than one, one with an `else`, or one whose body
/// is not exactly one statement of a form the worker replays.
pub fn main_guard(source: &str) -> Option<MainForm> {
    let lines = logical_lines(source)?;
    let mut guards = 0;
    let mut form = None;
    for (i, line) in lines.iter().enumerate() {
        if line.indented || line.tokens.first() != Some(&Tok::Name("if".to_owned())) {
            continue;
        }
        let parts = split_top(&line.tokens[1..], ":");
        if parts.len() < 2 || !is_name_main(parts[0]) {
            continue;
        }
        guards += 1;
        let inline = &line.tokens[2 + parts[0].len()..];
        let mut body: Vec<&[Tok]> = Vec::new();
        let mut well_formed = true;
        let block = lines[i + 1..].iter().take_while(|l| l.indented);
        for tokens in
            (!inline.is_empty()).then_some(inline).into_iter().chain(block.map(|l| l.tokens.as_slice()))
        {
            match statements(tokens) {
                Some(stmts) => body.extend(stmts),
                None => well_formed = false,
            }
        }
        let next = lines[i + 1..].iter().find(|l| !l.indented);
        let has_else = next
            .is_some_and(|l| matches!(l.tokens.first(), Some(Tok::Name(w)) if w == "else" || w == "elif"));
        form = match body.as_slice() {
            [stmt] if well_formed && !has_else => statement_form(stmt),
            _ => None,
        };
    }
    if guards == 1 { form } else { None }
}
