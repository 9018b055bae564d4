//! The pages rendered from a running registry and the zone it publishes, as muster wires
//! them; the browser's view of them is tests/interop/test_status_page.py.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Config;
use crate::registry::{Change, CheckSpec, InstanceKey, InstanceSpec, Registry, Snapshot, SourceId};

/// A registry (namespace `internal`) publishing into a zone; stops when dropped.
struct Fixture {
    registry: crate::registry::RegistryHandle,
    zone: PublishedZone,
    stop: CancellationToken,
}

impl Fixture {
    fn new() -> Self {
        let namespaces = Config::default().settings().unwrap().namespaces;
        let mut registry = Registry::new(Snapshot::new(namespaces, []));
        let zone = PublishedZone::default();
        registry.on_publish(zone.publish_hook());
        let handle = registry.handle();
        let stop = CancellationToken::new();
        tokio::spawn(registry.run(stop.clone()));
        Self {
            registry: handle,
            zone,
            stop,
        }
    }

    async fn apply(&self, change: Change) {
        self.registry.apply(change).await.unwrap();
    }

    fn service_page(&self, svc: &str) -> Rendered {
        let snapshot = self.registry.snapshot();
        service::render(&snapshot, &self.zone.load(), "internal", svc)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn key(id: &str) -> InstanceKey {
    InstanceKey {
        namespace: "internal".into(),
        service: "web".into(),
        id: id.into(),
    }
}

fn upsert(id: &str, spec: InstanceSpec) -> Change {
    Change::Upsert {
        key: key(id),
        spec,
        source: SourceId::api(),
    }
}

fn spec(ip: &str) -> InstanceSpec {
    InstanceSpec {
        ipv4: Some(ip.parse().unwrap()),
        port: Some(8080),
        healthy: true,
        ..InstanceSpec::default()
    }
}

#[tokio::test]
async fn a_service_page_shows_each_instance_with_the_records_dns_serves() {
    let fixture = Fixture::new();
    fixture.apply(upsert("i-1", spec("10.0.0.1"))).await;
    fixture.apply(upsert("i-2", spec("10.0.0.2"))).await;
    fixture
        .apply(Change::SetHealth {
            key: key("i-2"),
            healthy: false,
        })
        .await;
    let page = fixture.service_page("web").body.into_string();
    // The served instance's records as the zone holds them (hickory's presentation).
    assert!(
        page.contains("<code>web.internal. 5 IN A 10.0.0.1</code>"),
        "{page}"
    );
    assert!(
        page.contains("_web._tcp.internal. 5 IN SRV 1 1 8080 i-1.web.internal."),
        "{page}"
    );
    assert!(
        page.contains("<code>i-1.web.internal. 5 IN A 10.0.0.1</code>"),
        "{page}"
    );
    // The unhealthy one contributes none, and says why.
    let row = page.split("data-instance=\"i-2\"").nth(1).unwrap();
    let row = row.split("</tr>").next().unwrap();
    assert!(row.contains(">unhealthy<"), "{row}");
    assert!(row.contains("api reports it unhealthy"), "{row}");
    assert!(row.contains("none: not served"), "{row}");
    assert!(!page.contains("10.0.0.2</code>"), "{page}");
}

#[tokio::test]
async fn client_values_are_text_and_a_check_query_is_not_shown() {
    let fixture = Fixture::new();
    let mut hostile = spec("10.0.0.3");
    hostile
        .attributes
        .insert("note".into(), "<script>alert(1)</script>\"'&".into());
    let check: CheckSpec =
        serde_json::from_str(r#"{"http": "/health?token=s3cret-value"}"#).unwrap();
    hostile
        .extras
        .edit(|extras| extras.check = Some(Arc::new(check)));
    fixture.apply(upsert("i-3", hostile)).await;
    fixture
        .apply(Change::CheckResult {
            key: key("i-3"),
            healthy: false,
            reason: "2 consecutive checks failed: http://10.0.0.3:8080/health?token=s3cret-value: HTTP 500".into(),
        })
        .await;
    let page = fixture.service_page("web").body.into_string();
    assert!(
        page.contains("note=&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"),
        "{page}"
    );
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("HTTP GET /health?…"), "{page}");
    assert!(
        page.contains("http://10.0.0.3:8080/health?…: HTTP 500"),
        "{page}"
    );
    assert!(!page.contains("s3cret"), "{page}");
}

#[tokio::test]
async fn an_unknown_service_is_a_404_page_naming_it_escaped() {
    let fixture = Fixture::new();
    let page = fixture.service_page("<b>nope");
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.body
            .into_string()
            .contains("&quot;&lt;b&gt;nope&quot;")
    );
}

#[tokio::test]
async fn the_namespaces_page_counts_and_links_each_service() {
    let fixture = Fixture::new();
    fixture.apply(upsert("i-1", spec("10.0.0.1"))).await;
    let snapshot = fixture.registry.snapshot();
    let page = namespaces::render(&snapshot, &fixture.zone.load(), &fixture.registry);
    let page = page.body.into_string();
    assert!(
        page.contains("<a href=\"/ui/namespaces/internal/services/web\">web</a>"),
        "{page}"
    );
    let serial = format!("SOA serial <b>{}</b>", snapshot.revision);
    assert!(page.contains(&serial), "{page}");
}

#[test]
fn urls_lose_their_query_strings_and_nothing_else() {
    let reason = "2 consecutive checks failed: http://10.0.0.3:80/h?t=a:b&c=d: HTTP 500";
    assert_eq!(
        without_queries(reason),
        "2 consecutive checks failed: http://10.0.0.3:80/h?…: HTTP 500"
    );
    assert_eq!(without_queries("http://a/b?c"), "http://a/b?…");
    assert_eq!(
        without_queries("TCP 10.0.0.1:80: refused? yes"),
        "TCP 10.0.0.1:80: refused? yes"
    );
    assert_eq!(without_queries("http://a/b: x ?y"), "http://a/b: x ?y");
}

#[tokio::test]
async fn the_changes_page_lists_the_newest_change_first_with_its_reason() {
    let fixture = Fixture::new();
    fixture.apply(upsert("i-1", spec("10.0.0.1"))).await;
    fixture
        .apply(Change::CheckResult {
            key: key("i-1"),
            healthy: false,
            reason: "2 consecutive checks failed: <refused>".into(),
        })
        .await;
    let recent = fixture.registry.recent_changes();
    let page = changes::render(&recent).body.into_string();
    let unhealthy = page.find(">unhealthy<").expect("an unhealthy row");
    let registered = page.find(">registered<").expect("a registered row");
    assert!(unhealthy < registered, "newest first: {page}");
    assert!(
        page.contains("i-1 in <a href=\"/ui/namespaces/internal/services/web\">web.internal</a>"),
        "{page}"
    );
    assert!(
        page.contains("2 consecutive checks failed: &lt;refused&gt;"),
        "{page}"
    );
}

fn fragment_request(etag: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(etag) = etag {
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(etag).unwrap());
    }
    headers
}

fn rendered(text: &'static str) -> Rendered {
    let mut html = Html::default();
    html.tag(text);
    Rendered::new("T", "/ui/", html)
}

#[test]
fn a_fragment_is_304_while_unchanged_and_the_page_carries_its_etag() {
    let page = respond(rendered("<p>a</p>"), None, &HeaderMap::new());
    assert_eq!(page.status(), StatusCode::OK);
    let etag = page.headers()[header::ETAG].to_str().unwrap().to_owned();
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let fragment = || Some("fragment".to_owned());
    let same = respond(
        rendered("<p>a</p>"),
        fragment(),
        &fragment_request(Some(&etag)),
    );
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
    let changed = respond(
        rendered("<p>b</p>"),
        fragment(),
        &fragment_request(Some(&etag)),
    );
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()[header::ETAG].to_str().unwrap(), etag);
}

#[tokio::test]
async fn a_big_service_shows_its_first_rows_and_says_how_many_more() {
    let fixture = Fixture::new();
    let instances = (0..MAX_ROWS + 5).map(|n| {
        let ip = format!("10.1.{}.{}", n / 250, n % 250 + 1);
        (key(&format!("i-{n:05}")), spec(&ip))
    });
    fixture
        .apply(Change::Sync {
            source: SourceId::api(),
            instances: instances.collect(),
        })
        .await;
    let page = fixture.service_page("web").body.into_string();
    assert_eq!(page.matches("<tr data-instance=").count(), MAX_ROWS);
    assert!(
        page.contains("and 5 more instances, not shown"),
        "tail of the page"
    );
    // The walk pairs each row with its own records, first and last.
    let row = |id: &str| {
        let row = page
            .split(&format!("data-instance=\"{id}\""))
            .nth(1)
            .unwrap();
        row.split("</tr>").next().unwrap().to_owned()
    };
    assert!(row("i-00000").contains("i-00000.web.internal. 5 IN A 10.1.0.1</code>"));
    assert!(row("i-00999").contains("i-00999.web.internal. 5 IN A 10.1.3.250</code>"));
}

#[tokio::test]
async fn the_sources_page_shows_each_sync_with_its_age_and_the_last_error_escaped() {
    let fixture = Fixture::new();
    let statuses = crate::sources::SourceStatuses::default();
    let file = statuses.register(SourceId::new("file:/etc/muster/<b>.toml"));
    file.synced();
    file.failed(&"cannot read the file: <denied>");
    statuses
        .register(SourceId::new("ecs:prod"))
        .failed(&"reconcile failed: ListTasks: AccessDenied");
    let ok = statuses.register(SourceId::new("ecs:staging"));
    ok.failed(&"reconcile failed: throttled");
    ok.synced();
    let samples = samples::Samples::read(&prometheus_client::registry::Registry::default());
    let view = sources::View {
        snapshot: &fixture.registry.snapshot(),
        tasks: Vec::new(),
        statuses: statuses.list(),
        now: std::time::SystemTime::now() + std::time::Duration::from_secs(90),
        store: None,
        read_only: None,
        samples: &samples,
    };
    let page = sources::render(&view).body.into_string();
    let row = |source: &str| {
        let start = page
            .find(&format!("data-source=\"{source}\""))
            .expect(source);
        page[start..start + page[start..].find("</tr>").unwrap()].to_owned()
    };
    let file = row("file:/etc/muster/&lt;b&gt;.toml");
    assert!(
        file.contains("cannot read the file: &lt;denied&gt; (failing; "),
        "{file}"
    );
    assert!(file.contains("(1m 30s ago)"), "{file}");
    assert!(
        !page.contains("<denied>") && !page.contains("<b>"),
        "{page}"
    );
    let prod = row("ecs:prod");
    assert!(prod.contains(">never<"), "{prod}");
    assert!(prod.contains("AccessDenied (failing; "), "{prod}");
    let staging = row("ecs:staging");
    assert!(staging.contains("throttled (recovered; "), "{staging}");
}
