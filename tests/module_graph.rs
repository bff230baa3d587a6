//! The crate's module graph, read from its own source: no circles between files, no
//! circle between rooms (top-level modules), and the room rules of ARCHITECTURE.md.
//!
//! An arrow is any path in non-test code that names another file's module: `use` trees
//! (`crate::`, `super::`, `self::`, a child module) and paths written inline
//! (`super::metrics::ConnectorLabels`). A `mod.rs` re-exporting its own descendants
//! (`pub use child::Name`) is the room's front door, not an arrow, like `mod child;`.
//! `main.rs` is the binary, a crate of its own, and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Rooms that must never import each other, either way.
const APART: &[(&str, &str)] = &[("files", "cluster")];

/// What `reconcile/` (the core) never imports.
const CORE: &str = "reconcile";
const CORE_NEVER_IMPORTS: &[&str] = &[
    "cluster",
    "commands",
    "files",
    "notify",
    "simulator",
    "sync",
];

/// A path a file names: whether a `pub use` re-exports it, and its segments.
type NamedPath = (bool, Vec<String>);

/// One source file: its path under `src/` and its module path.
#[derive(Debug, Clone)]
struct SourceFile {
    path: String,
    module: Vec<String>,
    text: String,
}

impl SourceFile {
    fn new(path: &str, text: &str) -> Self {
        let without_rs = path.trim_end_matches(".rs");
        let mut module: Vec<String> = without_rs.split('/').map(str::to_string).collect();
        if module
            .last()
            .is_some_and(|last| last == "mod" || last == "lib")
        {
            module.pop();
        }
        Self {
            path: path.to_string(),
            module,
            text: text.to_string(),
        }
    }

    fn is_mod_rs(&self) -> bool {
        self.path.ends_with("mod.rs") || self.path == "lib.rs"
    }

    /// The room: the top-level module (`email` for `email.rs`).
    fn room(&self) -> Option<&str> {
        self.module.first().map(String::as_str)
    }
}

/// The code without comments and without items under `#[cfg(test)]` (rustfmt puts an
/// item's closing brace at the indentation of its attribute).
fn non_test_code(text: &str) -> String {
    let mut kept = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed == "#[cfg(test)]" {
            let indent = &line[..line.len() - trimmed.len()];
            skip_item(&mut lines, indent);
            continue;
        }
        let code = line.find(" // ").map_or(line, |at| &line[..at]);
        kept.push_str(code);
        kept.push('\n');
    }
    kept
}

/// Skips the item an attribute at `indent` stands on: one line ending in `;`, or every
/// line up to its closing brace.
fn skip_item<'a>(lines: &mut impl Iterator<Item = &'a str>, indent: &str) {
    let closing = [format!("{indent}}}"), format!("{indent}}};")];
    let mut first = true;
    for line in lines.by_ref() {
        let line = line.trim_end();
        if first && line.trim_start().starts_with("#[") {
            continue;
        }
        if (first && line.ends_with(';')) || closing.iter().any(|c| c == line) {
            return;
        }
        first = false;
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a `use` tree names, each as its segments (`a::{b, c::d}` gives `a::b`,
/// `a::c::d`; `a::{self}` gives `a`; `x as y` gives `x`).
fn expand_use_tree(tree: &str) -> Vec<Vec<String>> {
    let spaced = tree
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(',', " , ");
    let mut tokens = spaced.split_whitespace();
    let mut compact = String::new();
    while let Some(token) = tokens.next() {
        if token == "as" {
            tokens.next();
        } else {
            compact.push_str(token);
        }
    }
    let mut paths = Vec::new();
    expand_into(&compact, &[], &mut paths);
    paths
}

fn expand_into(tree: &str, prefix: &[String], paths: &mut Vec<Vec<String>>) {
    let (head, group) = match tree.find('{') {
        Some(open) => (
            &tree[..open],
            Some(
                tree[open + 1..]
                    .strip_suffix('}')
                    .unwrap_or(&tree[open + 1..]),
            ),
        ),
        None => (tree, None),
    };
    let mut path = prefix.to_vec();
    for segment in head.split("::").filter(|s| !s.is_empty()) {
        if segment != "self" || path.is_empty() {
            path.push(segment.to_string());
        }
    }
    let Some(group) = group else {
        paths.push(path);
        return;
    };
    for part in split_top_level(group) {
        expand_into(part, &path, paths);
    }
}

/// Splits a `use` group's contents at the commas outside nested braces.
fn split_top_level(group: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&group[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The `use` statements of some code (rustfmt starts each on a line of its own):
/// `(is a pub re-export, tree)`, and the code left.
fn use_statements(code: &str) -> (Vec<(bool, String)>, String) {
    let mut statements = Vec::new();
    let mut rest = String::new();
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let keyword = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .into_iter()
            .find(|k| trimmed.starts_with(k));
        let Some(keyword) = keyword else {
            rest.push_str(line);
            rest.push('\n');
            continue;
        };
        let mut statement = trimmed[keyword.len()..].to_string();
        while !statement.contains(';') {
            let Some(next) = lines.next() else { break };
            statement.push(' ');
            statement.push_str(next);
        }
        let tree = statement.split(';').next().unwrap_or_default().to_string();
        statements.push((keyword.starts_with("pub"), tree));
    }
    (statements, rest)
}

/// Every `a::b::c` chain in code (not preceded by `::` or an identifier character).
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut paths = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let starts = is_ident_char(chars[at])
            && (at == 0 || (!is_ident_char(chars[at - 1]) && chars[at - 1] != ':'));
        if !starts {
            at += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut end = at;
        loop {
            let begin = end;
            while end < chars.len() && is_ident_char(chars[end]) {
                end += 1;
            }
            segments.push(chars[begin..end].iter().collect::<String>());
            let more = end + 2 < chars.len()
                && chars[end] == ':'
                && chars[end + 1] == ':'
                && is_ident_char(chars[end + 2]);
            if !more {
                break;
            }
            end += 2;
        }
        if segments.len() > 1 {
            paths.push(segments);
        }
        at = end.max(at + 1);
    }
    paths
}

/// The crate's module graph: file -> the files it names.
struct ModuleGraph {
    arrows: BTreeMap<String, BTreeSet<String>>,
    rooms: BTreeMap<String, String>,
}

impl ModuleGraph {
    fn build(files: &[SourceFile]) -> Self {
        let files = non_test_files(files);
        let by_module: BTreeMap<Vec<String>, &SourceFile> =
            files.iter().map(|f| (f.module.clone(), *f)).collect();
        let parsed: Vec<(&SourceFile, Vec<NamedPath>)> = files
            .iter()
            .map(|file| (*file, named_paths(file, &by_module)))
            .collect();
        let reexports = Reexports::of(&parsed);
        let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (file, named) in parsed {
            let targets = arrows.entry(file.path.clone()).or_default();
            for (reexport, resolved) in named {
                let Some(target) = reexports.defining_file(&resolved, &by_module) else {
                    continue;
                };
                let front_door = reexport
                    && file.is_mod_rs()
                    && target.module.starts_with(&file.module)
                    && target.module.len() > file.module.len();
                if target.path != file.path && !target.module.is_empty() && !front_door {
                    targets.insert(target.path.clone());
                }
            }
        }
        let rooms = files
            .iter()
            .filter_map(|f| Some((f.path.clone(), f.room()?.to_string())))
            .collect();
        Self { arrows, rooms }
    }

    fn has_arrow(&self, from: &str, to: &str) -> bool {
        self.arrows.get(from).is_some_and(|t| t.contains(to))
    }

    /// The arrows between rooms, each with one file arrow that makes it.
    fn room_arrows(&self) -> BTreeMap<(String, String), (String, String)> {
        let mut arrows = BTreeMap::new();
        for (from, targets) in &self.arrows {
            for to in targets {
                let (Some(a), Some(b)) = (self.rooms.get(from), self.rooms.get(to)) else {
                    continue;
                };
                if a != b {
                    arrows
                        .entry((a.clone(), b.clone()))
                        .or_insert_with(|| (from.clone(), to.clone()));
                }
            }
        }
        arrows
    }

    /// The room graph, as file-level arrows between rooms.
    fn room_graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in self.room_arrows().into_keys() {
            graph.entry(a).or_default().insert(b);
        }
        graph
    }
}

/// The files the crate's non-test code declares (`mod name;` outside `#[cfg(test)]`, from
/// `lib.rs` down): a test module in a file of its own (`#[cfg(test)] mod tests;`) is left
/// out, with whatever it declares.
fn non_test_files(files: &[SourceFile]) -> Vec<&SourceFile> {
    let declared: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|file| {
            non_test_code(&file.text)
                .lines()
                .filter_map(|line| {
                    let line = line.trim();
                    let declaration = line.strip_prefix("pub ").unwrap_or(line);
                    let declaration = declaration
                        .strip_prefix("pub(crate) ")
                        .unwrap_or(declaration);
                    let name = declaration.strip_prefix("mod ")?.strip_suffix(';')?;
                    let mut child = file.module.clone();
                    child.push(name.trim().to_string());
                    Some(child)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let by_module: BTreeMap<&[String], &SourceFile> =
        files.iter().map(|f| (f.module.as_slice(), f)).collect();
    let in_crate = |file: &SourceFile| {
        (1..=file.module.len()).all(|depth| {
            declared.contains(&file.module[..depth])
                && by_module.contains_key(&file.module[..depth - 1])
        })
    };
    files.iter().filter(|f| in_crate(f)).collect()
}

/// The paths of the crate a file's non-test code names, resolved from the crate root:
/// `(whether a pub re-export names it, segments)`.
fn named_paths(
    file: &SourceFile,
    by_module: &BTreeMap<Vec<String>, &SourceFile>,
) -> Vec<NamedPath> {
    let code = non_test_code(&file.text);
    let (uses, rest) = use_statements(&code);
    let mut named: Vec<NamedPath> = Vec::new();
    for (reexport, tree) in uses {
        for path in expand_use_tree(&tree) {
            named.push((reexport, path));
        }
    }
    named.extend(inline_paths(&rest).into_iter().map(|p| (false, p)));
    named
        .into_iter()
        .filter_map(|(reexport, path)| Some((reexport, resolve(file, &path, by_module)?)))
        .collect()
}

/// The names each module re-exports (`pub use a::b::Name`), to follow an import through
/// a module's front door to the file that defines the name.
struct Reexports(BTreeMap<Vec<String>, Vec<String>>);

impl Reexports {
    fn of(parsed: &[(&SourceFile, Vec<NamedPath>)]) -> Self {
        let mut reexports = BTreeMap::new();
        for (file, named) in parsed {
            for (reexport, resolved) in named {
                let Some(name) = resolved.last().filter(|_| *reexport) else {
                    continue;
                };
                let mut as_seen = file.module.clone();
                as_seen.push(name.clone());
                reexports.insert(as_seen, resolved.clone());
            }
        }
        Self(reexports)
    }

    /// The file that defines what `resolved` names: the longest module prefix, through
    /// the re-exports on the way (a few hops at most).
    fn defining_file<'a>(
        &self,
        resolved: &[String],
        by_module: &BTreeMap<Vec<String>, &'a SourceFile>,
    ) -> Option<&'a SourceFile> {
        let mut path = resolved.to_vec();
        for _ in 0..8 {
            let file = longest_module(&path, by_module)?;
            let depth = file.module.len();
            let Some(target) = path
                .get(..=depth)
                .and_then(|named| self.0.get(named))
                .filter(|target| target.as_slice() != &path[..=depth])
            else {
                return Some(file);
            };
            let mut followed = target.clone();
            followed.extend(path[depth + 1..].iter().cloned());
            path = followed;
        }
        longest_module(&path, by_module)
    }
}

/// A path's segments from the crate root, when it starts at the crate, a parent, itself
/// or one of its own child modules (anything else is another crate or a local name).
fn resolve(
    file: &SourceFile,
    path: &[String],
    by_module: &BTreeMap<Vec<String>, &SourceFile>,
) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String>;
    let mut rest = path;
    match first.as_str() {
        "crate" => {
            base = Vec::new();
            rest = &path[1..];
        }
        "self" => {
            base = file.module.clone();
            rest = &path[1..];
        }
        "super" => {
            base = file.module.clone();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        child => {
            let mut as_child = file.module.clone();
            as_child.push(child.to_string());
            if !by_module.contains_key(&as_child) {
                return None;
            }
            base = file.module.clone();
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The file whose module is the longest prefix of `resolved`.
fn longest_module<'a>(
    resolved: &[String],
    by_module: &BTreeMap<Vec<String>, &'a SourceFile>,
) -> Option<&'a SourceFile> {
    (0..=resolved.len())
        .rev()
        .find_map(|len| by_module.get(&resolved[..len]).copied())
}

/// One circle per strongly connected component of more than one node, as a closed walk.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if covered.contains(start) {
            continue;
        }
        if let Some(circle) = circle_through(graph, start) {
            covered.extend(circle.iter().cloned());
            found.push(circle);
        }
    }
    found
}

/// The shortest walk from `start` back to itself (breadth first), if any.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut walk = vec![node.clone()];
                let mut at = node.clone();
                while let Some(previous) = came_from.get(&at) {
                    walk.push(previous.clone());
                    at = previous.clone();
                }
                walk.reverse();
                walk.push(start.to_string());
                return Some(walk);
            }
            if next != start && !came_from.contains_key(next) {
                came_from.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

/// What breaks the rules: one line each.
fn violations(graph: &ModuleGraph) -> Vec<String> {
    let mut broken = Vec::new();
    for circle in circles(&graph.arrows) {
        broken.push(format!("a circle between files: {}", circle.join(" -> ")));
    }
    for circle in circles(&graph.room_graph()) {
        broken.push(format!("a circle between rooms: {}", circle.join(" -> ")));
    }
    for ((from, to), (file, target)) in graph.room_arrows() {
        let apart = APART
            .iter()
            .any(|(a, b)| (from == *a && to == *b) || (from == *b && to == *a));
        let core_reaches_out = from == CORE && CORE_NEVER_IMPORTS.contains(&to.as_str());
        if apart || core_reaches_out {
            broken.push(format!("`{from}` imports `{to}` ({file} -> {target})"));
        }
    }
    broken
}

fn source_files(root: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    let mut directories = vec![root.to_path_buf()];
    while let Some(directory) = directories.pop() {
        let entries = std::fs::read_dir(&directory).expect("read a source directory");
        for entry in entries {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                directories.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(root)
                    .expect("under src/")
                    .to_string_lossy()
                    .replace('\\', "/");
                if relative != "main.rs" {
                    let text = std::fs::read_to_string(&path).expect("read a source file");
                    files.push(SourceFile::new(&relative, &text));
                }
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn crate_graph() -> ModuleGraph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    ModuleGraph::build(&source_files(&root))
}

#[test]
fn no_circles_and_the_room_rules_hold() {
    let graph = crate_graph();
    let broken = violations(&graph);
    assert!(broken.is_empty(), "\n{}", broken.join("\n"));
}

#[test]
fn the_graph_sees_the_arrows_the_crate_is_known_to_have() {
    let graph = crate_graph();
    for (from, to) in [
        // `use super::context::{Context, ..}`
        ("cluster/context.rs", "cluster/cache.rs"),
        // `crate::reconcile::ObjectKey`, re-exported by reconcile/mod.rs from model.rs
        ("cluster/context.rs", "reconcile/model.rs"),
        // `inputs::read(..)`: a child module named without a prefix, inline
        (
            "cluster/connector_controller/mod.rs",
            "cluster/connector_controller/inputs.rs",
        ),
    ] {
        assert!(graph.has_arrow(from, to), "{from} -> {to} not seen");
    }
}

fn graph_of(files: &[(&str, &str)]) -> ModuleGraph {
    let files: Vec<SourceFile> = files
        .iter()
        .map(|(path, text)| SourceFile::new(path, text))
        .collect();
    ModuleGraph::build(&files)
}

#[test]
fn a_circle_between_two_files_is_found_and_named() {
    let graph = graph_of(&[
        ("lib.rs", "pub mod room;\n"),
        ("room/mod.rs", "pub mod a;\npub mod b;\npub use a::Thing;\n"),
        (
            "room/a.rs",
            "use super::b::{self, Other};\npub struct Thing;\n",
        ),
        (
            "room/b.rs",
            "pub struct Other;\nfn f() { let _ = crate::room::a::Thing; }\n",
        ),
    ]);
    assert_eq!(
        violations(&graph),
        ["a circle between files: room/a.rs -> room/b.rs -> room/a.rs"]
    );
}

#[test]
fn test_code_comments_and_front_doors_are_not_arrows() {
    let graph = graph_of(&[
        ("lib.rs", "pub mod room;\n"),
        ("room/mod.rs", "pub mod a;\npub mod b;\npub use b::Other;\n"),
        (
            "room/a.rs",
            "use super::b::Other;\n#[cfg(test)]\nmod tests {\n    use super::super::b;\n}\n",
        ),
        (
            "room/b.rs",
            "//! See [`super::a`].\npub struct Other; // super::a::x\nfn f() {\n    #[cfg(test)]\n    {\n        let _ = super::a::X;\n    }\n}\n",
        ),
    ]);
    assert!(violations(&graph).is_empty(), "{:?}", violations(&graph));
    assert!(graph.has_arrow("room/a.rs", "room/b.rs"));
    assert!(!graph.has_arrow("room/b.rs", "room/a.rs"));
    assert!(!graph.has_arrow("room/mod.rs", "room/b.rs"));
}

#[test]
fn a_child_module_named_without_a_prefix_is_an_arrow() {
    let graph = graph_of(&[
        ("lib.rs", "pub mod room;\n"),
        (
            "room/mod.rs",
            "mod steps;\npub fn run() { steps::first(); }\n",
        ),
        ("room/steps.rs", "pub fn first() { super::helper(); }\n"),
    ]);
    assert_eq!(
        violations(&graph),
        ["a circle between files: room/mod.rs -> room/steps.rs -> room/mod.rs"]
    );
}

#[test]
fn room_rules_are_enforced() {
    let graph = graph_of(&[
        (
            "lib.rs",
            "pub mod cluster;\npub mod files;\npub mod reconcile;\n",
        ),
        ("files/mod.rs", "use crate::cluster::Thing;\n"),
        ("cluster/mod.rs", "pub struct Thing;\n"),
        (
            "reconcile/mod.rs",
            "pub fn f() { crate::cluster::Thing; }\n",
        ),
    ]);
    assert_eq!(
        violations(&graph),
        [
            "`files` imports `cluster` (files/mod.rs -> cluster/mod.rs)",
            "`reconcile` imports `cluster` (reconcile/mod.rs -> cluster/mod.rs)",
        ]
    );
}

#[test]
fn a_circle_between_rooms_is_found() {
    let graph = graph_of(&[
        ("lib.rs", "pub mod api;\npub mod expensify;\n"),
        (
            "api/mod.rs",
            "pub mod duration;\nuse crate::expensify::DEFAULT;\n",
        ),
        ("api/duration.rs", "pub const MAX: u32 = 1;\n"),
        (
            "expensify/mod.rs",
            "pub mod pacing;\npub const DEFAULT: &str = \"\";\n",
        ),
        ("expensify/pacing.rs", "use crate::api::duration::MAX;\n"),
    ]);
    assert_eq!(
        violations(&graph),
        ["a circle between rooms: api -> expensify -> api"]
    );
}

#[test]
fn an_import_through_a_front_door_points_at_the_file_that_defines_the_name() {
    let graph = graph_of(&[
        ("lib.rs", "pub mod room;\n"),
        (
            "room/mod.rs",
            "mod types;\nmod user;\npub use types::rank;\npub fn run() { user::go(); }\n",
        ),
        ("room/types.rs", "pub fn rank() {}\n"),
        (
            "room/user.rs",
            "use super::rank;\npub fn go() { rank(); }\n",
        ),
    ]);
    assert!(violations(&graph).is_empty(), "{:?}", violations(&graph));
    assert!(graph.has_arrow("room/user.rs", "room/types.rs"));
    assert!(!graph.has_arrow("room/user.rs", "room/mod.rs"));
}

#[test]
fn a_test_module_in_a_file_of_its_own_is_not_part_of_the_graph() {
    let graph = graph_of(&[
        ("lib.rs", "pub mod cluster;\npub mod reconcile;\n"),
        ("cluster/mod.rs", "pub struct Thing;\n"),
        (
            "reconcile/mod.rs",
            "pub mod plan;\npub fn f() {}\n#[cfg(test)]\nmod tests;\n",
        ),
        ("reconcile/plan.rs", "use super::f;\n"),
        ("reconcile/tests.rs", "use crate::cluster::Thing;\n"),
    ]);
    assert!(violations(&graph).is_empty(), "{:?}", violations(&graph));
    assert!(graph.has_arrow("reconcile/plan.rs", "reconcile/mod.rs"));
    assert!(!graph.arrows.contains_key("reconcile/tests.rs"));
}
