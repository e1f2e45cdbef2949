//! The module structure the README and `lib.rs` promise, read from the source:
//! no import cycle among `src/` modules except `split`'s readers with their
//! shared entry type; leaf helpers that depend on nothing of ours; a store that
//! imports none of its callers. An import is a `crate::` or `super::` path
//! outside comments; `#[cfg(test)]` modules are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`split::tarread`, `store`, `lib`) → its source with comments
/// and test modules removed.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(&root).unwrap().with_extension("");
            let name = rel.to_string_lossy().replace('/', "::");
            let name = name.strip_suffix("::mod").unwrap_or(&name).to_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let code: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
            out.insert(name, code.join("\n"));
        }
    }
    out
}

/// The longest module that a path names (`split::names::DosTime` → `split::names`).
fn resolve(path: &str, mods: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    (1..=parts.len())
        .rev()
        .map(|i| parts[..i].join("::"))
        .find(|c| mods.contains_key(c))
}

fn imports(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let ident = |s: &str| {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
    };
    let mut graph = BTreeMap::new();
    for (name, code) in mods {
        let mut to = BTreeSet::new();
        // `super::x` in module `a::b` (whether a file or a `mod.rs`) names `a::x`.
        let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
        let mut add = |path: String| {
            if let Some(m) = resolve(&path, mods) {
                if &m != name && !name.starts_with(&format!("{m}::")) {
                    to.insert(m);
                }
            }
        };
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                for item in group.split('}').next().unwrap().split(',') {
                    add(ident(item.trim()));
                }
            } else {
                add(ident(rest));
            }
        }
        for (i, _) in code.match_indices("super::") {
            let rest = &code[i + 7..];
            let base = parent;
            let items: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap().split(',').map(|s| ident(s.trim())).collect(),
                None => vec![ident(rest)],
            };
            for item in items {
                add(if base.is_empty() { item } else { format!("{base}::{item}") });
            }
        }
        graph.insert(name.clone(), to);
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<BTreeSet<String>>,
    }
    impl<'g> T<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in &self.g[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut c = BTreeSet::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on.remove(w);
                    c.insert(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if c.len() > 1 {
                    self.out.push(c);
                }
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn no_import_cycles_and_leaves_depend_on_nothing_of_ours() {
    let mods = modules();
    let graph = imports(&mods);
    assert!(graph.len() > 60, "read only {} modules", graph.len());
    // The graph is read right: known edges are there.
    assert!(graph["engine"].contains("store::jobs"), "{:?}", graph["engine"]);
    assert!(graph["split::stream"].contains("split::handoff"), "{:?}", graph["split::stream"]);
    // split's readers share the entry type they produce: the one allowed cycle.
    let readers: BTreeSet<&str> = ["split::source", "split::zipread", "split::tarread", "split::tarinput"].into();
    for c in cycles(&graph) {
        assert!(c.iter().all(|m| readers.contains(m.as_str())), "import cycle: {c:?}");
    }
    for leaf in ["text", "clock", "ids", "glob", "signals", "mem", "triggers::cron", "error"] {
        assert!(graph[leaf].is_empty(), "{leaf} is a leaf but imports {:?}", graph[leaf]);
    }
    assert!(graph["fsx"].iter().all(|m| m == "error"), "fsx imports {:?}", graph["fsx"]);
    for (m, to) in graph.iter().filter(|(m, _)| m.starts_with("store")) {
        for caller in ["cli", "http", "engine", "campaign", "daemon", "triggers"] {
            assert!(
                !to.iter().any(|t| t == caller || t.starts_with(&format!("{caller}::"))),
                "{m} imports its caller {caller}: {to:?}"
            );
        }
    }
    for (m, to) in graph.iter().filter(|(m, _)| m.starts_with("split")) {
        for daemon_side in ["store", "engine", "http", "daemon", "campaign", "triggers", "cli", "config"] {
            assert!(
                !to.iter().any(|t| t == daemon_side || t.starts_with(&format!("{daemon_side}::"))),
                "{m} (the splitting library) imports {daemon_side}: {to:?}"
            );
        }
    }
}
