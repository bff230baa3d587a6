//! `reconcile/` is the pure core: no async, no I/O, no clock reads, no randomness, and no
//! arrow back up to the rooms that do those things (`sync`, `cluster`, `files`, ...).
//! Clippy cannot scope `disallowed-methods` to one module, so this test is the
//! enforcement: it walks the module tree from `src/reconcile/mod.rs` (the files the crate
//! compiles, `#[cfg(test)]` modules left out), blanks comments and literals, and names
//! the file and line of every forbidden token.

use std::path::{Path, PathBuf};

/// Tokens that mean I/O, a clock, randomness, async, or a room above the core. A token
/// that starts or ends with an identifier character must stand alone there (`now` is
/// not `nowhere`, `kube` is not `kubelet`).
const FORBIDDEN: &[&str] = &[
    "async",
    "await",
    "::now",
    "SystemTime",
    "Instant",
    "tokio",
    "futures",
    "reqwest",
    "hyper",
    "kube",
    "rand",
    "std::fs",
    "std::net",
    "std::io",
    "std::env",
    "std::process",
    "std::thread",
    "fs::",
    "net::",
    "ExpensifyClient",
    "ExpensifyClients",
    "crate::sync",
    "crate::cluster",
    "crate::files",
    "crate::commands",
    "crate::simulator",
    "crate::telemetry",
    // The same rooms reached from the crate root by relative paths.
    "super::sync",
    "super::cluster",
    "super::files",
    "super::commands",
    "super::simulator",
    "super::telemetry",
];

/// One forbidden token in a file of the core.
#[derive(Debug, PartialEq, Eq)]
struct Offence {
    file: PathBuf,
    line: usize,
    token: &'static str,
}

impl std::fmt::Display for Offence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: `{}`", self.file.display(), self.line, self.token)
    }
}

/// The source with comments and the contents of string and char literals replaced by
/// spaces (newlines kept, byte offsets unchanged), so only code is left to match.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = bytes.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, i);
            while j < bytes.len() {
                if bytes[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if bytes[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) = raw_string_end(bytes, i) {
            blank(&mut out, i, end);
            i = end;
        } else if bytes[i] == b'"' || rest.starts_with(b"b\"") && !ident_before(bytes, i) {
            let open = if bytes[i] == b'b' { i + 1 } else { i };
            let mut j = open + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(bytes.len());
            blank(&mut out, i, end);
            i = end;
        } else if bytes[i] == b'\'' {
            i = char_literal_end(bytes, i).map_or(i + 1, |end| {
                blank(&mut out, i, end);
                end
            });
        } else {
            i += 1;
        }
    }
    // Only ASCII bytes were written over whole literals and comments: still UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn ident_before(bytes: &[u8], i: usize) -> bool {
    i > 0 && is_ident(bytes[i - 1])
}

/// The end of a raw string (`r"…"`, `r#"…"#`, `br"…"`) starting at `i`, if one does.
fn raw_string_end(bytes: &[u8], i: usize) -> Option<usize> {
    if ident_before(bytes, i) {
        return None;
    }
    let start = if bytes[i..].starts_with(b"br") {
        i + 2
    } else if bytes[i] == b'r' {
        i + 1
    } else {
        return None;
    };
    let hashes = bytes[start..].iter().take_while(|&&b| b == b'#').count();
    if bytes.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let body = start + hashes + 1;
    let found = bytes[body..]
        .windows(close.len())
        .position(|w| w == close.as_slice())?;
    Some(body + found + close.len())
}

/// The end of a char literal (`'a'`, `'\n'`, `'\u{1F600}'`, `'é'`) at `i`; `None` for a
/// lifetime or label (`'a`, `'static`).
fn char_literal_end(bytes: &[u8], i: usize) -> Option<usize> {
    let next = *bytes.get(i + 1)?;
    if next == b'\\' {
        // The escaped char may itself be a quote: the closing one comes after it.
        let close = bytes.get(i + 3..)?.iter().position(|&b| b == b'\'')?;
        return Some(i + 3 + close + 1);
    }
    // One char, however many bytes it takes in UTF-8, then the closing quote.
    let width = match next {
        b if b < 0x80 => 1,
        b if b >= 0xF0 => 4,
        b if b >= 0xE0 => 3,
        _ => 2,
    };
    (bytes.get(i + 1 + width) == Some(&b'\'')).then_some(i + 2 + width)
}

/// The byte just past the item that starts at or after `from`: the first `;` at depth 0,
/// or the `}` closing the first `{`.
fn item_end(code: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    for (j, &b) in code.iter().enumerate().skip(from) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            b';' if depth == 0 => return j + 1,
            _ => {}
        }
    }
    code.len()
}

/// `code` with every `#[cfg(test)]` item blanked: test modules may do anything.
fn without_test_items(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut search = 0;
    while let Some(found) = code[search..].find("#[cfg(test)]") {
        let at = search + found;
        let attribute_end = at + "#[cfg(test)]".len();
        let end = item_end(code.as_bytes(), attribute_end);
        for b in &mut out[at..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        search = end;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Every forbidden token in `code`, with its line.
fn offences(file: &Path, code: &str) -> Vec<Offence> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for &token in FORBIDDEN {
        let first_ident = token.bytes().next().is_some_and(is_ident);
        let last_ident = token.bytes().last().is_some_and(is_ident);
        for (at, _) in code.match_indices(token) {
            let end = at + token.len();
            let alone_before = !first_ident || !ident_before(bytes, at);
            let alone_after = !last_ident || bytes.get(end).is_none_or(|&b| !is_ident(b));
            if alone_before && alone_after {
                let line = code[..at].matches('\n').count() + 1;
                found.push(Offence {
                    file: file.to_path_buf(),
                    line,
                    token,
                });
            }
        }
    }
    found.sort_by_key(|o| (o.line, o.token));
    found
}

/// The files of the modules `file` declares (`mod name;`, `#[path = "…"] mod name;`),
/// outside `#[cfg(test)]` items. `code` is `file`'s code with tests blanked; `source` is
/// the file as written (the `#[path]` literal is read from it).
fn declared_modules(file: &Path, source: &str, code: &str) -> Vec<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let is_mod_rs = file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
    let children_dir = if is_mod_rs {
        dir.to_path_buf()
    } else {
        dir.join(file.file_stem().unwrap_or_default())
    };
    let bytes = code.as_bytes();
    let mut modules = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if ident_before(bytes, at) {
            continue;
        }
        let name: String = code[at + 4..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after_name = code[at + 4..].trim_start()[name.len()..].trim_start();
        if name.is_empty() || !after_name.starts_with(';') {
            continue; // an inline module: its code is in this file
        }
        // The attributes of this item run from the end of the previous one.
        let item_start = code[..at].rfind([';', '}', '{']).map_or(0, |p| p + 1);
        let path_attribute = code[item_start..at]
            .find("#[path")
            .map(|p| item_start + p)
            .and_then(|p| source[p..at].split('"').nth(1));
        modules.push(match path_attribute {
            Some(path) => dir.join(path),
            None if children_dir.join(format!("{name}.rs")).exists() => {
                children_dir.join(format!("{name}.rs"))
            }
            None => children_dir.join(&name).join("mod.rs"),
        });
    }
    modules
}

/// Every compiled, non-test file of the module rooted at `root`, with its offences.
fn scan(root: &Path) -> (Vec<PathBuf>, Vec<Offence>) {
    let (mut files, mut found, mut queue) = (Vec::new(), Vec::new(), vec![root.to_path_buf()]);
    while let Some(file) = queue.pop() {
        let source = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{} is declared but cannot be read: {e}", file.display()));
        let code = without_test_items(&code_only(&source));
        found.extend(offences(&file, &code));
        queue.extend(declared_modules(&file, &source, &code));
        files.push(file);
    }
    files.sort();
    (files, found)
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_reconcile_core_does_no_io_reads_no_clock_and_imports_no_room_above_it() {
    let root = manifest_dir().join("src/reconcile/mod.rs");
    let (files, found) = scan(&root);
    let relative = |p: &PathBuf| {
        p.strip_prefix(manifest_dir())
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let names: Vec<String> = files.iter().map(relative).collect();
    // The walk reached the whole core, and only the code the crate builds outside tests.
    for expected in [
        "src/reconcile/mod.rs",
        "src/reconcile/validate.rs",
        "src/reconcile/status.rs",
        "src/reconcile/plan/mod.rs",
        "src/reconcile/plan/guard.rs",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not scanned: {names:?}"
        );
    }
    for test_only in [
        "src/reconcile/plan/tests.rs",
        "src/reconcile/tenancy_tests.rs",
    ] {
        assert!(
            !names.iter().any(|n| n == test_only),
            "{test_only} is test code: {names:?}"
        );
    }
    let found: Vec<String> = found
        .iter()
        .map(|o| format!("{}:{}: `{}`", relative(&o.file), o.line, o.token))
        .collect();
    assert!(
        found.is_empty(),
        "reconcile/ must stay pure (pass `now` in; put I/O in sync/):\n{}",
        found.join("\n")
    );
}

// The scanner itself: it finds what it must and nothing else.

fn scan_text(text: &str) -> Vec<String> {
    let code = without_test_items(&code_only(text));
    offences(Path::new("x.rs"), &code)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn forbidden_code_is_named_by_file_and_line() {
    let text = "use std::fs;\nfn f() {\n    let t = Timestamp::now();\n}\nasync fn g() { h().await }\nuse crate::sync::Store;\nuse crate::expensify::{ExpensifyClient, Role};\nuse super::super::files::Store;\n";
    assert_eq!(
        scan_text(text),
        [
            "x.rs:1: `std::fs`",
            "x.rs:3: `::now`",
            "x.rs:5: `async`",
            "x.rs:5: `await`",
            "x.rs:6: `crate::sync`",
            "x.rs:7: `ExpensifyClient`",
            "x.rs:8: `super::files`",
        ]
    );
}

#[test]
fn comments_literals_tests_and_longer_names_are_not_code() {
    let text = r##"
//! Runs after `tokio` reads the clock with Timestamp::now().
/// async fn in a doc comment
/* block /* nested std::fs */ still comment tokio */
fn message() -> &'static str { "the sync .await-s; std::net is elsewhere" }
fn raw() -> &'static str { r#"async "quoted" tokio"# }
fn chars() -> [char; 3] { ['"', '\'', 'é'] }
fn named(nowhere: u8, kubelet: u8, random: u8, syncs: u8) -> u8 { nowhere + kubelet + random + syncs }
use crate::synced::Thing;
fn after_chars() { tokio::spawn(x); }
#[cfg(test)]
mod tests {
    use std::fs;
    #[tokio::test]
    async fn t() { let _ = Timestamp::now(); }
}
#[cfg(test)]
fn helper() { std::thread::sleep(d); }
fn last() { std::env::var("X"); }
"##;
    assert_eq!(scan_text(text), ["x.rs:10: `tokio`", "x.rs:19: `std::env`"]);
}

#[test]
fn test_modules_in_their_own_files_are_not_walked() {
    let dir = std::env::temp_dir().join(format!("pure-core-{}", std::process::id()));
    let plan = dir.join("plan");
    std::fs::create_dir_all(&plan).unwrap();
    std::fs::write(
        dir.join("mod.rs"),
        "pub mod plan;\nmod model;\n#[cfg(test)]\n#[path = \"model_tests.rs\"]\nmod model_tests;\n",
    )
    .unwrap();
    std::fs::write(dir.join("model.rs"), "fn f() {}\n").unwrap();
    std::fs::write(dir.join("model_tests.rs"), "use tokio;\n").unwrap();
    std::fs::write(
        plan.join("mod.rs"),
        "#[path = \"rules.rs\"]\nmod guard;\n#[cfg(test)]\nmod tests;\n",
    )
    .unwrap();
    std::fs::write(plan.join("rules.rs"), "\n\nasync fn f() {}\n").unwrap();
    std::fs::write(plan.join("tests.rs"), "use std::fs;\n").unwrap();
    let (files, found) = scan(&dir.join("mod.rs"));
    let names: Vec<_> = files
        .iter()
        .map(|f| f.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        ["mod.rs", "model.rs", "plan/mod.rs", "plan/rules.rs"]
    );
    assert_eq!(
        found,
        [Offence {
            file: plan.join("rules.rs"),
            line: 3,
            token: "async"
        }]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
