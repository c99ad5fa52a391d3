//! HTML for the portal, written as Rust functions (checked by the compiler
//! like any other code): every value from outside goes through [`esc`], and
//! each page is wrapped in one [`layout`].

use std::fmt::Write as _;

/// `s` escaped for HTML text and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Which directories a section is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum For {
    All,
    /// Directories an IdP pushes SCIM to.
    Pushed,
    /// Directories Roster pulls (LDAP, Active Directory, Google).
    Pulled,
}

/// The portal's sections, in the navigation's order: (path, label, for).
const SECTIONS: [(&str, &str, For); 7] = [
    ("/portal", "Set up", For::All),
    ("/portal/tokens", "Tokens", For::Pushed),
    ("/portal/test", "Test the connection", For::Pushed),
    ("/portal/sync", "Sync status", For::Pulled),
    ("/portal/activity", "Activity", For::All),
    ("/portal/directory", "Users and groups", For::All),
    ("/portal/mappings", "Attribute mapping", For::All),
];

/// What the header shows of the signed-in session.
pub struct Chrome<'a> {
    /// The directory's name.
    pub directory: &'a str,
    /// The current section's path.
    pub current: &'a str,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: &'a str,
    /// Whether Roster pulls the directory (no tokens, a sync status).
    pub pulled: bool,
}

/// A complete page: head (own stylesheet and script only), skip link,
/// navigation when signed in, and `body` under one `<h1>`.
pub fn layout(title: &str, chrome: Option<&Chrome<'_>>, body: &str) -> String {
    let mut page = String::with_capacity(body.len() + 2048);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Directory sync</title>\
         <link rel=\"stylesheet\" href=\"/portal/static/portal.css\">\
         <script src=\"/portal/static/portal.js\" defer></script></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a><header>",
        title = esc(title)
    );
    if let Some(chrome) = chrome {
        header(&mut page, chrome);
    } else {
        page.push_str("<p class=\"brand\">Directory sync</p>");
    }
    let _ = write!(
        page,
        "</header><main id=\"main\" tabindex=\"-1\"><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    page
}

fn header(page: &mut String, chrome: &Chrome<'_>) {
    let _ = write!(
        page,
        "<p class=\"brand\">Directory sync · <span id=\"directory-name\">{}</span></p>\
         <nav aria-label=\"Portal\"><ul>",
        esc(chrome.directory)
    );
    let shown = if chrome.pulled {
        For::Pulled
    } else {
        For::Pushed
    };
    for (path, label, _) in SECTIONS.iter().filter(|s| s.2 == For::All || s.2 == shown) {
        let current = if *path == chrome.current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(page, "<li><a href=\"{path}\"{current}>{label}</a></li>");
    }
    let _ = write!(
        page,
        "</ul></nav><form method=\"post\" action=\"/portal/signout\" class=\"signout\">{}\
         <button type=\"submit\" class=\"link\">Sign out</button></form>",
        csrf_field(chrome.csrf)
    );
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A value with a copy button (shown by the script; without it the value is
/// plain selectable text).
pub fn copyable(id: &str, value: &str) -> String {
    format!(
        "<div class=\"copy\"><code id=\"{id}\">{}</code>\
         <button type=\"button\" data-copy=\"{id}\" hidden>Copy</button></div>",
        esc(value)
    )
}

/// A notice box: `kind` is `ok`, `warn` or `error`.
pub fn notice(kind: &str, html: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!("<div class=\"notice {kind}\" role=\"{role}\">{html}</div>")
}

/// A protobuf timestamp as `2026-12-06 06:40:26 UTC`, or `—`.
pub fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map_or_else(
            || "—".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn pages_have_one_h1_and_a_skip_link() {
        let page = layout("Tokens <b>", None, "<p>x</p>");
        assert_eq!(page.matches("<h1>").count(), 1);
        assert!(page.contains("Tokens &lt;b&gt;"));
        assert!(page.contains("href=\"#main\""));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no third-party assets"
        );
    }
}
