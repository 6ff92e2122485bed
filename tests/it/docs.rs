//! The README and `docs/*.md` against the binary and the tree: every `igpt-onnx` command and
//! `--flag` shown in code (fenced blocks and inline code) is in that command's `--help`, every
//! repository path the text names exists, and every relative Markdown link points at a file —
//! and, with `#anchor`, at one of its headings.
//!
//! An invocation is the binary (`igpt-onnx`, `…/igpt-onnx`, `$bin`) followed by a command and
//! its arguments, up to a comment, a pipe or the end of the (`\`-continued) line; inline code
//! that starts with a command name followed by a flag (`generate --ort-cache DIR`) counts too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common;

/// `README.md` and every `docs/*.md`, as (path relative to the root, text), sorted.
fn pages() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).expect("read page");
            (n, text)
        })
        .collect()
}

/// Pieces of a page with the line each starts on (1-based).
type Lines = Vec<(usize, String)>;

/// A page split into fenced code and the rest.
struct Parsed {
    /// Logical lines of fenced blocks (`\` continuations joined).
    fenced: Lines,
    /// Inline code spans outside fences, with the line they open on.
    inline: Lines,
    /// Text outside fences with inline code blanked, one entry per line.
    prose: Lines,
    /// Every line outside fences, as written.
    outside: Lines,
}

/// The fence a line opens or closes (its character and length), if any.
fn fence(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None;
    }
    let c = t.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = t.chars().take_while(|&x| x == c).count();
    (n >= 3).then_some((c, n))
}

fn parse(text: &str) -> Parsed {
    let mut fenced = Vec::new();
    let mut outside = Vec::new();
    let mut open: Option<(char, usize)> = None;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        match (open, fence(line)) {
            (None, Some(f)) => open = Some(f),
            (Some((c, len)), Some((c2, len2))) if c == c2 && len2 >= len => {
                if let Some(p) = pending.take() {
                    fenced.push(p);
                }
                open = None;
            }
            (Some(_), _) => {
                let (start, mut joined) = pending.take().unwrap_or((n, String::new()));
                let trimmed = line.trim_end();
                match trimmed.strip_suffix('\\') {
                    Some(head) => {
                        joined.push_str(head);
                        joined.push(' ');
                        pending = Some((start, joined));
                    }
                    None => {
                        joined.push_str(trimmed);
                        fenced.push((start, joined));
                    }
                }
            }
            (None, None) => outside.push((n, line.to_string())),
        }
    }
    if let Some(p) = pending {
        fenced.push(p);
    }
    let (inline, prose) = inline_code(&outside);
    Parsed {
        fenced,
        inline,
        prose,
        outside,
    }
}

/// Inline code spans (a run of backticks up to the next run of the same length, across line
/// breaks of a paragraph), and the lines with those spans blanked out.
fn inline_code(lines: &[(usize, String)]) -> (Lines, Lines) {
    // One string with a line number per char, so a span can cross lines.
    let mut chars: Vec<(char, usize)> = Vec::new();
    for (n, line) in lines {
        chars.extend(line.chars().map(|c| (c, *n)));
        chars.push(('\n', *n));
    }
    let run = |at: usize| chars[at..].iter().take_while(|(c, _)| *c == '`').count();
    let mut spans = Vec::new();
    let mut blank = vec![false; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        if chars[i].0 != '`' {
            i += 1;
            continue;
        }
        let n = run(i);
        // The closing run: exactly n backticks; a blank line ends the paragraph.
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j].0 == '\n' && chars.get(j + 1).map(|c| c.0) == Some('\n') {
                break;
            }
            if chars[j].0 == '`' {
                let m = run(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                let body: String = chars[i + n..j]
                    .iter()
                    .map(|(c, _)| if *c == '\n' { ' ' } else { *c })
                    .collect();
                spans.push((chars[i].1, body.trim().to_string()));
                for b in blank.iter_mut().take(j + n).skip(i) {
                    *b = true;
                }
                i = j + n;
            }
            None => i += n,
        }
    }
    let mut prose: BTreeMap<usize, String> =
        lines.iter().map(|(n, _)| (*n, String::new())).collect();
    for (k, (c, n)) in chars.iter().enumerate() {
        if *c != '\n' {
            prose
                .get_mut(n)
                .expect("line")
                .push(if blank[k] { ' ' } else { *c });
        }
    }
    (spans, prose.into_iter().collect())
}

/// What the binary says it takes: its commands, and each command's flags.
struct Help {
    commands: BTreeSet<String>,
    top: BTreeSet<String>,
    flags: BTreeMap<String, BTreeSet<String>>,
}

/// The `--long` flags of the option lines of a `--help` text (the part before the description).
fn help_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let t = line.trim_start();
        if !t.starts_with('-') {
            continue;
        }
        let spec = t.split("  ").next().unwrap_or(t);
        for word in spec.split([' ', ',', '=']) {
            if let Some(f) = flag(word) {
                flags.insert(f);
            }
        }
    }
    flags
}

/// The names under `Commands:` in a `--help` text (`help` left out).
fn help_commands(help: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
        } else if in_commands && line.starts_with("  ") {
            let name = line.split_whitespace().next().unwrap_or("");
            if name != "help" {
                commands.push(name.to_string());
            }
        } else if !line.trim().is_empty() {
            in_commands = false;
        }
    }
    commands
}

/// Every command and subcommand (`debug precision`, one name with its space) with its flags.
fn help() -> Help {
    let (code, top, err) = common::cli(&["--help"]);
    assert_eq!(code, 0, "igpt-onnx --help: {err}");
    let mut flags = BTreeMap::new();
    let mut pending: Vec<String> = help_commands(&top);
    assert!(
        pending.iter().any(|c| c == "export"),
        "no commands in:\n{top}"
    );
    while let Some(c) = pending.pop() {
        let mut args: Vec<&str> = c.split(' ').collect();
        args.push("--help");
        let (code, out, err) = common::cli(&args);
        assert_eq!(code, 0, "igpt-onnx {c} --help: {err}");
        pending.extend(help_commands(&out).iter().map(|sub| format!("{c} {sub}")));
        flags.insert(c, help_flags(&out));
    }
    Help {
        commands: flags.keys().cloned().collect(),
        top: help_flags(&top),
        flags,
    }
}

/// `--name` at the start of `word` (after brackets or quotes), without `=value` or punctuation.
fn flag(word: &str) -> Option<String> {
    let w = word.trim_start_matches(['[', '(', '"', '\'', '`']);
    let rest = w.strip_prefix("--")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let name = name.trim_end_matches('-');
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_alphanumeric()))
        .then(|| format!("--{name}"))
}

/// Whether a word names the binary: `igpt-onnx`, a path ending in it, or `$bin`.
fn is_binary(word: &str) -> bool {
    let w = word.trim_matches(['"', '\'', '`']);
    w == "igpt-onnx" || w.ends_with("/igpt-onnx") || w == "$bin" || w == "${bin}"
}

/// A word that stands for something (`<command>`, `COMMAND`, `…`), not a command name.
fn placeholder(word: &str) -> bool {
    word.contains(['<', '…', '$', '{'])
        || word.contains("...")
        || word.chars().any(|c| c.is_ascii_uppercase())
}

/// One shown invocation: the command (`None`: the binary's own flags) and the flags given.
#[derive(Debug)]
struct Invocation {
    command: Option<String>,
    flags: Vec<String>,
}

/// Every invocation of the binary in one line of code. With `bare_command`, a line that starts
/// with a command name followed by a flag is one too; with `options_of`, a line that starts with
/// a flag is that command's.
fn invocations(
    code: &str,
    commands: &BTreeSet<String>,
    bare_command: bool,
    options_of: Option<&str>,
) -> Vec<Invocation> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut found = Vec::new();
    if let Some(command) = options_of.filter(|_| words.first().is_some_and(|w| w.starts_with("--")))
    {
        found.push(Invocation {
            command: Some(command.to_string()),
            flags: words.iter().filter_map(|w| flag(w)).collect(),
        });
    }
    let mut starts: Vec<usize> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if is_binary(w) {
            starts.push(i + 1);
        }
    }
    if bare_command && words.len() > 1 && commands.contains(words[0]) && words[1].starts_with("--")
    {
        starts.push(0);
    }
    for start in starts {
        let mut rest = words[start..].iter();
        let command = match rest.clone().next() {
            None => continue,
            Some(w) if w.starts_with('-') => None,
            Some(w) => {
                rest.next();
                let name = w.trim_end_matches([';', ',', '.', '\'', '`']).to_string();
                // A subcommand (`debug precision`) is one command with its space.
                match rest.clone().next().map(|sub| format!("{name} {sub}")) {
                    Some(both) if commands.contains(&both) => {
                        rest.next();
                        Some(both)
                    }
                    _ => Some(name),
                }
            }
        };
        let mut flags = Vec::new();
        for w in rest {
            if is_binary(w) || ["#", "|", "||", "&&", ";", ">", ">>", "2>"].contains(w) {
                break;
            }
            if let Some(f) = flag(w) {
                flags.push(f);
            }
            if w.ends_with(';') {
                break;
            }
        }
        found.push(Invocation { command, flags });
    }
    found
}

/// Problems with the commands and flags shown in one page.
fn check_invocations(page: &str, parsed: &Parsed, help: &Help) -> Vec<String> {
    let mut bad = Vec::new();
    // On `docs/<command>.md`, the flags listed under its "Options" heading are that command's.
    let page_command = page
        .strip_prefix("docs/")
        .and_then(|p| p.strip_suffix(".md"))
        .filter(|c| help.commands.contains(*c));
    let headings = headings(parsed);
    let options_of = |line: usize| {
        let section = headings.iter().rev().find(|(n, _)| *n < line);
        page_command.filter(|_| section.is_some_and(|(_, h)| h == "Options"))
    };
    let code = parsed
        .fenced
        .iter()
        .map(|(n, t)| (n, t, false))
        .chain(parsed.inline.iter().map(|(n, t)| (n, t, true)));
    for (line, text, inline) in code {
        let options_of = if inline { options_of(*line) } else { None };
        for inv in invocations(text, &help.commands, inline, options_of) {
            let known = match &inv.command {
                None => &help.top,
                Some(c) if placeholder(c) => continue,
                Some(c) => match help.flags.get(c) {
                    Some(f) => f,
                    None => {
                        bad.push(format!(
                            "{page}:{line}: `{text}`: no command `{c}` in `igpt-onnx --help`"
                        ));
                        continue;
                    }
                },
            };
            let shown = inv.command.as_deref().unwrap_or("");
            for f in inv.flags.iter().filter(|f| !known.contains(*f)) {
                bad.push(format!(
                    "{page}:{line}: `{text}`: no {f} in `igpt-onnx {shown} --help`"
                ));
            }
        }
    }
    bad
}

/// The folders whose paths the text names from the repository root.
const ROOTS: &[&str] = &["ci/", "src/", "tests/", "fixtures/", "docs/", "graphs/"];

/// Repository paths named anywhere outside fences and in fenced code: (line, path).
fn named_paths(parsed: &Parsed) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let lines = parsed.outside.iter().chain(parsed.fenced.iter());
    for (n, text) in lines {
        let chars: Vec<char> = text.chars().collect();
        for i in 0..chars.len() {
            let before = if i == 0 { ' ' } else { chars[i - 1] };
            // `./ci/x` names ci/x; `.ci/x`, `a/ci/x`, `my-ci/x` name something else.
            let dot_slash = i >= 2 && chars[i - 2] == '.' && before == '/';
            let boundary = !(before.is_alphanumeric() || "._-/$~".contains(before)) || dot_slash;
            if !boundary || (i >= 3 && dot_slash && chars[i - 3] == '.') {
                continue;
            }
            let tail: String = chars[i..].iter().collect();
            if !ROOTS.iter().any(|r| tail.starts_with(r)) {
                continue;
            }
            let path: String = tail
                .chars()
                .take_while(|c| {
                    !c.is_whitespace() && !"`'\"),;:]|[(#".contains(*c) && *c != '\u{2026}'
                })
                .collect();
            let path = path.trim_end_matches('.').to_string();
            found.push((*n, path));
        }
    }
    found
}

/// Paths in other projects' repositories that the design notes cite as sources (ONNX Runtime's
/// `docs/ContribOperators.md`, onnxruntime-genai's `src/config.h`).
const ELSEWHERE: &[&str] = &["docs/ContribOperators.md", "src/config.h"];

/// Paths that stand for many (`<case>`, `*`) or that setup creates (`.venv`, `node_modules`).
fn not_a_checked_path(path: &str) -> bool {
    ELSEWHERE.contains(&path)
        || path.contains(['<', '*', '{', '$', '\u{2026}'])
        || path.contains(".venv")
        || path.contains("node_modules")
}

fn check_paths(page: &str, parsed: &Parsed, root: &Path) -> Vec<String> {
    named_paths(parsed)
        .into_iter()
        .filter(|(_, p)| !not_a_checked_path(p) && !root.join(p).exists())
        .map(|(n, p)| format!("{page}:{n}: `{p}` does not exist"))
        .collect()
}

/// A page's headings (outside fences): (line, text).
fn headings(parsed: &Parsed) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in &parsed.outside {
        let t = line.trim_start();
        let hashes = t.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
            out.push((*n, t[hashes..].trim().to_string()));
        }
    }
    out
}

/// GitHub's anchors of a page's headings, duplicates numbered `-1`, `-2`.
fn anchors(parsed: &Parsed) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, heading) in headings(parsed) {
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let k = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *k == 0 {
            slug.clone()
        } else {
            format!("{slug}-{k}")
        });
        *k += 1;
    }
    out
}

/// Relative link targets of `[text](target)` outside code: (line, target).
fn links(parsed: &Parsed) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in &parsed.prose {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("");
            if !target.contains("://") && !target.starts_with("mailto:") && !target.is_empty() {
                found.push((*n, target.to_string()));
            }
            rest = &after[end..];
        }
    }
    found
}

fn check_links(page: &str, parsed: &Parsed, root: &Path) -> Vec<String> {
    let dir = root.join(page).parent().expect("page folder").to_path_buf();
    let mut bad = Vec::new();
    for (n, target) in links(parsed) {
        let (file, anchor) = match target.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (target.as_str(), None),
        };
        if file.is_empty() {
            if !anchors(parsed).contains(anchor.unwrap_or("")) {
                bad.push(format!(
                    "{page}:{n}: link `{target}`: no such heading on this page"
                ));
            }
            continue;
        }
        let path = dir.join(file);
        if !path.exists() {
            bad.push(format!(
                "{page}:{n}: link `{target}`: no file {}",
                path.display()
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).expect("read link target");
            if !anchors(&parse(&text)).contains(anchor) {
                bad.push(format!(
                    "{page}:{n}: link `{target}`: no heading #{anchor} there"
                ));
            }
        }
    }
    bad
}

/// Every check over one page's text.
fn check_page(page: &str, text: &str, help: &Help, root: &Path) -> Vec<String> {
    let parsed = parse(text);
    let mut bad = check_invocations(page, &parsed, help);
    bad.extend(check_paths(page, &parsed, root));
    bad.extend(check_links(page, &parsed, root));
    bad
}

#[test]
fn every_command_flag_path_and_link_in_the_docs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let help = help();
    let pages = pages();
    assert!(pages.len() > 5, "README.md and docs/*.md: {}", pages.len());
    let bad: Vec<String> = pages
        .iter()
        .flat_map(|(page, text)| check_page(page, text, &help, root))
        .collect();
    assert!(
        bad.is_empty(),
        "{} bad references in README.md / docs/:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The checks catch what they are for: a flag, a command, a script, a file and a heading that do
/// not exist, in a fence (with a continued line; a subcommand's flag), inline, in a command page's options and in
/// prose; and pass what exists.
#[test]
fn the_docs_check_finds_each_kind_of_bad_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let help = help();
    let page = "docs/export.md";
    let text = "# Title\n\n## A `cmd:PROGRAM` heading\n\n\
        ```sh\n\
        igpt-onnx export --weights ckpt/ \\\n  --no-such-flag --out out   # --also-not-checked\n\
        ./target/release/igpt-onnx verify --runtimes ort-cpu --json r.json\n\
        \"$bin\" frobnicate --x\n\
        igpt-onnx debug precision --quantize int4 --not-a-search-flag\n\
        ```\n\n\
        Run `igpt-onnx generate --model m.onnx --greedy`, `generate --bogus-inline`, then\n\
        `./ci/no-such-script.sh` and `ci/test.sh`, not .ci/run; see [here](verify.md#options),\n\
        [there](missing.md), [self](#a-cmdprogram-heading) and [gone](verify.md#no-such-heading).\n\
        `--not-checked-outside-options`\n\n\
        ## Options\n\n\
        `--weights PATH`, `--out DIR --head all` and `--not-an-export-flag X`.\n";
    let bad = check_page(page, text, &help, root);
    let expected = [
        ("6: ", "no --no-such-flag in `igpt-onnx export --help`"),
        ("9: ", "no command `frobnicate` in `igpt-onnx --help`"),
        (
            "10: ",
            "no --not-a-search-flag in `igpt-onnx debug precision --help`",
        ),
        ("13: ", "no --bogus-inline in `igpt-onnx generate --help`"),
        ("14: ", "`ci/no-such-script.sh` does not exist"),
        ("15: ", "link `missing.md`: no file"),
        (
            "15: ",
            "link `verify.md#no-such-heading`: no heading #no-such-heading there",
        ),
        (
            "20: ",
            "no --not-an-export-flag in `igpt-onnx export --help`",
        ),
    ];
    for (at, what) in expected {
        let at = format!("{page}:{at}");
        assert!(
            bad.iter().any(|b| b.starts_with(&at) && b.contains(what)),
            "missing {at}{what} in:\n{}",
            bad.join("\n")
        );
    }
    assert_eq!(bad.len(), expected.len(), "only those:\n{}", bad.join("\n"));
}
