//! The Go-template engine behind `Headers` values and `ErrorPages` files.
//!
//! Parsing, execution and html/template's contextual escaping come from the `gotmpl` crate (a
//! port of Go's `text/template` and `html/template`); this file adds what the sidecar needs
//! around it: the functions traefik-oidc-auth registers, load-time checks Go's parser does but
//! the port leaves to execution (unknown functions, undefined templates) reported with line and
//! column, claims turned into template values, and execution errors described without the
//! values they were about (claims and tokens stay out of the log).

use gotmpl::parse::{CommandNode, DefineNode, Expr, ListNode, Node, Parser, PipeNode, Pos};
use gotmpl::{FuncMap, TemplateError, Value};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Go's own template functions (text/template's builtins), available everywhere.
const BUILTINS: [&str; 19] = [
    "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "slice", "print",
    "printf", "println", "html", "js", "urlquery", "call",
];

/// The functions traefik-oidc-auth adds to `Headers` templates (`newTemplate` in its main.go).
pub(crate) const HEADER_FUNCS: [&str; 3] = ["withPrefix", "withSuffix", "mapToJsonArray"];

/// Appended to every printing action of a header template so that a missing value prints as
/// nothing rather than Go's `<no value>` (a header saying `<no value>` would read as data).
/// Users cannot call it: the load-time check only knows the names above.
pub(crate) const NIL_AS_EMPTY: &str = "_sidecarNilAsEmpty";

/// At most this many `{{ range }}` iterations per render (gotmpl's default is 10 million):
/// headers render on every request, and a loop nested over a large claim must fail (500, or
/// the built-in page) rather than hold a core.
pub(crate) const MAX_RANGE_ITERS: u64 = 100_000;

/// A template that cannot be used: a syntax error, or a name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column (characters), 0 when unknown.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.col) {
            (0, _) => f.write_str(&self.message),
            (l, 0) => write!(f, "line {l}: {}", self.message),
            (l, c) => write!(f, "line {l}, column {c}: {}", self.message),
        }
    }
}

/// A parsed source: the body and its `{{ define }}`s, already checked.
pub(crate) struct Parsed {
    pub tree: ListNode,
    pub defines: Vec<DefineNode>,
}

/// Parses `src` as Go does, then checks every function and template name it uses; `funcs` are
/// the extra functions the caller will register.
pub(crate) fn parse(src: &str, funcs: &[&str]) -> Result<Parsed, ParseError> {
    let parser = Parser::new(src, "{{", "}}").map_err(|e| from_gotmpl(&e))?;
    let (tree, defines) = parser.parse().map_err(|e| from_gotmpl(&e))?;
    check_blocks(src)?;
    let mut seen = HashSet::new();
    for d in &defines {
        if !seen.insert(d.name.as_str()) {
            return Err(at(
                src,
                d.pos,
                format!("template {:?} defined twice", d.name),
            ));
        }
    }
    let mut check = Check {
        src,
        funcs,
        defined: &seen,
        vars: Vec::new(),
    };
    check.list(&tree)?;
    for d in &defines {
        check.vars.clear();
        check.list(&d.body)?;
    }
    Ok(Parsed { tree, defines })
}

/// Go refuses a block without its `{{ end }}`, a stray `{{ end }}` or `{{ else }}`, and
/// `{{ break }}` outside `{{ range }}`; gotmpl's parser (0.6) accepts them and silently ends
/// the template there, so a page with one `{{ end }}` too many would lose its tail. This scans
/// the actions of a source gotmpl has already lexed (so strings and comments are well formed).
pub(crate) fn check_blocks(src: &str) -> Result<(), ParseError> {
    let b = src.as_bytes();
    let mut open: Vec<(&str, usize)> = Vec::new();
    let mut i = 0;
    while let Some(start) = find(b, i, b"{{") {
        let mut j = start + 2;
        // `{{- ` trims; `{{-3}}` is a number.
        if b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        while b.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if b.get(j..j + 2) == Some(b"/*") {
            let close = find(b, j + 2, b"*/").unwrap_or(b.len());
            i = find(b, close, b"}}").map_or(b.len(), |k| k + 2);
            continue;
        }
        let word_end = (j..b.len())
            .find(|&k| !(b[k].is_ascii_alphanumeric() || b[k] == b'_'))
            .unwrap_or(b.len());
        let word = src.get(j..word_end).unwrap_or("");
        i = action_end(b, word_end);
        let blocks = ["if", "range", "with"];
        match word {
            "if" | "range" | "with" | "define" | "block" => open.push((word, start)),
            "else" if !open.last().is_some_and(|(k, _)| blocks.contains(k)) => {
                return Err(at_offset(src, start, "unexpected {{else}}".into()));
            }
            // The guard pops the block this `end` closes.
            "end" if open.pop().is_none() => {
                return Err(at_offset(src, start, "unexpected {{end}}".into()));
            }
            "break" | "continue" => {
                let in_range = open
                    .iter()
                    .rev()
                    .take_while(|(k, _)| !matches!(*k, "define" | "block"))
                    .any(|(k, _)| *k == "range");
                if !in_range {
                    return Err(at_offset(
                        src,
                        start,
                        format!("{{{{{word}}}}} outside {{{{range}}}}"),
                    ));
                }
            }
            _ => {}
        }
    }
    match open.last() {
        Some((kw, at)) => Err(at_offset(
            src,
            *at,
            format!("unexpected EOF: this {{{{{kw}}}}} has no {{{{end}}}}"),
        )),
        None => Ok(()),
    }
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The index just past the `}}` closing an action, skipping quoted strings, raw strings and
/// character constants.
fn action_end(b: &[u8], mut k: usize) -> usize {
    while k < b.len() {
        match b[k] {
            q @ (b'"' | b'\'') => {
                k += 1;
                while k < b.len() && b[k] != q {
                    k += if b[k] == b'\\' { 2 } else { 1 };
                }
                k += 1;
            }
            b'`' => k = find(b, k + 1, b"`").map_or(b.len(), |e| e + 1),
            b'}' if b.get(k + 1) == Some(&b'}') => return k + 2,
            _ => k += 1,
        }
    }
    b.len()
}

fn at_offset(src: &str, offset: usize, message: String) -> ParseError {
    let line = src
        .as_bytes()
        .get(..offset)
        .map_or(0, |s| s.iter().filter(|&&c| c == b'\n').count() + 1);
    at(src, Pos::new(offset, line), message)
}

/// A gotmpl parse or escape error as ours.
pub(crate) fn from_gotmpl(e: &TemplateError) -> ParseError {
    match e {
        TemplateError::Parse {
            line, col, message, ..
        }
        | TemplateError::Lex {
            line, col, message, ..
        } => ParseError {
            line: *line,
            col: *col,
            message: message.clone(),
        },
        TemplateError::Escape {
            line, description, ..
        } => ParseError {
            line: *line,
            col: 0,
            message: description.clone(),
        },
        other => ParseError {
            line: 0,
            col: 0,
            message: describe(other),
        },
    }
}

fn at(src: &str, pos: Pos, message: String) -> ParseError {
    let end = pos.offset.min(src.len());
    let start = src
        .get(..end)
        .and_then(|s| s.rfind('\n'))
        .map_or(0, |i| i + 1);
    let col = src.get(start..end).map_or(0, |s| s.chars().count() + 1);
    ParseError {
        line: pos.line,
        col,
        message,
    }
}

struct Check<'a> {
    src: &'a str,
    funcs: &'a [&'a str],
    defined: &'a HashSet<&'a str>,
    /// Variables in scope (besides `$`): Go scopes one to the end of the control structure
    /// that declares it.
    vars: Vec<String>,
}

impl Check<'_> {
    fn list(&mut self, l: &ListNode) -> Result<(), ParseError> {
        l.nodes.iter().try_for_each(|n| self.node(n))
    }

    fn node(&mut self, n: &Node) -> Result<(), ParseError> {
        match n {
            Node::List(l) => self.list(l),
            Node::Action(a) => self.pipe(&a.pipe),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                let outer = self.vars.len();
                self.pipe(&b.pipe)?;
                let inner = self.vars.len();
                self.list(&b.body)?;
                self.vars.truncate(inner);
                if let Some(l) = &b.else_body {
                    self.list(l)?;
                }
                self.vars.truncate(outer);
                Ok(())
            }
            Node::Template(t) => {
                if !self.defined.contains(t.name.as_str()) {
                    return Err(at(
                        self.src,
                        t.pos,
                        format!("no such template {:?}", t.name),
                    ));
                }
                t.pipe.as_ref().map_or(Ok(()), |p| self.pipe(p))
            }
            Node::Text(_) | Node::Define(_) | Node::Break(_) | Node::Continue(_) => Ok(()),
        }
    }

    fn pipe(&mut self, p: &PipeNode) -> Result<(), ParseError> {
        for (i, c) in p.commands.iter().enumerate() {
            // The data is maps, never methods: a value given arguments, or a value as a later
            // pipeline stage (which receives the previous result), always fails to execute.
            if let Some(first) = c.args.first()
                && !matches!(first, Expr::Identifier(..))
            {
                if c.args.len() > 1 {
                    return Err(at(
                        self.src,
                        first.pos(),
                        "a value cannot take arguments (only a function can)".into(),
                    ));
                }
                if i > 0 {
                    return Err(at(
                        self.src,
                        first.pos(),
                        format!("non executable command in pipeline stage {}", i + 1),
                    ));
                }
            }
            c.args.iter().try_for_each(|e| self.expr(e))?;
        }
        for v in &p.decl {
            if !p.is_assign {
                self.vars.push(v.to_string());
            } else if !self.known(v) {
                return Err(at(self.src, p.pos, format!("undefined variable {v:?}")));
            }
        }
        Ok(())
    }

    fn known(&self, v: &str) -> bool {
        v == "$" || self.vars.iter().any(|x| x == v)
    }

    fn expr(&mut self, e: &Expr) -> Result<(), ParseError> {
        match e {
            Expr::Identifier(pos, name) => {
                let name = name.as_str();
                if BUILTINS.contains(&name) || self.funcs.contains(&name) {
                    Ok(())
                } else {
                    Err(at(self.src, *pos, format!("function {name:?} not defined")))
                }
            }
            Expr::Variable(pos, v, _) if !self.known(v) => {
                Err(at(self.src, *pos, format!("undefined variable {v:?}")))
            }
            Expr::Pipe(_, p) => self.pipe(p),
            Expr::Chain(_, inner, _) => self.expr(inner),
            _ => Ok(()),
        }
    }
}

/// Appends [`NIL_AS_EMPTY`] to every action that prints (not to `{{ $x := … }}`).
pub(crate) fn nil_prints_empty(l: &mut ListNode) {
    for n in &mut l.nodes {
        match n {
            Node::List(l) => nil_prints_empty(l),
            Node::Action(a) if a.pipe.decl.is_empty() => {
                let pos = a.pipe.pos;
                a.pipe.commands.push(CommandNode {
                    pos,
                    args: vec![Expr::Identifier(pos, NIL_AS_EMPTY.into())],
                });
            }
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                nil_prints_empty(&mut b.body);
                if let Some(e) = &mut b.else_body {
                    nil_prints_empty(e);
                }
            }
            _ => {}
        }
    }
}

/// The functions of a header template: traefik-oidc-auth's three and [`NIL_AS_EMPTY`].
pub(crate) fn header_funcs() -> FuncMap {
    let mut m = FuncMap::new();
    m.insert(
        "withPrefix".into(),
        Arc::new(|a: &[Value]| affix(a, "withPrefix", true)),
    );
    m.insert(
        "withSuffix".into(),
        Arc::new(|a: &[Value]| affix(a, "withSuffix", false)),
    );
    m.insert("mapToJsonArray".into(), Arc::new(map_to_json_array));
    m.insert(
        NIL_AS_EMPTY.into(),
        Arc::new(|a: &[Value]| match a.last() {
            None | Some(Value::Nil) => Ok(Value::String("".into())),
            Some(v) => Ok(v.clone()),
        }),
    );
    m
}

fn args<'a, const N: usize>(a: &'a [Value], name: &str) -> Result<&'a [Value; N], TemplateError> {
    a.try_into().map_err(|_| TemplateError::ArgCount {
        name: name.into(),
        expected: N,
        got: a.len(),
    })
}

/// How Go's `fmt.Sprint` prints a value inside a function, except that a missing value is
/// empty rather than `<nil>`.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// `withPrefix p v` / `withSuffix s v`: adds to a value, or to each element of a list. A
/// missing value stays missing.
fn affix(a: &[Value], name: &str, prefix: bool) -> Result<Value, TemplateError> {
    let [affix, values] = args::<2>(a, name)?;
    let affix = text(affix);
    let apply = |v: &Value| {
        let t = text(v);
        Value::String(
            if prefix {
                format!("{affix}{t}")
            } else {
                format!("{t}{affix}")
            }
            .into(),
        )
    };
    Ok(match values {
        Value::Nil => Value::Nil,
        Value::List(items) => Value::List(items.iter().map(apply).collect()),
        v => apply(v),
    })
}

/// `mapToJsonArray v`: a list as a JSON array of strings; a single value as a one-element
/// array (as traefik-oidc-auth does); a missing value as `[]`.
fn map_to_json_array(a: &[Value]) -> Result<Value, TemplateError> {
    let [values] = args::<1>(a, "mapToJsonArray")?;
    let items: Vec<Json> = match values {
        Value::Nil => Vec::new(),
        Value::List(items) => items.iter().map(|v| Json::String(text(v))).collect(),
        v => vec![Json::String(text(v))],
    };
    Ok(Value::String(Json::Array(items).to_string().into()))
}

/// A claim (or any JSON value) as a template value. JSON integers stay integers (Go would
/// print `1.7e+09` for a large one, read as float64); objects become maps.
pub(crate) fn json_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::Uint(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.as_str().into()),
        Json::Array(a) => Value::List(a.iter().map(json_value).collect()),
        Json::Object(m) => Value::Map(Arc::new(
            m.iter()
                .map(|(k, v)| (Arc::from(k.as_str()), json_value(v)))
                .collect::<BTreeMap<_, _>>(),
        )),
    }
}

/// An execution error described for the log. Messages that can quote a value from the data
/// (a claim, possibly a token) are cut to their kind.
pub(crate) fn describe(e: &TemplateError) -> String {
    match e {
        TemplateError::Exec(m) => {
            // These gotmpl messages name only types, fields, functions or template-side numbers.
            const SAFE: [&str; 9] = [
                "can't evaluate field",
                "incompatible types for comparison",
                "non-comparable type",
                "cannot index",
                "slice:",
                "call:",
                "can't give argument to non-function",
                "wrong number of args",
                "unexpected",
            ];
            if SAFE.iter().any(|p| m.starts_with(p)) {
                format!("execution error: {m}")
            } else {
                "execution error (details withheld: they may quote session data)".into()
            }
        }
        TemplateError::MissingKey { .. } => "map has no entry for a key".into(),
        TemplateError::FuncPanic { name, .. } => format!("function {name} failed"),
        other => other.to_string(),
    }
}

/// Logs a template failure once per distinct (where, cause), not on every request: a broken
/// template would otherwise flood the log at request rate. The memory is bounded.
pub(crate) fn warn_once(what: &str, cause: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let key = format!("{what}\u{0}{cause}");
    let first = match SEEN.lock() {
        Ok(mut g) => {
            let set = g.get_or_insert_with(HashSet::new);
            if set.len() >= 256 {
                set.clear();
            }
            set.insert(key)
        }
        // A poisoned lock only means another thread panicked while logging: log anyway.
        Err(_) => true,
    };
    if first {
        tracing::warn!(template = %what, error = %cause, "template failed to render (logged once per cause)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_have_line_and_column() {
        let cases: [(&str, (usize, usize)); 4] = [
            ("a\n  {{ nosuch .x }}", (2, 6)),
            ("a\nb\n{{ template \"x\" }}", (3, 4)),
            ("{{ if .x }}\n{{ end", (2, 7)),
            (
                "{{ define \"a\" }}{{ end }}{{ define \"a\" }}x{{ end }}",
                (1, 29),
            ),
        ];
        for (src, (line, col)) in cases {
            let Err(e) = parse(src, &[]) else {
                panic!("{src:?} parsed")
            };
            assert_eq!((e.line, e.col), (line, col), "{src:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("line {line}, column {col}: "))
            );
        }
        for (src, line, col) in [
            ("a\n{{ if .x }}b", 2, 1),
            ("{{ range .x }}{{ if .y }}{{ end }}", 1, 1),
            ("{{ with .x }}{{ end }}{{ end }} tail", 1, 23),
            ("x {{- else }}", 1, 3),
            ("{{ define \"d\" }}{{ else }}{{ end }}", 1, 20),
            ("{{ .a .b }}", 1, 4),
            ("{{ .a | .b }}", 1, 9),
            ("{{ .a | \"s\" }}", 1, 9),
            ("{{ $x }}", 1, 4),
            ("{{ $x = 1 }}", 1, 4),
            ("{{ if $x := .a }}{{ end }}{{ $x }}", 1, 30),
            (
                "{{ range $i, $v := .a }}{{ $w := 1 }}{{ else }}{{ $w }}{{ end }}",
                1,
                51,
            ),
            ("{{ $x := 1 }}{{ define \"d\" }}{{ $x }}{{ end }}", 1, 33),
            ("{{ if .x }}{{ break }}{{ end }}", 1, 12),
            (
                "{{ range .x }}{{ define \"d\" }}{{ continue }}{{ end }}{{ end }}",
                1,
                31,
            ),
            ("{{ block \"b\" . }}x", 1, 1),
        ] {
            let Err(e) = parse(src, &[]) else {
                panic!("{src:?} parsed")
            };
            assert_eq!((e.line, e.col), (line, col), "{src:?}: {e}");
        }
        for ok in [
            "{{ if .x }}a{{ else if .y }}b{{ else }}c{{ end }}",
            "{{ range .x }}{{ if . }}{{ break }}{{ end }}{{ continue }}{{ end }}",
            "{{ \"}}{{ end }}\" }}{{ `{{ end }}` }}{{ '}' }}{{/* {{ end }} */}}",
            "{{- /* c */ -}} {{ with .a }}{{ else with .b }}{{ end }}",
            "{{ withPrefix \"a\" .x }}{{ index .a 1 }}{{ $iffy := 1 }}{{ with $e := $iffy }}{{ end }}",
            "{{ $x := 1 }}{{ $x = 2 }}{{ if $y := $x }}{{ $y }}{{ else }}{{ $y }}{{ end }}",
            "{{ block \"b\" . }}x{{ end }}{{ define \"c\" }}{{ template \"b\" }}{{ end }}",
        ] {
            assert!(parse(ok, &HEADER_FUNCS).is_ok(), "{ok}");
            assert!(check_blocks(ok).is_ok(), "{ok}");
        }
        assert!(parse("{{ withPrefix \"a\" .x }}", &HEADER_FUNCS).is_ok());
        assert!(parse("{{ withPrefix \"a\" .x }}", &[]).is_err());
        assert!(parse(&format!("{{{{ {NIL_AS_EMPTY} .x }}}}"), &HEADER_FUNCS).is_err());
    }

    #[test]
    fn exec_messages_withhold_data() {
        let e = TemplateError::Exec("len: cannot take length of secret-value".into());
        assert!(!describe(&e).contains("secret-value"));
        let e = TemplateError::Exec("can't evaluate field x in type string".into());
        assert!(describe(&e).contains("field x in type string"));
    }

    #[test]
    fn json_values_convert() {
        let v = json_value(&serde_json::json!({"a": [1, "x", null, true, 1.5], "u": u64::MAX}));
        assert_eq!(
            v.to_string(),
            "map[a:[1 x <nil> true 1.5] u:18446744073709551615]"
        );
    }
}
