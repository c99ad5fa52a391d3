//! Per-provider setup steps, taken at compile time from `docs/idp/*.md`
//! (their "Setup" and "Test connection failed" sections), so the portal and
//! the documentation can never say different things.

use roster_proto::admin::ProviderKind;

use super::html::esc;

/// One identity provider the portal offers.
pub struct Provider {
    pub kind: ProviderKind,
    /// Form value and element id.
    pub slug: &'static str,
    pub name: &'static str,
    doc: &'static str,
}

macro_rules! provider {
    ($kind:ident, $slug:literal, $name:literal) => {
        Provider {
            kind: ProviderKind::$kind,
            slug: $slug,
            name: $name,
            doc: include_str!(concat!("../../../../docs/idp/", $slug, ".md")),
        }
    };
}

/// Every provider, in the order the portal lists them.
pub const PROVIDERS: [Provider; 8] = [
    provider!(Okta, "okta", "Okta"),
    provider!(Entra, "entra", "Microsoft Entra ID (Azure AD)"),
    provider!(Google, "google", "Google Workspace"),
    provider!(Onelogin, "onelogin", "OneLogin"),
    provider!(Jumpcloud, "jumpcloud", "JumpCloud"),
    provider!(Pingone, "pingone", "PingOne / PingFederate"),
    provider!(Rippling, "rippling", "Rippling"),
    provider!(Generic, "generic", "Another SCIM 2.0 client"),
];

impl Provider {
    /// The provider of a directory (generic when unset).
    pub fn of(kind: i32) -> &'static Provider {
        PROVIDERS
            .iter()
            .find(|p| p.kind as i32 == kind)
            .unwrap_or(&PROVIDERS[PROVIDERS.len() - 1])
    }

    /// The provider with this form value.
    pub fn by_slug(slug: &str) -> Option<&'static Provider> {
        PROVIDERS.iter().find(|p| p.slug == slug)
    }

    /// The setup steps, as HTML.
    pub fn setup_html(&self) -> String {
        markdown(section(self.doc, "## Setup"))
    }

    /// What to check when the IdP's connection test fails, as HTML.
    pub fn troubleshooting_html(&self) -> String {
        markdown(section(self.doc, "## Test connection failed"))
    }
}

/// The text of the section whose heading starts with `heading`, up to the
/// next `## ` heading.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let Some(start) = doc.find(heading) else {
        return "";
    };
    let body = &doc[start..];
    let body = body.split_once('\n').map_or("", |(_, rest)| rest);
    match body.find("\n## ") {
        Some(end) => &body[..end],
        None => body,
    }
}

/// The small part of Markdown the setup sections use: numbered steps,
/// nested bullets, paragraphs, `**bold**`, `*italic*`, `` `code` `` and
/// links (kept as their text: they point into the documentation). Steps
/// that tell an operator to run `roster admin create-…` are left out: the
/// portal has done that already.
fn markdown(md: &str) -> String {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for line in md.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            blocks.extend(current.take());
        } else if let Some(text) = numbered(trimmed).filter(|_| indent == 0) {
            push_item(&mut blocks, &mut current, Kind::Steps, text);
        } else if let Some(text) = trimmed.strip_prefix("- ") {
            let kind = if indent > 0 {
                Kind::Nested
            } else {
                Kind::Bullets
            };
            push_item(&mut blocks, &mut current, kind, text);
        } else {
            match &mut current {
                Some(block) => block.append(trimmed),
                None => current = Some(Block::paragraph(trimmed)),
            }
        }
    }
    blocks.extend(current);
    render(&blocks)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Paragraph,
    Steps,
    Bullets,
    Nested,
}

/// A paragraph, or a list item with its nested bullets.
struct Block {
    kind: Kind,
    text: String,
    nested: Vec<String>,
}

impl Block {
    fn paragraph(text: &str) -> Self {
        Self {
            kind: Kind::Paragraph,
            text: text.to_owned(),
            nested: Vec::new(),
        }
    }

    fn append(&mut self, text: &str) {
        let target = self.nested.last_mut().unwrap_or(&mut self.text);
        target.push(' ');
        target.push_str(text);
    }
}

fn numbered(line: &str) -> Option<&str> {
    let (n, rest) = line.split_once(". ")?;
    n.chars().all(|c| c.is_ascii_digit()).then_some(rest)
}

fn push_item(blocks: &mut Vec<Block>, current: &mut Option<Block>, kind: Kind, text: &str) {
    if kind == Kind::Nested
        && let Some(parent) = current.as_mut().filter(|b| b.kind != Kind::Paragraph)
    {
        parent.nested.push(text.to_owned());
        return;
    }
    blocks.extend(current.take());
    *current = Some(Block {
        kind: if kind == Kind::Nested {
            Kind::Bullets
        } else {
            kind
        },
        text: text.to_owned(),
        nested: Vec::new(),
    });
}

fn render(blocks: &[Block]) -> String {
    let mut out = String::new();
    let mut open: Option<Kind> = None;
    for block in blocks {
        if block.kind != Kind::Paragraph && block.text.contains("roster admin create-") {
            continue;
        }
        let list = match block.kind {
            Kind::Steps => Some("ol"),
            Kind::Bullets | Kind::Nested => Some("ul"),
            Kind::Paragraph => None,
        };
        if open != Some(block.kind) {
            close(&mut out, open);
            if let Some(tag) = list {
                out.push_str(&format!("<{tag}>"));
            }
            open = list.map(|_| block.kind);
        }
        match list {
            None => out.push_str(&format!("<p>{}</p>", inline(&block.text))),
            Some(_) => {
                out.push_str(&format!("<li>{}", inline(&block.text)));
                if !block.nested.is_empty() {
                    out.push_str("<ul>");
                    for item in &block.nested {
                        out.push_str(&format!("<li>{}</li>", inline(item)));
                    }
                    out.push_str("</ul>");
                }
                out.push_str("</li>");
            }
        }
    }
    close(&mut out, open);
    out
}

fn close(out: &mut String, open: Option<Kind>) {
    match open {
        Some(Kind::Steps) => out.push_str("</ol>"),
        Some(_) => out.push_str("</ul>"),
        None => {}
    }
}

/// Inline Markdown of one line, escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    // Odd pieces between backticks are code, taken literally.
    for (i, piece) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", esc(piece)));
        } else {
            out.push_str(&emphasis(&links(piece)));
        }
    }
    out
}

/// `[text](target)` → text (escaped).
fn links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some((label, tail)) = after.split_once("](") else {
            break;
        };
        let Some((_, tail)) = tail.split_once(')') else {
            break;
        };
        out.push_str(&esc(&rest[..open]));
        out.push_str(&esc(label));
        rest = tail;
    }
    out.push_str(&esc(rest));
    out
}

/// `**x**` → strong, `*x*` → em, on already escaped text.
fn emphasis(text: &str) -> String {
    let strong = toggle(text, "**", "strong");
    toggle(&strong, "*", "em")
}

fn toggle(text: &str, marker: &str, tag: &str) -> String {
    let pieces: Vec<&str> = text.split(marker).collect();
    if pieces.len() < 3 {
        return text.to_owned();
    }
    let mut out = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            // An unpaired last marker stays as it was.
            let paired = i < pieces.len() - 1 || pieces.len() % 2 == 1;
            match (paired, i % 2) {
                (true, 1) => out.push_str(&format!("<{tag}>")),
                (true, _) => out.push_str(&format!("</{tag}>")),
                (false, _) => out.push_str(marker),
            }
        }
        out.push_str(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_setup_steps_and_troubleshooting() {
        for p in &PROVIDERS {
            let setup = p.setup_html();
            assert!(setup.contains("<li>"), "{}: {setup}", p.slug);
            assert!(!setup.contains("roster admin create-"), "{}", p.slug);
            assert!(!p.troubleshooting_html().is_empty(), "{}", p.slug);
        }
    }

    #[test]
    fn okta_steps_keep_the_facts_of_the_docs() {
        let okta = Provider::by_slug("okta").unwrap().setup_html();
        assert!(
            okta.contains("<strong>SCIM connector base URL</strong>"),
            "{okta}"
        );
        assert!(okta.contains("<code>userName</code>"));
        assert!(okta.contains("<ol><li>In the Okta Admin Console"), "{okta}");
        assert!(okta.contains("<ul><li>"));
        assert!(!okta.contains("]("), "links are text");
    }

    #[test]
    fn inline_markdown_is_escaped() {
        assert_eq!(
            inline("**a** <b> `x<y>` [t](u.md) *i*"),
            "<strong>a</strong> &lt;b&gt; <code>x&lt;y&gt;</code> t <em>i</em>"
        );
    }
}
