//! What a header template can read: which top-level claims and which tokens.
//!
//! The session cookie keeps only the claims something reads (and a token only when a header
//! prints it), so this analysis must never under-report. It follows the parse tree with an
//! abstract "where can this value come from" for dot, variables and pipeline results: a field
//! chain from the root names a claim; `with`/`range` move dot into it; anything it cannot
//! follow (the whole data `{{ . }}`, `{{ .claims }}`, `index` with a computed key, a variable
//! it does not know, recursion through `{{ template }}`) counts as reading everything it could
//! reach.

use super::TokenField;
use gotmpl::parse::{DefineNode, Expr, ListNode, Node, PipeNode, SmolStr};
use std::collections::{BTreeSet, HashMap};

/// Claims and tokens a template may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Every claim (the analysis could not narrow it down).
    pub all_claims: bool,
    /// Top-level claim names read.
    pub claims: BTreeSet<String>,
    /// Tokens read, indexed as [`TokenField`]: access, ID, refresh.
    pub tokens: [bool; 3],
}

impl Reads {
    /// Whether `t` may be read.
    pub fn token(&self, t: TokenField) -> bool {
        self.tokens[token_index(t)]
    }
}

fn token_index(t: TokenField) -> usize {
    match t {
        TokenField::Access => 0,
        TokenField::Id => 1,
        TokenField::Refresh => 2,
    }
}

/// Where a value can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    /// The whole data: `{ claims, accessToken, idToken, refreshToken }`.
    Root,
    /// The claims map.
    Claims,
    /// Somewhere inside the named claim.
    Claim(String),
    /// Somewhere inside some claim (which one is unknown).
    SomeClaim,
    /// A token.
    Token(TokenField),
    /// Unknown: anything.
    Any,
}

/// A union of atoms; empty means "no session data" (literals, missing fields).
type Reach = Vec<Atom>;

fn union(mut a: Reach, b: Reach) -> Reach {
    for x in b {
        if !a.contains(&x) {
            a.push(x);
        }
    }
    a
}

fn field(atom: &Atom, name: &str) -> Option<Atom> {
    match atom {
        Atom::Root => match name {
            "claims" => Some(Atom::Claims),
            "accessToken" => Some(Atom::Token(TokenField::Access)),
            "idToken" => Some(Atom::Token(TokenField::Id)),
            "refreshToken" => Some(Atom::Token(TokenField::Refresh)),
            _ => None,
        },
        Atom::Claims => Some(Atom::Claim(name.to_string())),
        Atom::Claim(n) => Some(Atom::Claim(n.clone())),
        Atom::SomeClaim => Some(Atom::SomeClaim),
        // A field of a token fails at run time; the token is still read to find that out.
        Atom::Token(t) => Some(Atom::Token(*t)),
        Atom::Any => Some(Atom::Any),
    }
}

fn fields(base: &Reach, names: &[impl AsRef<str>]) -> Reach {
    base.iter()
        .filter_map(|a| {
            names
                .iter()
                .try_fold(a.clone(), |a, n| field(&a, n.as_ref()))
        })
        .fold(Vec::new(), |acc, a| union(acc, vec![a]))
}

/// The elements (or map values) of a ranged value.
fn elements(r: &Reach) -> Reach {
    r.iter()
        .filter_map(|a| match a {
            Atom::Root | Atom::Any => Some(Atom::Any),
            Atom::Claims | Atom::SomeClaim => Some(Atom::SomeClaim),
            Atom::Claim(n) => Some(Atom::Claim(n.clone())),
            Atom::Token(_) => None,
        })
        .fold(Vec::new(), |acc, a| union(acc, vec![a]))
}

/// Analyses a template body with its `{{ define }}`s.
pub fn analyse(tree: &ListNode, defines: &[DefineNode]) -> Reads {
    let mut a = Analyser {
        reads: Reads::default(),
        vars: HashMap::from([(SmolStr::from("$"), vec![Atom::Root])]),
        defines,
        calling: Vec::new(),
    };
    a.list(tree, &vec![Atom::Root]);
    a.reads
}

struct Analyser<'a> {
    reads: Reads,
    /// Variables, flow-insensitively: a name declared twice holds the union.
    vars: HashMap<SmolStr, Reach>,
    defines: &'a [DefineNode],
    /// Templates being analysed (to stop on recursion).
    calling: Vec<SmolStr>,
}

impl Analyser<'_> {
    fn mark(&mut self, r: &Reach) {
        for a in r {
            match a {
                Atom::Root | Atom::Any => {
                    self.reads.all_claims = true;
                    self.reads.tokens = [true; 3];
                }
                Atom::Claims | Atom::SomeClaim => self.reads.all_claims = true,
                Atom::Claim(n) => {
                    self.reads.claims.insert(n.clone());
                }
                Atom::Token(t) => self.reads.tokens[token_index(*t)] = true,
            }
        }
    }

    fn declare(&mut self, name: &SmolStr, r: Reach) {
        let old = self.vars.remove(name).unwrap_or_default();
        self.vars.insert(name.clone(), union(old, r));
    }

    fn list(&mut self, l: &ListNode, dot: &Reach) {
        for n in &l.nodes {
            self.node(n, dot);
        }
    }

    fn node(&mut self, n: &Node, dot: &Reach) {
        match n {
            Node::List(l) => self.list(l, dot),
            Node::Action(a) => {
                self.pipe(&a.pipe, dot);
            }
            Node::If(b) => {
                self.pipe(&b.pipe, dot);
                self.list(&b.body, dot);
                if let Some(e) = &b.else_body {
                    self.list(e, dot);
                }
            }
            Node::With(b) => {
                let inner = self.pipe(&b.pipe, dot);
                self.list(&b.body, &inner);
                if let Some(e) = &b.else_body {
                    self.list(e, dot);
                }
            }
            Node::Range(b) => {
                let r = self.commands(&b.pipe, dot);
                let elems = elements(&r);
                match b.pipe.decl.as_slice() {
                    [] => {}
                    [v] => self.declare(v, elems.clone()),
                    // `$i, $v := range`: the key or index is a claim name or a number; it
                    // reads nothing the value does not.
                    [k, v, ..] => {
                        self.declare(k, Vec::new());
                        self.declare(v, elems.clone());
                    }
                }
                self.list(&b.body, &elems);
                if let Some(e) = &b.else_body {
                    self.list(e, dot);
                }
            }
            Node::Template(t) => {
                let arg = match &t.pipe {
                    Some(p) => self.pipe(p, dot),
                    None => Vec::new(),
                };
                let body = self.defines.iter().find(|d| d.name == t.name);
                match body {
                    Some(d) if !self.calling.contains(&t.name) => {
                        self.calling.push(t.name.clone());
                        self.list(&d.body, &arg);
                        self.calling.pop();
                    }
                    // Recursion (or a name the load-time check would have refused): whatever
                    // the argument reaches may be read.
                    _ => self.mark(&arg),
                }
            }
            Node::Text(_) | Node::Define(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }

    /// A pipeline, declaring its variables.
    fn pipe(&mut self, p: &PipeNode, dot: &Reach) -> Reach {
        let r = self.commands(p, dot);
        for v in &p.decl {
            self.declare(v, r.clone());
        }
        r
    }

    fn commands(&mut self, p: &PipeNode, dot: &Reach) -> Reach {
        let mut piped: Option<Reach> = None;
        for c in &p.commands {
            let r = match c.args.split_first() {
                Some((Expr::Identifier(_, f), args)) => self.call(f, args, piped.take(), dot),
                Some((first, rest)) => {
                    let mut r = self.expr(first, dot);
                    // A value with arguments is an execution error; read them anyway.
                    for e in rest {
                        r = union(r, self.expr(e, dot));
                    }
                    union(r, piped.take().unwrap_or_default())
                }
                None => piped.take().unwrap_or_default(),
            };
            piped = Some(r);
        }
        piped.unwrap_or_default()
    }

    /// A function's result may hold anything its arguments held (`and`, `or`, `index`,
    /// `slice`, `withPrefix`… return or derive from them).
    fn call(&mut self, f: &str, args: &[Expr], piped: Option<Reach>, dot: &Reach) -> Reach {
        if f == "index"
            && piped.is_none()
            && let Some((base, keys)) = args.split_first()
        {
            let literal: Option<Vec<&str>> = keys
                .iter()
                .map(|k| match k {
                    Expr::String(_, s) => Some(&**s),
                    _ => None,
                })
                .collect();
            if let Some(keys) = literal.filter(|k| !k.is_empty()) {
                // `index .claims "email"` reads exactly `.claims.email`.
                let b = self.expr_unmarked(base, dot);
                let r = fields(&b, &keys);
                self.mark(&r);
                return r;
            }
        }
        let mut r = piped.unwrap_or_default();
        for e in args {
            r = union(r, self.expr(e, dot));
        }
        if f == "index" || f == "call" {
            // A computed key or a called value: the result may be anything inside.
            r = elements(&r);
            self.mark(&r);
        }
        r
    }

    /// An operand; what it reaches counts as read.
    fn expr(&mut self, e: &Expr, dot: &Reach) -> Reach {
        let r = self.expr_unmarked(e, dot);
        self.mark(&r);
        r
    }

    fn expr_unmarked(&mut self, e: &Expr, dot: &Reach) -> Reach {
        match e {
            Expr::Dot(_) => dot.clone(),
            Expr::Field(_, names) => fields(dot, names),
            Expr::Variable(_, name, names) => {
                let base = self.vars.get(name).cloned().unwrap_or(vec![Atom::Any]);
                fields(&base, names)
            }
            Expr::Pipe(_, p) => self.pipe(p, dot),
            Expr::Chain(_, inner, names) => {
                let base = self.expr_unmarked(inner, dot);
                fields(&base, names)
            }
            // A function named without arguments (`{{ .x | len }}` is a call, handled above).
            Expr::Identifier(_, f) => self.call(f, &[], None, dot),
            Expr::String(..) | Expr::Number(..) | Expr::Bool(..) | Expr::Nil(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine;
    use super::*;

    fn reads(src: &str) -> Reads {
        let p = engine::parse(src, &engine::HEADER_FUNCS).unwrap_or_else(|e| panic!("{src}: {e}"));
        analyse(&p.tree, &p.defines)
    }

    fn claims(src: &str) -> (bool, Vec<String>) {
        let r = reads(src);
        (r.all_claims, r.claims.into_iter().collect())
    }

    #[test]
    fn claims_table() {
        let some = |v: &[&str]| (false, v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let all = (true, Vec::new());
        let cases = [
            ("{{ .claims.email }}", some(&["email"])),
            ("{{ .claims.org.id }}", some(&["org"])),
            ("static", some(&[])),
            ("{{ with .claims.org }}{{ .id }}{{ end }}", some(&["org"])),
            (
                "{{ if .claims.a }}{{ .claims.b }}{{ else if .claims.c }}{{ else }}{{ .claims.d }}{{ end }}",
                some(&["a", "b", "c", "d"]),
            ),
            (
                "[{{with .claims.groups}}{{ range $i, $g := . }}{{if $i}},{{end}}\"{{js $g}}\"{{end}}{{end}}]",
                some(&["groups"]),
            ),
            (
                "{{ range .claims.roles }}{{ .name }}{{ end }}",
                some(&["roles"]),
            ),
            ("{{ $x := .claims.a }}{{ $x.b }}", some(&["a"])),
            ("{{ index .claims \"email\" }}", some(&["email"])),
            ("{{ index .claims.org \"id\" }}", some(&["org"])),
            (
                "{{ .claims.groups | withPrefix \"r:\" | mapToJsonArray }}",
                some(&["groups"]),
            ),
            ("{{ and .claims.a .claims.b | not }}", some(&["a", "b"])),
            ("{{ printf \"%s\" (.claims.a) }}", some(&["a"])),
            ("{{ $.claims.a }}", some(&["a"])),
            ("{{ .accessToken }}", some(&[])),
            // Whatever it cannot narrow down reads everything.
            ("{{ . }}", all.clone()),
            ("{{ $ }}", all.clone()),
            ("{{ .claims }}", all.clone()),
            ("{{ range .claims }}{{ end }}", all.clone()),
            (
                "{{ range $k, $v := .claims }}{{ $k }}{{ end }}",
                all.clone(),
            ),
            ("{{ $k := \"email\" }}{{ index .claims $k }}", all.clone()),
            ("{{ with .claims }}{{ .email }}{{ end }}", all.clone()),
            ("{{ len .claims }}", all.clone()),
            (
                "{{ define \"t\" }}{{ .x }}{{ end }}{{ template \"t\" .claims.a }}",
                some(&["a"]),
            ),
            (
                "{{ define \"t\" }}{{ template \"t\" .claims }}{{ end }}{{ template \"t\" . }}",
                all.clone(),
            ),
        ];
        for (src, want) in cases {
            let got = claims(src);
            if want.0 {
                // Everything: the names beside it do not matter.
                assert!(got.0, "{src}: {got:?}");
            } else {
                assert_eq!(got, want, "{src}");
            }
        }
    }

    #[test]
    fn tokens_table() {
        let cases = [
            ("{{ .accessToken }}", [true, false, false]),
            (
                "Bearer {{ .idToken | withPrefix \"x\" }}",
                [false, true, false],
            ),
            ("{{ if .refreshToken }}y{{ end }}", [false, false, true]),
            ("{{ .claims.email }}", [false, false, false]),
            ("{{ . }}", [true, true, true]),
            (
                "{{ range $k, $v := $ }}{{ $v }}{{ end }}",
                [true, true, true],
            ),
            (
                "{{ with $t := .accessToken }}{{ $t }}{{ end }}",
                [true, false, false],
            ),
        ];
        for (src, want) in cases {
            assert_eq!(reads(src).tokens, want, "{src}");
        }
    }
}
