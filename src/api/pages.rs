//! The pages the links in verification and reset mails and in the notice
//! of an email change open: `/verify`, `/reset` and `/revert`. The link carries the email and the code in its fragment
//! (`#email=…&code=…`), which browsers never send, so no server sees a code
//! in a URL; and the page spends the code only when the person presses its
//! button, so a link scanner that opens the link spends nothing.
//!
//! Each page is one self-contained document with an inline script and
//! style; the script's part the pages share is `pages/code_link.js`.
//! Its `Content-Security-Policy` allows exactly those (by their SHA-256),
//! requests to this origin only, and no framing.

use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rocket::http::Header;
use rocket::{get, routes, Responder, Route};
use sha2::{Digest, Sha256};

pub fn routes() -> Vec<Route> {
    routes![get_verify, get_reset, get_revert]
}

/// What both pages' scripts share, put where each says `/* code_link.js */`.
const CODE_LINK: &str = include_str!("pages/code_link.js");

static VERIFY: LazyLock<String> =
    LazyLock::new(|| with_code_link(include_str!("pages/verify.html")));
static RESET: LazyLock<String> = LazyLock::new(|| with_code_link(include_str!("pages/reset.html")));
static REVERT: LazyLock<String> =
    LazyLock::new(|| with_code_link(include_str!("pages/revert.html")));
static VERIFY_POLICY: LazyLock<String> = LazyLock::new(|| policy(&VERIFY));
static RESET_POLICY: LazyLock<String> = LazyLock::new(|| policy(&RESET));
static REVERT_POLICY: LazyLock<String> = LazyLock::new(|| policy(&REVERT));

fn with_code_link(page: &str) -> String {
    page.replace("    /* code_link.js */\n", CODE_LINK)
}

/// A page with its policy; the Shield headers come on top.
#[derive(Responder)]
#[response(content_type = "html")]
struct Page {
    html: &'static str,
    policy: Header<'static>,
}

impl Page {
    fn new(html: &'static str, policy: &'static str) -> Self {
        Self {
            html,
            policy: Header::new("Content-Security-Policy", policy),
        }
    }
}

/// The page a verification link opens.
#[get("/verify")]
fn get_verify() -> Page {
    Page::new(&VERIFY, &VERIFY_POLICY)
}

/// The page a password reset link opens.
#[get("/reset")]
fn get_reset() -> Page {
    Page::new(&RESET, &RESET_POLICY)
}

/// The page the link in the notice of an email change opens, at the old
/// address.
#[get("/revert")]
fn get_revert() -> Page {
    Page::new(&REVERT, &REVERT_POLICY)
}

/// The contents of every `<{tag}>…</{tag}>` in `html` (the pages' own
/// elements carry no attributes).
fn elements<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find(&close).expect("every element is closed");
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

fn hashes(contents: &[&str]) -> String {
    contents
        .iter()
        .map(|content| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(content))))
        .collect::<Vec<_>>()
        .join(" ")
}

fn policy(html: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes(&elements(html, "script")),
        hashes(&elements(html, "style")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_has_one_script_and_one_style_and_its_policy_names_them() {
        for html in [VERIFY.as_str(), RESET.as_str(), REVERT.as_str()] {
            let scripts = elements(html, "script");
            let styles = elements(html, "style");
            assert_eq!((scripts.len(), styles.len()), (1, 1));
            let policy = policy(html);
            for content in [scripts[0], styles[0]] {
                let hash = STANDARD.encode(Sha256::digest(content));
                assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");
            }
            assert!(!policy.contains("unsafe"), "{policy}");
        }
    }

    #[test]
    fn each_page_carries_the_shared_script_in_place_of_its_mark() {
        for html in [VERIFY.as_str(), RESET.as_str(), REVERT.as_str()] {
            assert!(html.contains("function linkFields(shape)"));
            assert!(!html.contains("/* code_link.js */"));
        }
    }

    #[test]
    fn the_pages_load_nothing_from_elsewhere() {
        for html in [VERIFY.as_str(), RESET.as_str(), REVERT.as_str()] {
            assert!(!html.contains("http://") && !html.contains("https://"));
            assert!(!html.contains("<script src") && !html.contains("<link"));
            assert!(
                !html.contains("innerHTML"),
                "the fragment is shown as text only"
            );
        }
    }
}
