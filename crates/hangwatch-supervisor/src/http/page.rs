//! The status page at `/` and an incident's report at `/incidents/ID`.
//!
//! Plain HTML, CSS and JavaScript embedded in the binary: no build step, nothing fetched from
//! anywhere but this endpoint (the Content-Security-Policy says so to the browser too). The
//! page reads `/api/status` and `/api/incidents`, and follows `/api/stream` (server-sent
//! events) to update as things happen; see `assets/app.js`.

use std::fmt::Write as _;

use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};

use super::server::{Body, Context, respond, text};

const INDEX_HTML: &str = include_str!("assets/index.html");
pub(crate) const APP_JS: &str = include_str!("assets/app.js");
pub(crate) const STYLE_CSS: &str = include_str!("assets/style.css");

/// Only this endpoint's own scripts, styles and requests.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) fn index() -> hyper::Response<Body> {
    html(StatusCode::OK, Bytes::from_static(INDEX_HTML.as_bytes()))
}

pub(crate) fn asset(body: &'static str, content_type: &'static str) -> hyper::Response<Body> {
    respond(
        StatusCode::OK,
        content_type,
        Bytes::from_static(body.as_bytes()),
    )
}

/// An incident's text report (threads, stacks, the output tail) as a page.
pub(crate) async fn incident(context: &Context, id: &str) -> hyper::Response<Body> {
    let Some((diagnosis, report)) = super::api::read_incident(context, id).await else {
        return text(StatusCode::NOT_FOUND, "no such incident\n");
    };
    let logged = context
        .telemetry
        .lock()
        .incidents
        .iter()
        .find(|i| i.id.as_deref() == Some(id))
        .map(|i| i.verdict.clone());
    let verdict: Vec<String> = logged.unwrap_or_else(|| verdict_of(diagnosis.as_ref()));
    let mut page = String::with_capacity(4096 + report.as_ref().map_or(0, String::len));
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>incident {id} · hangwatch</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body class=\"report\"><header><a href=\"/\">← hangwatch</a><h1>incident {id}</h1></header><main>",
        id = Escaped(id)
    );
    if !verdict.is_empty() {
        page.push_str("<section class=\"verdict\"><h2>Verdict</h2><ul>");
        for line in &verdict {
            let _ = write!(page, "<li>{}</li>", Escaped(line));
        }
        page.push_str("</ul></section>");
    }
    if let Some(report) = &report {
        let _ = write!(
            page,
            "<section><h2>Report</h2><pre class=\"report-text\">{}</pre></section>",
            Escaped(report)
        );
    }
    let _ = writeln!(
        page,
        "<p class=\"links\"><a href=\"/api/incidents/{id}\">the diagnosis as JSON</a></p></main></body></html>",
        id = Escaped(id)
    );
    html(StatusCode::OK, Bytes::from(page))
}

/// The verdict lines of a JSON diagnosis, for an incident older than this supervisor.
fn verdict_of(diagnosis: Option<&serde_json::Value>) -> Vec<String> {
    let lines = diagnosis
        .and_then(|d| {
            d.get("verdict")
                .or_else(|| d.get("diagnosis")?.get("verdict"))
        })
        .and_then(|v| v.as_array());
    lines
        .map(|lines| {
            lines
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn html(status: StatusCode, body: Bytes) -> hyper::Response<Body> {
    let mut response = respond(status, "text/html; charset=utf-8", body);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    response
}

/// Text with `&`, `<`, `>`, `"` and `'` escaped for HTML.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            Escaped("<script>\"a\" & 'b'</script>").to_string(),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_page_fetches_nothing_from_elsewhere() {
        for asset in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!asset.contains("http://"), "an absolute URL in an asset");
            assert!(!asset.contains("https://"), "an absolute URL in an asset");
            assert!(!asset.contains("//cdn"), "a CDN in an asset");
        }
    }
}
