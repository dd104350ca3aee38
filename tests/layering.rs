//! The source's shape (issue 7): no import cycle between the modules of `src/`, and no
//! source file over 800 lines.
//!
//! The module graph is read from the text, not from the compiler: an edge `a -> b` is a
//! path in module `a` that starts with `crate::`, `super::` or `self::` (in a `use`, an
//! expression or a type; `use` groups are expanded) and names module `b` or an item of
//! it (the longest module the path names). A child naming its parent's items is an edge;
//! a parent's `mod child;` is not, and neither are bare paths (`child::f`), which is how
//! a parent reaches into its own children. Comments, doc comments, string and char
//! literals, `pub(in path)` visibilities, `#[cfg(test)] mod` blocks and test-only module
//! files are left out: they are not dependencies of the proxy. `src/main.rs` is the
//! binary's crate root (it reaches the library by name), so it is not in the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

type Module = Vec<String>;

/// `a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs` is the crate root.
fn module_of(rel: &Path) -> Module {
    let mut m: Module = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if m.last().is_some_and(|l| l == "mod" || l == "lib") {
        m.pop();
    }
    m
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// The source with comments and the contents of string and char literals blanked
/// (newlines kept, so lines still count).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if at(i) == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
            && (at(i + 1) == '"' || at(i + 1) == '#')
            && {
                let mut k = i + 1;
                while at(k) == '#' {
                    k += 1;
                }
                at(k) == '"'
            }
        {
            // A raw string: r"..." or r#"..."#.
            let mut hashes = 0;
            i += 1;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            out.push('"');
            i += 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
            out.push('"');
        } else if at(i) == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if at(i) == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A char literal ('x', '\n', '\u{7f}'); a lifetime has no closing quote.
            out.push('\'');
            i += 1;
            if at(i) == '\\' {
                i += 1;
            }
            i += 1;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

struct Tok {
    text: String,
    line: usize,
}

fn tokens(clean: &str) -> Vec<Tok> {
    let c: Vec<char> = clean.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok {
                text: c[start..i].iter().collect(),
                line,
            });
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Tok {
                text: ch.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// One path of one file that names a module of the crate.
struct Use {
    from: Module,
    path: Vec<String>,
    line: usize,
}

/// What one file declares and uses.
#[derive(Default)]
struct Scan {
    uses: Vec<Use>,
    inline_modules: Vec<Module>,
    /// `#[cfg(test)] mod x;`: module files that exist only in tests.
    test_modules: Vec<Module>,
}

fn is(toks: &[Tok], i: usize, text: &str) -> bool {
    toks.get(i).is_some_and(|t| t.text == text)
}

/// The index after the bracket group that opens at `i` (`(`, `[` or `{`).
fn skip_group(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0usize;
    while let Some(t) = toks.get(i) {
        match t.text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

fn is_ident(t: &Tok) -> bool {
    t.text
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The paths of the use tree (or plain path) that starts at `i`, each prefixed with
/// `prefix`; and the index after it.
fn path_tree(toks: &[Tok], mut i: usize, prefix: &[String]) -> (Vec<Vec<String>>, usize) {
    let mut segs = prefix.to_vec();
    loop {
        match toks.get(i) {
            Some(t) if t.text == "{" => {
                let mut all = Vec::new();
                i += 1;
                while toks.get(i).is_some_and(|t| t.text != "}") {
                    if is(toks, i, ",") {
                        i += 1;
                        continue;
                    }
                    let (paths, next) = path_tree(toks, i, &segs);
                    all.extend(paths);
                    i = next.max(i + 1);
                    if is(toks, i, "as") {
                        i += 2;
                    }
                }
                return (all, i + 1);
            }
            Some(t) if t.text == "*" => return (vec![segs], i + 1),
            Some(t) if is_ident(t) => {
                // `self` inside a group names the group's prefix itself.
                if t.text != "self" || segs.is_empty() {
                    segs.push(t.text.clone());
                }
                i += 1;
                if is(toks, i, "::") {
                    i += 1;
                } else {
                    return (vec![segs], i);
                }
            }
            _ => return (vec![segs], i),
        }
    }
}

fn scan(file_module: &Module, src: &str) -> Scan {
    let toks = tokens(&strip(src));
    let mut out = Scan::default();
    // Inline modules open at a brace depth and close when it is reached again.
    let mut stack: Vec<(Module, usize)> = vec![(file_module.clone(), 0)];
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(t) = toks.get(i) {
        let cur = stack.last().map(|s| s.0.clone()).unwrap_or_default();
        match t.text.as_str() {
            "#" if is(&toks, i + 1, "[")
                && is(&toks, i + 2, "cfg")
                && is(&toks, i + 3, "(")
                && is(&toks, i + 4, "test")
                && is(&toks, i + 5, ")")
                && is(&toks, i + 6, "]") =>
            {
                // Skip further attributes and a visibility to see what item this is.
                let mut k = i + 7;
                while is(&toks, k, "#") {
                    k = skip_group(&toks, k + 1);
                }
                if is(&toks, k, "pub") {
                    k += 1;
                    if is(&toks, k, "(") {
                        k = skip_group(&toks, k);
                    }
                }
                if is(&toks, k, "mod") {
                    if let Some(n) = toks.get(k + 1) {
                        if is(&toks, k + 2, "{") {
                            i = skip_group(&toks, k + 2);
                            continue;
                        }
                        let mut m = cur.clone();
                        m.push(n.text.clone());
                        out.test_modules.push(m);
                    }
                }
                i += 7;
            }
            "pub" if is(&toks, i + 1, "(") && is(&toks, i + 2, "in") => {
                i = skip_group(&toks, i + 1);
            }
            "mod" if is(&toks, i + 2, "{") => {
                let mut m = cur.clone();
                m.push(toks[i + 1].text.clone());
                out.inline_modules.push(m.clone());
                stack.push((m, depth));
                depth += 1;
                i += 3;
            }
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                depth = depth.saturating_sub(1);
                if stack.len() > 1 && stack.last().is_some_and(|s| s.1 == depth) {
                    stack.pop();
                }
                i += 1;
            }
            "crate" | "super" | "self"
                if is(&toks, i + 1, "::") && !(i > 0 && is(&toks, i - 1, "::")) =>
            {
                let (paths, next) = path_tree(&toks, i, &[]);
                for path in paths {
                    out.uses.push(Use {
                        from: cur.clone(),
                        path,
                        line: t.line,
                    });
                }
                i = next.max(i + 1);
            }
            _ => i += 1,
        }
    }
    out
}

/// The longest module of `modules` that `path`, written in module `from`, names.
fn resolve(modules: &BTreeSet<Module>, from: &[String], path: &[String]) -> Option<Module> {
    let mut segs = path.iter().peekable();
    let mut base: Module = match segs.next()?.as_str() {
        "crate" => Vec::new(),
        "self" => from.to_vec(),
        "super" => from.get(..from.len().checked_sub(1)?)?.to_vec(),
        _ => return None,
    };
    while segs.peek().is_some_and(|s| *s == "super") {
        base.pop()?;
        segs.next();
    }
    let full: Module = base.into_iter().chain(segs.cloned()).collect();
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| modules.contains(m))
}

/// Where an edge was first seen: file, line and the path as written.
type Edges = BTreeMap<Module, BTreeMap<Module, String>>;

/// The module graph of the files (`(path relative to src/, text)`).
fn graph(files: &[(PathBuf, String)]) -> Edges {
    let mut modules = BTreeSet::new();
    let mut scans = Vec::new();
    for (rel, text) in files {
        if rel == Path::new("main.rs") {
            continue;
        }
        let m = module_of(rel);
        let s = scan(&m, text);
        modules.insert(m);
        modules.extend(s.inline_modules.iter().cloned());
        scans.push((rel, s));
    }
    let test_only: Vec<Module> = scans
        .iter()
        .flat_map(|(_, s)| s.test_modules.iter().cloned())
        .collect();
    let in_tests = |m: &Module| test_only.iter().any(|t| m.starts_with(t));
    modules.retain(|m| !in_tests(m));
    let mut edges = Edges::new();
    for m in &modules {
        edges.entry(m.clone()).or_default();
    }
    for (rel, s) in &scans {
        for u in &s.uses {
            if in_tests(&u.from) {
                continue;
            }
            let Some(to) = resolve(&modules, &u.from, &u.path) else {
                continue;
            };
            if to != u.from {
                let at = format!("src/{}:{} `{}`", rel.display(), u.line, u.path.join("::"));
                edges
                    .entry(u.from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(at);
            }
        }
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &Edges) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Module) {
        t.index.insert(v, (t.next, t.next));
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flat_map(|e| e.keys()) {
            if !t.index.contains_key(w) {
                visit(t, w);
                let low = t.index[w].1;
                let e = t.index.get_mut(v).unwrap();
                e.1 = e.1.min(low);
            } else if t.on.contains(w) {
                let idx = t.index[w].0;
                let e = t.index.get_mut(v).unwrap();
                e.1 = e.1.min(idx);
            }
        }
        if t.index[v].0 == t.index[v].1 {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn report(edges: &Edges, cycles: &[Vec<Module>]) -> String {
    let mut s = String::new();
    for comp in cycles {
        let names: Vec<String> = comp.iter().map(|m| name(m)).collect();
        s.push_str(&format!("cycle: {}\n", names.join(", ")));
        for from in comp {
            for (to, at) in edges.get(from).into_iter().flatten() {
                if comp.contains(to) {
                    s.push_str(&format!("  {} -> {}  ({at})\n", name(from), name(to)));
                }
            }
        }
    }
    s
}

fn sources() -> Vec<(PathBuf, String)> {
    let dir = src_dir();
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(&dir).unwrap().to_path_buf(), text)
        })
        .collect()
}

#[test]
fn no_import_cycles_between_modules() {
    let files = sources();
    assert!(files.len() > 20, "expected the crate's sources in src/");
    let edges = graph(&files);
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "modules that depend on each other (move the shared code below both, or invert \
         the dependency):\n{}",
        report(&edges, &found)
    );
}

#[test]
fn no_source_file_over_800_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(p, text)| format!("src/{}: {} lines", p.display(), text.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by concern):\n{}",
        long.join("\n")
    );
}

/// The runtime is named in one module (`src/rt/`), so that a runtime port changes one
/// place: any other file that names `glommio` in code (comments aside) fails here.
#[test]
fn only_the_rt_module_names_the_runtime() {
    let named: Vec<String> = sources()
        .iter()
        .filter(|(p, _)| !p.starts_with("rt"))
        .filter(|(_, text)| strip(text).contains("glommio"))
        .map(|(p, _)| format!("src/{}", p.display()))
        .collect();
    assert!(
        named.is_empty(),
        "these files use glommio directly; go through crate::rt instead:\n{}",
        named.join("\n")
    );
}

/// The reader itself: what counts as a dependency and what does not.
#[test]
fn the_graph_reader_sees_paths_not_comments() {
    let files: Vec<(PathBuf, String)> = [
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        (
            "a/mod.rs",
            r#"//! Handed to `crate::c` by the caller.
mod inner;
pub(in crate::c) fn f() {}
/* crate::c::g() */
const S: &str = "crate::c";
const Q: char = '"';
fn g<'a>(x: &'a str) -> &'a str { let _ = inner::h(); x }
#[cfg(test)]
#[allow(dead_code)]
mod tests {
    use crate::c::*;
    fn t() { let _ = '}'; }
}
#[cfg(test)]
mod fixtures;
"#,
        ),
        ("a/inner.rs", "pub fn h() { super::super::b::k() }\n"),
        ("a/fixtures.rs", "use crate::c::x;\n"),
        (
            "b.rs",
            "use crate::{c::{self, y as z}, a::f};\nmod deep { pub fn k() { super::k() } }\n",
        ),
        ("c.rs", "pub fn y() { r#\"crate::b\"#; }\n"),
    ]
    .iter()
    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
    .collect();
    let edges = graph(&files);
    let got: BTreeSet<(String, String)> = edges
        .iter()
        .flat_map(|(f, tos)| tos.keys().map(move |t| (name(f), name(t))))
        .collect();
    let want: BTreeSet<(String, String)> =
        [("a::inner", "b"), ("b", "c"), ("b", "a"), ("b::deep", "b")]
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
    assert_eq!(got, want);
    assert!(cycles(&edges).is_empty());
    assert!(!edges.contains_key(&vec!["a".to_string(), "fixtures".to_string()]));

    // A child naming its parent's items closes a cycle through the parent:
    // c -> b::deep -> b -> c.
    let mut with_cycle = files;
    for (p, t) in &mut with_cycle {
        if p == Path::new("c.rs") {
            *t = "fn y() { super::b::deep::k() }\n".into();
        }
    }
    let edges = graph(&with_cycle);
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "{}", report(&edges, &found));
    assert_eq!(found[0].len(), 3, "{}", report(&edges, &found));
}
