//! The README starts with what a person needs: how to run the service and a
//! walk-through, before the API's reference and long before the internals,
//! which live in `docs/`. Its links to `docs/` lead to files, and its route
//! table lists every route the OpenAPI document has, and no other.

use std::collections::BTreeSet;
use std::path::Path;

const README: &str = include_str!("../README.md");
const OPENAPI: &str = include_str!("../src/api/openapi.json");

/// The top-level sections that must come in this order; others may stand
/// between them.
const ORDER: [&str; 7] = [
    "Quick start",
    "Try it with curl",
    "API",
    "Settings",
    "Operating the service",
    "How it works",
    "Development",
];

/// The README's lines outside fenced code blocks, where a `#` starts a
/// heading rather than a shell comment.
fn prose_lines() -> Vec<&'static str> {
    let mut inside = false;
    README
        .lines()
        .filter(|line| {
            if line.starts_with("```") {
                inside = !inside;
                return false;
            }
            !inside
        })
        .collect()
}

/// The titles of the `## ` headings, in order.
fn sections() -> Vec<&'static str> {
    prose_lines()
        .into_iter()
        .filter_map(|line| line.strip_prefix("## "))
        .map(str::trim)
        .collect()
}

/// The lines of the section titled `title`, up to the next `## ` heading.
fn section(title: &str) -> Vec<&'static str> {
    prose_lines()
        .into_iter()
        .skip_while(|line| line.strip_prefix("## ").map(str::trim) != Some(title))
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .collect()
}

/// Every link target in `text`: what stands between `](` and `)`.
fn link_targets(text: &str) -> Vec<&str> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target))
        .collect()
}

/// `METHOD /path` with every `{parameter}` as `{}`, so that the README's
/// `{id}` and `{email}` both stand for the OpenAPI document's `{user}`.
fn route(method: &str, path: &str) -> String {
    let mut normalised = String::new();
    let mut in_parameter = false;
    for character in path.chars() {
        match character {
            '{' => {
                in_parameter = true;
                normalised.push_str("{}");
            }
            '}' => in_parameter = false,
            _ if in_parameter => {}
            _ => normalised.push(character),
        }
    }
    format!("{} {normalised}", method.to_uppercase())
}

/// The routes in the first column of the API section's route table, each
/// `` `METHOD /path` `` (a query string aside).
fn readme_routes() -> BTreeSet<String> {
    let api = section("API");
    let table = api
        .iter()
        .skip_while(|line| !line.starts_with("| Method and path |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'));
    let mut routes = BTreeSet::new();
    for row in table {
        let first_column = row.split('|').nth(1).unwrap_or_default();
        for quoted in first_column.split('`').skip(1).step_by(2) {
            let (method, path) = quoted
                .split_once(' ')
                .unwrap_or_else(|| panic!("not `METHOD /path` in the route table: {quoted}"));
            let path = path.split('?').next().unwrap_or_default();
            routes.insert(route(method, path));
        }
    }
    routes
}

/// Every operation of the OpenAPI document, as `METHOD /path`.
fn openapi_routes() -> BTreeSet<String> {
    let document: serde_json::Value =
        serde_json::from_str(OPENAPI).expect("src/api/openapi.json is JSON");
    let paths = document["paths"]
        .as_object()
        .expect("the OpenAPI document has paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let operations = item.as_object().expect("a path item is an object");
        for method in operations.keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                routes.insert(route(method, path));
            }
        }
    }
    routes
}

#[test]
fn the_readme_puts_the_walk_through_before_the_internals() {
    let sections = sections();
    let mut from = 0;
    let mut after = "the start";
    for wanted in ORDER {
        match sections[from..].iter().position(|title| *title == wanted) {
            Some(at) => from += at + 1,
            None => panic!(
                "README.md needs a `## {wanted}` section after {after:?} (the order is \
                 {ORDER:?}); its sections are {sections:?}"
            ),
        }
        after = wanted;
    }
    assert_eq!(
        sections.last(),
        Some(&"Development"),
        "Development is the README's last section"
    );
}

#[test]
fn the_walk_through_shows_the_answer_to_expect_after_its_commands() {
    let walk_through = README
        .split_once("## Try it with curl")
        .and_then(|(_, rest)| rest.split_once("```sh\n"))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .expect("a ```sh block follows the `## Try it with curl` heading");
    let expected = walk_through
        .lines()
        .filter(|line| line.starts_with("# → "))
        .count();
    let curls = walk_through
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains("curl "))
        .count();
    assert!(
        expected > 0,
        "the walk-through shows no `# → STATUS …` answer"
    );
    assert_eq!(
        expected, curls,
        "every curl command of the walk-through has its expected answer under it"
    );
}

#[test]
fn every_link_to_docs_leads_to_a_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs: Vec<&str> = link_targets(README)
        .into_iter()
        .filter(|target| target.starts_with("docs/"))
        .collect();
    assert!(!docs.is_empty(), "the README links to its docs/ pages");
    for target in docs {
        let file = target.split('#').next().unwrap_or_default();
        assert!(
            root.join(file).is_file(),
            "README.md links to {target}, but there is no {file}"
        );
    }
}

#[test]
fn every_docs_page_starts_with_its_title_and_a_link_back_to_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pages = std::fs::read_dir(root.join("docs")).expect("docs/ is a directory");
    for page in pages {
        let path = page.expect("a docs/ entry").path();
        if path.extension().and_then(|extension| extension.to_str()) != Some("md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a docs page is text");
        let mut lines = text.lines().filter(|line| !line.trim().is_empty());
        let title = lines.next().unwrap_or_default();
        assert!(
            title.starts_with("# "),
            "{} starts with a `# Title`, not {title:?}",
            path.display()
        );
        let next = lines.next().unwrap_or_default();
        assert!(
            link_targets(next).contains(&"../README.md"),
            "{}: the line under its title links back to ../README.md",
            path.display()
        );
        for target in link_targets(&text) {
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") {
                continue;
            }
            assert!(
                path.parent().unwrap().join(file).exists(),
                "{} links to {target}, but there is no such file",
                path.display()
            );
        }
    }
}

#[test]
fn the_route_table_lists_every_route_of_the_openapi_document_and_no_other() {
    let readme = readme_routes();
    let openapi = openapi_routes();
    let missing: Vec<&String> = openapi.difference(&readme).collect();
    assert!(
        missing.is_empty(),
        "README.md's route table (under ## API) lacks {missing:?}"
    );
    let unknown: Vec<&String> = readme.difference(&openapi).collect();
    assert!(
        unknown.is_empty(),
        "README.md's route table lists routes the OpenAPI document does not have: {unknown:?}"
    );
}
