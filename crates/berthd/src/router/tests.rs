//! In-process API tests: the router over a temporary data root, called with `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use berth_image::testutil::{TestImage, docker_archive};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::config::Config;
use crate::state::{AppState, Daemon};

struct Harness {
    _dir: tempfile::TempDir,
    state: AppState,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(Daemon::open(Config::for_root(dir.path())).await.unwrap());
        Harness { _dir: dir, state }
    }

    async fn call(&self, method: Method, uri: &str, body: Vec<u8>) -> Reply {
        // JSON bodies go with their content type, as every client sends them.
        let json = body.first().is_some_and(|b| matches!(b, b'{' | b'['));
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(
                "content-type",
                if json {
                    "application/json"
                } else {
                    "application/x-tar"
                },
            )
            .body(Body::from(body))
            .unwrap();
        let response = crate::router::app(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, Vec::new()).await
    }

    async fn load(&self, images: &[TestImage]) -> Reply {
        self.call(Method::POST, "/images/load?quiet=1", docker_archive(images))
            .await
    }
}

#[tokio::test]
async fn ping_has_dockers_headers() {
    let h = Harness::new().await;
    for uri in ["/_ping", "/v1.24/_ping", "/v1.51/_ping"] {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.text(), "OK");
        let header = |name: &str| r.headers.get(name).unwrap().to_str().unwrap().to_string();
        assert_eq!(header("api-version"), "1.51");
        assert_eq!(header("ostype"), "linux");
        assert_eq!(header("docker-experimental"), "false");
        assert_eq!(header("server"), crate::SERVER_HEADER);
        assert_eq!(
            header("cache-control"),
            "no-cache, no-store, must-revalidate"
        );
        assert_eq!(header("pragma"), "no-cache");
        assert_eq!(header("swarm"), "inactive");
        assert!(r.headers.contains_key("builder-version"));
    }
    let head = h.call(Method::HEAD, "/_ping", Vec::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn version_prefixes_are_checked() {
    let h = Harness::new().await;
    let v = h.get("/v1.41/version").await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.json()["ApiVersion"], "1.51");
    assert_eq!(v.json()["MinAPIVersion"], "1.24");
    assert_eq!(v.json()["Components"][0]["Name"], "Engine");
    let too_new = h.get("/v1.99/version").await;
    assert_eq!(too_new.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        too_new.message(),
        "client version 1.99 is too new. Maximum supported API version is 1.51"
    );
    assert!(too_new.headers.contains_key("api-version"));
    let too_old = h.get("/v1.12/version").await;
    assert_eq!(too_old.status, StatusCode::BAD_REQUEST);
    assert!(too_old.message().contains("too old"));
}

#[tokio::test]
async fn unknown_paths_are_page_not_found() {
    let h = Harness::new().await;
    for uri in [
        "/nope",
        "/v1.51/nope",
        "/images/busybox",
        "/images/busybox/bogus",
    ] {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.message(), "page not found", "{uri}");
    }
    let wrong_method = h.call(Method::DELETE, "/version", Vec::new()).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.message(), "method not allowed");
}

#[tokio::test]
async fn image_errors_map_to_statuses() {
    let h = Harness::new().await;
    let missing = h.get("/images/x/json").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.message(), "No such image: x");
    let bad = h.get("/images/Bad%20Name/json").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    assert!(
        bad.message().starts_with("invalid reference format"),
        "{}",
        bad.text()
    );
    let bad = h.get("/images/a:b:c/json").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
    assert_eq!(bad.message(), "invalid reference format");
    let bad_tag = h
        .call(Method::POST, "/images/x/tag?repo=UPPER", Vec::new())
        .await;
    assert_eq!(
        bad_tag.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_tag.text()
    );
    let save = h.get("/images/get?names=nothere").await;
    assert_eq!(save.status, StatusCode::NOT_FOUND);
    // A pull: an invalid reference is refused before any request; port 1 of the loopback
    // refuses connections (no traffic leaves 127.0.0.0/8).
    let pull = h
        .call(Method::POST, "/images/create?fromImage=UPPER", Vec::new())
        .await;
    assert_eq!(pull.status, StatusCode::BAD_REQUEST, "{}", pull.text());
    let pull = h
        .call(
            Method::POST,
            "/images/create?fromImage=127.0.0.1:1/x&tag=1",
            Vec::new(),
        )
        .await;
    assert_eq!(pull.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        pull.message(),
        "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
    );
    let bad_filter = h
        .get("/images/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D")
        .await;
    assert_eq!(bad_filter.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn load_list_inspect_history_tag_delete() {
    let h = Harness::new().await;
    let image = TestImage::new(
        &["localhost:5000/a/b:v1"],
        &[&[("hello.txt", b"hi")], &[("two.txt", b"2")]],
    );
    let loaded = h.load(std::slice::from_ref(&image)).await;
    assert_eq!(loaded.status, StatusCode::OK);
    assert!(
        loaded
            .text()
            .contains("Loaded image: localhost:5000/a/b:v1"),
        "{}",
        loaded.text()
    );
    let id = image.id().to_string();

    let list = h.get("/images/json").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["Id"], id.as_str());
    assert_eq!(list[0]["RepoTags"][0], "localhost:5000/a/b:v1");
    let filtered = h
        .get("/images/json?filters=%7B%22reference%22%3A%5B%22nomatch%22%5D%7D")
        .await
        .json();
    assert_eq!(filtered.as_array().unwrap().len(), 0);

    let inspect = h.get("/v1.51/images/localhost:5000/a/b:v1/json").await;
    assert_eq!(inspect.status, StatusCode::OK, "{}", inspect.text());
    let inspect = inspect.json();
    assert_eq!(inspect["Id"], id.as_str());
    assert_eq!(inspect["RootFS"]["Type"], "layers");
    assert_eq!(inspect["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspect["GraphDriver"]["Name"], "overlayfs");

    let history = h.get("/images/localhost:5000/a/b:v1/history").await.json();
    let rows = history.as_array().unwrap();
    assert!(!rows.is_empty());
    assert_eq!(rows[0]["Id"], id.as_str());
    assert!(rows[1..].iter().all(|r| r["Id"] == "<missing>"));

    let tagged = h
        .call(
            Method::POST,
            "/images/localhost:5000/a/b:v1/tag?repo=mine&tag=t",
            Vec::new(),
        )
        .await;
    assert_eq!(tagged.status, StatusCode::CREATED, "{}", tagged.text());
    assert_eq!(h.get("/images/mine:t/json").await.status, StatusCode::OK);

    let events = h.get("/events?since=0&until=1").await;
    assert_eq!(events.status, StatusCode::OK);
    let all = h
        .get(&format!(
            "/events?since=0&until={}",
            chrono::Utc::now().timestamp() + 1
        ))
        .await
        .text();
    let actions: Vec<String> = all
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Action"].to_string())
        .collect();
    assert_eq!(actions, vec!["\"load\"", "\"tag\""]);

    let deleted = h.call(Method::DELETE, "/images/mine:t", Vec::new()).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text());
    assert_eq!(deleted.json()[0]["Untagged"], "mine:t");

    let df = h.get("/system/df").await.json();
    assert!(df["LayersSize"].as_i64().unwrap() > 0);
    assert_eq!(df["Images"][0]["Containers"], 0);

    let saved = h.get("/images/get?names=localhost:5000/a/b:v1").await;
    assert_eq!(saved.status, StatusCode::OK);
    assert_eq!(saved.headers["content-type"], "application/x-tar");
    assert!(saved.body.len() > 1024);

    let pruned = h
        .call(
            Method::POST,
            "/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D",
            Vec::new(),
        )
        .await;
    assert_eq!(pruned.status, StatusCode::OK, "{}", pruned.text());
    assert!(pruned.json()["SpaceReclaimed"].as_i64().unwrap() > 0);
    assert_eq!(h.get("/info").await.json()["Images"], 0);
}

#[tokio::test]
async fn a_truncated_load_fails_in_band() {
    let h = Harness::new().await;
    let image = TestImage::new(&["busybox:latest"], &[&[("f", &[7u8; 10_000])]]);
    let mut archive = docker_archive(&[image]);
    archive.truncate(archive.len() / 2);
    let r = h.call(Method::POST, "/images/load", archive).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("\"error\""), "{}", r.text());
    assert_eq!(
        h.get("/images/json").await.json().as_array().unwrap().len(),
        0
    );
}

#[tokio::test]
async fn import_from_the_body() {
    let h = Harness::new().await;
    let layer = berth_image::testutil::layer_tar(&[("etc/hostname", b"x")]);
    let r = h
        .call(
            Method::POST,
            "/images/create?fromSrc=-&repo=imported&tag=v1&changes=CMD%20%5B%22sh%22%5D&changes=ENV%20A%3Db",
            layer,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("\"status\":\"sha256:"), "{}", r.text());
    let inspect = h.get("/images/imported:v1/json").await.json();
    assert_eq!(inspect["Config"]["Cmd"][0], "sh");
    let url = h
        .call(
            Method::POST,
            "/images/create?fromSrc=http://x/y.tar",
            Vec::new(),
        )
        .await;
    assert_eq!(url.status, StatusCode::NOT_IMPLEMENTED);
}

#[test]
fn queries_keep_repeated_keys_and_docker_booleans() {
    let q = super::Query::parse(Some(
        "names=a&names=b%2Fc&quiet=1&force=false&changes=ENV%20A%3D1",
    ));
    assert_eq!(q.all("names"), vec!["a", "b/c"]);
    assert!(q.bool("quiet", false));
    assert!(!q.bool("force", true));
    assert!(q.bool("absent", true));
    assert_eq!(q.get("changes"), Some("ENV A=1"));
    assert!(
        super::Query::parse(Some("filters=%7Bbad"))
            .filters()
            .is_err()
    );
}

#[tokio::test]
async fn events_stream_live_until_the_deadline() {
    let h = Harness::new().await;
    let until = chrono::Utc::now().timestamp() + 2;
    let state = h.state.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        state
            .events
            .image_event("tag", "sha256:1", Default::default());
        state
            .events
            .image_event("untag", "sha256:1", Default::default());
    });
    let r = h
        .get(&format!(
            "/events?until={until}&filters=%7B%22event%22%3A%5B%22untag%22%5D%7D"
        ))
        .await;
    publisher.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let lines: Vec<&str> = std::str::from_utf8(&r.body).unwrap().lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let ev: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(ev["Action"], "untag");
    assert_eq!(ev["status"], "untag");
    assert_eq!(ev["id"], "sha256:1");
    let bad = h
        .get("/events?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = h.get("/events?since=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn serves_a_unix_socket_and_shuts_down() {
    use crate::config::Host;
    use crate::server::{Listener, serve};
    use hyper_util::rt::TokioIo;

    let h = Harness::new().await;
    let socket = h._dir.path().join("run/api.sock");
    let listener = Listener::bind(&Host::Unix(socket.clone()), None)
        .await
        .unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);
    let shutdown = h.state.shutdown.clone();
    let server = tokio::spawn(serve(
        crate::router::app(h.state.clone()),
        vec![listener],
        shutdown.clone(),
        crate::config::DEFAULT_MAX_CONNECTIONS,
    ));

    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            Request::get("/v1.51/_ping")
                .header("host", "berth")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Hyper writes Docker's header capitalisation.
    assert_eq!(response.headers()["api-version"], "1.51");

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap();
}
