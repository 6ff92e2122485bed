//! The library's layers depend one way. Reads every `src/**/*.rs`, resolves each `crate::…`,
//! `super::…` and `self::…` path (in `use` lines and in code, comments excluded) to the file
//! that defines it, and fails on:
//! - a cycle between files (which covers cycles between modules and inside them): a module's
//!   `mod.rs` is its façade and may use its children, so children never use their parent;
//! - a top-level module using one that is not below it in [`LAYERS`] (docs/layout.md's
//!   section states the same order).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up; each may use only those in earlier rows.
const LAYERS: &[&[&str]] = &[
    &["base"],
    &["config"],
    &["checkpoint", "onnx"],
    &["graph", "random", "image"],
    &["export"],
    &["runtime"],
    &["generate", "calibrate"],
    &["verify", "package"],
    &["debug"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every library source file, as its module path (`checkpoint::torch::zip`, `graph` for
/// `graph/mod.rs`, `` for `lib.rs`). The binary (`main.rs`, `cli/`) sits above everything.
fn modules() -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src is readable").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).expect("under src");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if parts[0] == "main.rs" || parts[0] == "cli" {
            continue;
        }
        let last = parts.pop().expect("a file name");
        match last.as_str() {
            "mod.rs" | "lib.rs" => {}
            name => parts.push(name.trim_end_matches(".rs").to_string()),
        }
        out.insert(parts, f);
    }
    out
}

/// The text without comments (doc links would count as uses otherwise) and string contents.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str {
                kept.push(c);
            }
            prev = c;
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// How many inline `mod name { … }` blocks enclose each char of `code` (test modules: their
/// `super` is the file's own module, not its parent).
fn inline_depths(code: &[char]) -> Vec<usize> {
    let mut stack: Vec<bool> = Vec::new();
    let mut out = Vec::with_capacity(code.len());
    for (i, &c) in code.iter().enumerate() {
        if c == '{' {
            let before: String = code[i.saturating_sub(80)..i].iter().collect();
            let words: Vec<&str> = before.split_whitespace().rev().take(2).collect();
            stack.push(words.len() == 2 && words[1] == "mod");
        } else if c == '}' {
            stack.pop();
        }
        out.push(stack.iter().filter(|&&m| m).count());
    }
    out
}

/// Every `crate::` / `super::` / `self::` path in the code with its inline-module depth:
/// `use` trees (`crate::{a::b, c::{d, e}}`) expanded into flat paths, and paths in code.
fn paths_in(code: &str) -> Vec<(Vec<String>, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let depth = inline_depths(&chars);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if boundary && code_at(&chars, i, "use ") {
            let end = (i..chars.len())
                .find(|&j| chars[j] == ';')
                .unwrap_or(chars.len());
            let tree: String = chars[i + 4..end]
                .iter()
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let mut flat = Vec::new();
            expand(&tree, &mut Vec::new(), &mut flat);
            paths.extend(flat.into_iter().map(|p| (p, depth[i])));
            i = end;
            continue;
        }
        let after_colons = i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':';
        if boundary
            && !after_colons
            && ["crate::", "super::", "self::"]
                .iter()
                .any(|p| code_at(&chars, i, p))
        {
            let mut j = i;
            let mut segs = Vec::new();
            loop {
                let s = j;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if s == j {
                    break;
                }
                segs.push(chars[s..j].iter().collect::<String>());
                if code_at(&chars, j, "::") {
                    j += 2;
                } else {
                    break;
                }
            }
            paths.push((segs, depth[i]));
            i = j.max(i + 1);
            continue;
        }
        i += 1;
    }
    paths
}

fn code_at(chars: &[char], i: usize, pat: &str) -> bool {
    pat.chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    // split at top-level commas
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tree[start..]);
    for item in items.into_iter().filter(|s| !s.is_empty()) {
        if let Some(brace) = item.find('{') {
            let head = item[..brace].trim().trim_end_matches("::");
            let inner = &item[brace + 1..item.rfind('}').unwrap_or(item.len())];
            let n = prefix.len();
            prefix.extend(head.split("::").filter(|s| !s.is_empty()).map(String::from));
            expand(inner, prefix, out);
            prefix.truncate(n);
        } else {
            let item = item.split(" as ").next().unwrap_or(item).trim();
            let mut p = prefix.clone();
            p.extend(item.split("::").filter(|s| !s.is_empty()).map(String::from));
            out.push(p);
        }
    }
}

/// The file a path names, seen from module `at` at inline-module depth `depth`: the longest
/// prefix of the absolute path that is a module file.
fn resolve(
    at: &[String],
    depth: usize,
    path: &[String],
    mods: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let (mut base, mut rest) = match path.first().map(String::as_str) {
        Some("crate") => (vec![], &path[1..]),
        Some("self") => (at.to_vec(), &path[1..]),
        Some("super") => {
            // Inside an inline module, the first `super` is the file's own module.
            let mut b = at.to_vec();
            if depth == 0 {
                b.pop();
            }
            (b, &path[1..])
        }
        _ => return None,
    };
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut full = base.clone();
    full.extend(rest.iter().cloned());
    longest_module(&base, &full, mods)
}

fn longest_module(
    base: &[String],
    full: &[String],
    mods: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    (base.len()..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|p| mods.contains_key(p))
}

/// Which files each file uses, by module path.
type Edges = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

fn graph() -> (Edges, BTreeMap<Vec<String>, PathBuf>) {
    let mods = modules();
    let mut edges: Edges = BTreeMap::new();
    for (m, file) in &mods {
        let text = std::fs::read_to_string(file).expect("readable");
        let e = edges.entry(m.clone()).or_default();
        for (p, depth) in paths_in(&code_of(&text)) {
            if let Some(target) = resolve(m, depth, &p, &mods) {
                if &target != m && !target.is_empty() {
                    e.insert(target);
                }
            }
        }
    }
    (edges, mods)
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_file_imports_another_that_imports_it_back() {
    let (edges, _) = graph();
    // Tarjan-free: a DFS that reports the first cycle with its path.
    fn visit(
        n: &Vec<String>,
        edges: &Edges,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for t in edges.get(n).into_iter().flatten() {
            match state.get(t).copied().unwrap_or(0) {
                0 => visit(t, edges, state, stack, cycles),
                1 => {
                    let from = stack.iter().position(|s| s == t).unwrap_or(0);
                    let mut names: Vec<String> = stack[from..].iter().map(|s| show(s)).collect();
                    names.push(show(t));
                    cycles.push(names.join(" → "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            visit(n, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn top_level_modules_use_only_the_layers_below() {
    let (edges, mods) = graph();
    let tier = |m: &str| LAYERS.iter().position(|row| row.contains(&m));
    let mut wrong = Vec::new();
    for top in mods.keys().filter_map(|m| m.first()) {
        assert!(
            tier(top).is_some(),
            "module `{top}` is in no row of LAYERS: place it"
        );
    }
    for (from, targets) in &edges {
        let Some(f) = from.first() else { continue };
        for t in targets {
            let Some(to) = t.first() else { continue };
            if to == f {
                continue;
            }
            if tier(to) >= tier(f) {
                wrong.push(format!("{} uses {}", show(from), show(t)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses that go sideways or upwards:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_use_trees_and_inline_paths() {
    let code = code_of(
        "use crate::{a::b, c::{d, e as f}};\n// crate::hidden::x\nlet x = super::g::h(crate::i::j);\nlet s = \"crate::k\";",
    );
    let paths = paths_in(&code);
    let flat: Vec<String> = paths.iter().map(|(p, _)| p.join("::")).collect();
    for want in [
        "crate::a::b",
        "crate::c::d",
        "crate::c::e",
        "super::g::h",
        "crate::i::j",
    ] {
        assert!(flat.contains(&want.to_string()), "{want} in {flat:?}");
    }
    assert!(!flat
        .iter()
        .any(|p| p.contains("hidden") || p.ends_with('k')));
    // On the real tree: uses through `super::`, `crate::` and `use` trees are all seen.
    let (edges, _) = graph();
    let has = |from: &str, to: &str| {
        let split = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
        edges
            .get(&split(from))
            .is_some_and(|t| t.contains(&split(to)))
    };
    assert!(has("graph::trunk", "graph::attention"));
    assert!(has("runtime::ort", "runtime::model"));
    assert!(has("verify::model", "verify::options"));
    assert!(has("onnx::writer", "base::files"));
    let nested = code_of("mod tests {\n    use super::*;\n}\nuse super::x;");
    let depths: Vec<usize> = paths_in(&nested).into_iter().map(|(_, d)| d).collect();
    assert_eq!(depths, vec![1, 0]);
}
