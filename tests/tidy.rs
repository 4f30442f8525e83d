//! The house's rules, checked rather than hoped (issue 13): every module
//! of `src/` stands in the layer table of ARCHITECTURE.md, no module
//! imports one of a higher layer, and no files import each other in a
//! circle. Reads the sources as text; nothing is compiled or run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MARK_START: &str = "<!-- layers -->";
const MARK_END: &str = "<!-- /layers -->";

/// The layer table: `| N | name | module, module |` rows between the marks.
fn layer_table() -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = text.find(MARK_START).expect("the layer table's start mark in ARCHITECTURE.md");
    let end = text.find(MARK_END).expect("the layer table's end mark");
    let mut table = Vec::new();
    for line in text[start..end].lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(layer) = cells[0].parse::<usize>() else { continue };
        assert_eq!(cells.len(), 3, "a layer row has three cells: {line}");
        for module in cells[2].split(',').map(|m| m.trim().trim_matches('`')).filter(|m| !m.is_empty()) {
            table.push((module.to_owned(), layer));
        }
    }
    assert!(table.len() > 10, "the layer table is missing or nearly empty");
    table
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/` with its module path (`rooms::read`;
/// `main` and `lib` for the crate roots).
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("reading src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.len() > 1 && parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            (parts.join("::"), f)
        })
        .collect()
}

/// The layer of a module: its longest prefix in the table.
fn layer_of(table: &[(String, usize)], module: &str) -> Option<usize> {
    table
        .iter()
        .filter(|(m, _)| module == m || module.starts_with(&format!("{m}::")))
        .max_by_key(|(m, _)| m.len())
        .map(|(_, l)| *l)
}

/// The code of a file without its unit tests (`#[cfg(test)] mod tests`),
/// which may reach for anything to set up a case.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("reading a source file");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Expands a `use` tree (`a::{b, c::{d, self}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.to_owned()] };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| if p == "self" { prefix.to_owned() } else { format!("{prefix}::{p}") })
        .collect()
}

/// The crate paths a file names: in `use` items and inline
/// (`crate::a::b`, `hearth::a` from the binary, `super::x`), resolved to
/// paths from the crate root.
fn named_paths(module: &str, code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let parent: Vec<&str> = module.split("::").collect();
    // Inside `x/mod.rs` (module `x`), `super` is x's parent; inside `x/y.rs`, it is `x`.
    let is_dir_module = |m: &str| modules().get(m).is_some_and(|p| p.ends_with("mod.rs"));
    let resolve = |p: &str| -> Option<String> {
        let p = p.split(" as ").next().unwrap_or(p).trim();
        if let Some(rest) = p.strip_prefix("crate::").or_else(|| p.strip_prefix("hearth::")) {
            return Some(rest.to_owned());
        }
        if let Some(rest) = p.strip_prefix("super::") {
            let up = if is_dir_module(module) { parent.len().saturating_sub(1) } else { parent.len() - 1 };
            let base = parent[..up.min(parent.len())].join("::");
            return Some(if base.is_empty() { rest.to_owned() } else { format!("{base}::{rest}") });
        }
        None
    };
    for stmt in code.split(';') {
        let s = stmt.trim_start();
        let s = s.strip_prefix("pub ").unwrap_or(s);
        let s = s.strip_prefix("pub(crate) ").unwrap_or(s);
        if let Some(tree) = s.strip_prefix("use ") {
            let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
            paths.extend(expand(&tree).iter().filter_map(|p| resolve(p)));
        }
    }
    for marker in ["crate::", "hearth::"] {
        for (i, _) in code.match_indices(marker) {
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[i + marker.len()..];
            let end =
                rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches(':');
            if !path.is_empty() {
                paths.push(path.to_owned());
            }
        }
    }
    paths
}

/// The module a path lands in: its longest prefix that is a file.
fn target_module<'a>(all: &'a BTreeMap<String, PathBuf>, path: &str) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|m| all.get_key_value(&m).map(|(k, _)| k.as_str()))
}

/// Who imports whom, file by file.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let all = modules();
    let mut graph = BTreeMap::new();
    for (module, path) in &all {
        let code = code_of(path);
        let mut to: BTreeSet<String> = BTreeSet::new();
        for p in named_paths(module, &code) {
            if let Some(t) = target_module(&all, &p) {
                if t != module && !module.starts_with(&format!("{t}::")) {
                    to.insert(t.to_owned());
                }
            }
        }
        graph.insert(module.clone(), to);
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let table = layer_table();
    let missing: Vec<String> = modules().into_keys().filter(|m| layer_of(&table, m).is_none()).collect();
    assert!(missing.is_empty(), "modules missing from ARCHITECTURE.md's layer table: {missing:?}");
}

#[test]
fn no_module_imports_a_higher_layer() {
    let table = layer_table();
    let mut upward = Vec::new();
    for (from, tos) in imports() {
        let Some(lf) = layer_of(&table, &from) else { continue };
        for to in tos {
            if let Some(lt) = layer_of(&table, &to) {
                if lt > lf {
                    upward.push(format!("{from} (layer {lf}) -> {to} (layer {lt})"));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports that run up the layers:\n{}", upward.join("\n"));
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let graph = imports();
    // Depth-first search; a back edge closes a circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        circles: &mut Vec<String>,
    ) {
        state.insert(m.to_owned(), 1);
        stack.push(m.to_owned());
        for to in graph.get(m).into_iter().flatten() {
            match state.get(to.as_str()).copied().unwrap_or(0) {
                0 => visit(to, graph, state, stack, circles),
                1 => {
                    let from = stack.iter().position(|s| s == to).unwrap_or(0);
                    circles.push(format!("{} -> {to}", stack[from..].join(" -> ")));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_owned(), 2);
    }
    let (mut state, mut circles) = (BTreeMap::new(), Vec::new());
    for m in graph.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            visit(m, &graph, &mut state, &mut Vec::new(), &mut circles);
        }
    }
    assert!(circles.is_empty(), "files that import each other in a circle:\n{}", circles.join("\n"));
}

#[test]
fn the_reader_sees_use_trees_and_inline_paths() {
    assert_eq!(expand("crate::{a::{b, self}, c}"), ["crate::a::b", "crate::a", "crate::c"]);
    let code = "use crate::storage::{self, events};\nfn f() { crate::rooms::read::x(); }\n";
    let paths = named_paths("sync", code);
    assert!(
        paths.contains(&"storage".to_owned()) && paths.contains(&"storage::events".to_owned()),
        "{paths:?}"
    );
    assert!(paths.contains(&"rooms::read::x".to_owned()), "{paths:?}");
}

/// The reader is not blind: edges known to exist are found.
#[test]
fn known_imports_are_seen() {
    let graph = imports();
    for (from, to) in [
        ("rooms", "push"),
        ("rooms", "app"),
        ("http", "hub"),
        ("main", "server"),
        ("sync", "rooms"),
        ("push", "rooms::read"),
    ] {
        assert!(
            graph.get(from).is_some_and(|t| t.contains(to)),
            "{from} -> {to} not seen: {:?}",
            graph.get(from)
        );
    }
}

/// Lines of a file's code outside its unit tests, comments left out.
fn code_lines(path: &Path) -> Vec<String> {
    code_of(path)
        .lines()
        .map(|l| l.split("//").next().unwrap_or("").to_owned())
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn sql_is_only_in_storage() {
    let calls = [".prepare(", "prepare_cached(", ".execute(", "query_row(", "execute_batch(", "query_map("];
    let mut found = Vec::new();
    for (module, path) in modules() {
        if module == "storage" || module.starts_with("storage::") {
            continue;
        }
        for line in code_lines(&path) {
            if calls.iter().any(|c| line.contains(c)) {
                found.push(format!("{module}: {}", line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "SQL outside storage/:\n{}", found.join("\n"));
}

#[test]
fn only_http_knows_tiny_http() {
    let mut found = Vec::new();
    for (module, path) in modules() {
        if module == "http" || module.starts_with("http::") {
            continue;
        }
        for line in code_lines(&path) {
            if line.contains("tiny_http") {
                found.push(format!("{module}: {}", line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "tiny_http outside http/:\n{}", found.join("\n"));
}

/// The rows of the marked table `name` in ARCHITECTURE.md, as cells.
fn doc_rows(name: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let (start, end) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let a = text.find(&start).unwrap_or_else(|| panic!("{start} in ARCHITECTURE.md"));
    let b = text.find(&end).unwrap_or_else(|| panic!("{end} in ARCHITECTURE.md"));
    text[a..b]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().trim_matches('`').to_owned()).collect())
        .filter(|cells: &Vec<String>| !matches!(cells[0].as_str(), "Table" | "Method"))
        .collect()
}

#[test]
fn every_table_is_on_the_map() {
    let schema = std::fs::read_to_string(root().join("schema.sql")).expect("schema.sql");
    let tables: BTreeSet<String> = schema
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE TABLE ").or_else(|| l.strip_prefix("CREATE VIRTUAL TABLE ")))
        .map(|l| l.split([' ', '(']).next().unwrap_or("").to_owned())
        .collect();
    let mapped: BTreeSet<String> = doc_rows("tables").into_iter().map(|r| r[0].clone()).collect();
    assert!(tables.len() > 40, "{tables:?}");
    assert_eq!(tables, mapped, "schema.sql's tables and ARCHITECTURE.md's table map differ");
}

/// `(METHOD, pattern, handler)` of every route the router's table adds,
/// read from its source: each `add(…)`/`add_kind(…)` call's arguments.
fn router_routes() -> BTreeSet<(String, String, String)> {
    let src = std::fs::read_to_string(root().join("src/http/router.rs")).expect("router.rs");
    let body = &src[src.find("fn table()").expect("fn table")..src.find("fn routes()").expect("fn routes")];
    let mut out = BTreeSet::new();
    let mut rest = body;
    while let Some(i) = rest.find("add(").into_iter().chain(rest.find("add_kind(")).min() {
        let open = i + rest[i..].find('(').unwrap() + 1;
        let (mut depth, mut end) = (1, open);
        for (k, c) in rest[open..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = open + k;
                break;
            }
        }
        let mut args = Vec::new();
        let (mut d, mut cur) = (0, String::new());
        for c in rest[open..end].chars() {
            match c {
                '(' | '[' => d += 1,
                ')' | ']' => d -= 1,
                _ => {}
            }
            if c == ',' && d == 0 {
                args.push(cur.trim().to_owned());
                cur.clear();
            } else {
                cur.push(c);
            }
        }
        args.push(cur.trim().to_owned());
        args.retain(|a| !a.is_empty());
        if args.len() == 6 && args[2].starts_with('"') {
            let handler = args[3].trim();
            let inner = match (handler.find('('), handler.ends_with(')')) {
                (Some(p), true) => &handler[p + 1..handler.len() - 1],
                _ => handler,
            };
            out.insert((args[1].to_uppercase(), args[2].trim_matches('"').to_owned(), inner.to_owned()));
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn every_endpoint_is_on_the_map() {
    let routes = router_routes();
    assert!(routes.len() > 100, "read {} routes from the router", routes.len());
    let mapped: BTreeSet<(String, String, String)> =
        doc_rows("endpoints").into_iter().map(|r| (r[0].clone(), r[2].clone(), r[3].clone())).collect();
    let missing: Vec<_> = routes.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&routes).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes not on the map: {missing:?}\nmap rows with no route: {stale:?}"
    );
}
