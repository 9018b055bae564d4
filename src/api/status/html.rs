//! The status pages' HTML: a writer that escapes every value, and the frame of a page.
//!
//! Markup goes in only as `&'static str` ([`Html::tag`]): text that is not known at
//! compile time (a name, an attribute, an address, an error message) can reach the page
//! only through [`Html::text`] or [`Html::link`], which escape it. So a value a client
//! chose is text on the page, never markup, whatever it holds.

use std::fmt::{self, Display, Write};

/// A page or fragment being written.
#[derive(Default)]
pub struct Html(String);

impl Html {
    /// Markup fixed at compile time.
    pub fn tag(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// A value, escaped for both text and a quoted attribute.
    pub fn text(&mut self, value: impl Display) -> &mut Self {
        // Formatting straight into the escaper: no intermediate string per value.
        let _ = write!(Escaper(&mut self.0), "{value}");
        self
    }

    /// `<td>value</td>`.
    pub fn cell(&mut self, value: impl Display) -> &mut Self {
        self.tag("<td>").text(value).tag("</td>")
    }

    /// A cell whose class says how to colour it (`ok`, `bad`, `warn`, `muted`).
    pub fn marked(&mut self, class: &'static str, value: impl Display) -> &mut Self {
        self.tag("<td class=\"")
            .tag(class)
            .tag("\">")
            .text(value)
            .tag("</td>")
    }

    /// A row of cells.
    pub fn row(&mut self, cells: &[&dyn Display]) -> &mut Self {
        self.tag("<tr>");
        for cell in cells {
            self.cell(cell);
        }
        self.tag("</tr>")
    }

    /// A table head.
    pub fn head(&mut self, names: &[&'static str]) -> &mut Self {
        self.tag("<thead><tr>");
        for name in names {
            self.tag("<th>").tag(name).tag("</th>");
        }
        self.tag("</tr></thead>")
    }

    /// A link to `/ui/` followed by `segments`, each percent-encoded, showing `text`.
    pub fn link(&mut self, segments: &[&str], text: impl Display) -> &mut Self {
        self.tag("<a href=\"/ui");
        for segment in segments {
            self.0.push('/');
            percent_encode(segment, &mut self.0);
        }
        self.tag("\">").text(text).tag("</a>")
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Escapes what is written through it: `& < > " '` become entities.
struct Escaper<'a>(&'a mut String);

impl Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

/// A path segment with everything but RFC 3986's unreserved characters percent-encoded
/// (so it is also safe, unescaped, inside a quoted attribute).
fn percent_encode(segment: &str, out: &mut String) {
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte));
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

/// The pages, in the order of the navigation bar: (path under `/ui`, title).
pub const PAGES: [(&str, &str); 4] = [
    ("/ui/", "Namespaces"),
    ("/ui/sources", "Sources"),
    ("/ui/changes", "Changes"),
    ("/ui/dns", "DNS"),
];

/// A whole page: head, navigation, `fragment` (the part the live script replaces) inside
/// `<main id="live">`, tagged with `etag` so the script's first poll can answer 304.
pub fn page(title: &str, current: &str, fragment: &str, etag: &str) -> String {
    let mut html = Html::default();
    html.tag(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/ui/assets/style.css\"><title>",
    )
    .text(title)
    .tag(" · muster</title></head><body><header><strong>muster</strong><nav>");
    for (path, name) in PAGES {
        html.tag("<a href=\"").tag(path).tag("\"");
        if path == current {
            html.tag(" aria-current=\"page\"");
        }
        html.tag(">").tag(name).tag("</a> ");
    }
    html.tag("</nav></header><h1>")
        .text(title)
        .tag("</h1><main id=\"live\" data-etag=\"")
        .text(etag)
        .tag("\">");
    let mut page = html.into_string();
    page.push_str(fragment);
    page.push_str(
        "</main><footer><span id=\"live-state\">updates on reload</span> · \
         read-only</footer><script src=\"/ui/assets/live.js\"></script></body></html>\n",
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_markup_is_not() {
        let mut html = Html::default();
        html.tag("<td>")
            .text("<script>alert('x')</script> & \"q\"")
            .tag("</td>");
        assert_eq!(
            html.into_string(),
            "<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;</td>"
        );
    }

    #[test]
    fn links_percent_encode_every_segment() {
        let mut html = Html::default();
        html.link(&["namespaces", "a\"b", "x/y z"], "<n>");
        assert_eq!(
            html.into_string(),
            "<a href=\"/ui/namespaces/a%22b/x%2Fy%20z\">&lt;n&gt;</a>"
        );
    }
}
