//! The protocol, driven through the router without a network, on both drivers: the cases
//! the OCI conformance suite checks (push, pull, discovery, management, error codes).

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt as _;

use crate::config::Config;
use crate::digest::{Algorithm, Digest};
use crate::driver::{FilesystemDriver, InMemoryDriver, StorageDriver};
use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::registry::Registry;

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, n: &str) -> &str {
        self.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

struct T {
    app: axum::Router,
}

impl T {
    fn new(driver: Arc<dyn StorageDriver>, config: Config) -> T {
        let reg = Arc::new(Registry::with_driver(config, driver).unwrap());
        T {
            app: crate::server::router(reg),
        }
    }

    async fn req(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn push_blob(&self, name: &str, data: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, data);
        let a = self
            .req(
                "POST",
                &format!("/v2/{name}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
        d
    }

    async fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        media: &str,
        body: &serde_json::Value,
    ) -> Answer {
        self.req(
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", media)],
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }
}

fn image(config: &Digest, layers: &[&Digest], subject: Option<&Digest>) -> serde_json::Value {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": layers.iter().map(|l| serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":l.to_string(),"size":1})).collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        m["subject"] =
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": s.to_string(), "size": 1});
        m["artifactType"] = serde_json::json!("application/vnd.example.sbom");
    }
    m
}

async fn protocol(t: T) {
    // Version check.
    let a = t.req("GET", "/v2/", &[], vec![]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("docker-distribution-api-version"), "registry/2.0");

    // Chunked upload: POST, PATCH, out-of-order PATCH (416), status, PATCH, PUT.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let a = t
        .req("POST", "/v2/team/app/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let loc = a.header("location").to_string();
    assert_eq!(a.header("range"), "0-0");
    let a = t
        .req(
            "PATCH",
            &loc,
            &[("content-range", "0-999999")],
            data[..1_000_000].to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.header("range"), "0-999999");
    let a = t
        .req(
            "PATCH",
            &loc,
            &[("content-range", "2000000-2999999")],
            data[2_000_000..].to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let a = t.req("GET", &loc, &[], vec![]).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(a.header("range"), "0-999999");
    let a = t
        .req("PATCH", &loc, &[], data[1_000_000..2_000_000].to_vec())
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let d = Digest::of(Algorithm::Sha256, &data);
    let a = t
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-range", "2000000-2999999")],
            data[2_000_000..].to_vec(),
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(a.header("docker-content-digest"), d.to_string());
    // The session is gone.
    assert_eq!(
        t.req("GET", &loc, &[], vec![]).await.status,
        StatusCode::NOT_FOUND
    );

    // Pull it whole, by range, and HEAD.
    let a = t
        .req("GET", &format!("/v2/team/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, data);
    let a = t
        .req(
            "GET",
            &format!("/v2/team/app/blobs/{d}"),
            &[("range", "bytes=10-19")],
            vec![],
        )
        .await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.body, data[10..20]);
    assert_eq!(a.header("content-range"), "bytes 10-19/3000000");
    let a = t
        .req("HEAD", &format!("/v2/team/app/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(a.header("content-length"), "3000000");
    assert!(a.body.is_empty());
    // Not in another repository until mounted.
    let a = t
        .req("HEAD", &format!("/v2/other/blobs/{d}"), &[], vec![])
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = t
        .req(
            "POST",
            &format!("/v2/other/blobs/uploads/?mount={d}&from=team/app"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(
        t.req("HEAD", &format!("/v2/other/blobs/{d}"), &[], vec![])
            .await
            .status,
        StatusCode::OK
    );
    let unknown = Digest::of(Algorithm::Sha256, b"nope");
    let a = t
        .req(
            "POST",
            &format!("/v2/other/blobs/uploads/?mount={unknown}&from=team/app"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::ACCEPTED,
        "mount falls back to a session"
    );

    // sha512 monolithic; digest mismatch; malformed digest.
    let d512 = Digest::of(Algorithm::Sha512, b"x512");
    let a = t
        .req(
            "POST",
            &format!("/v2/team/app/blobs/uploads/?digest={d512}"),
            &[],
            b"x512".to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = t
        .req(
            "POST",
            &format!("/v2/team/app/blobs/uploads/?digest={d}"),
            &[],
            b"other".to_vec(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), "DIGEST_INVALID");
    let a = t
        .req("GET", "/v2/team/app/blobs/sha256:abc", &[], vec![])
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), "DIGEST_INVALID");

    // Manifests: missing blobs, then a good one by tag; get by tag and digest.
    let config = t.push_blob("team/app", b"{}").await;
    let a = t
        .push_manifest(
            "team/app",
            "v1",
            OCI_MANIFEST,
            &image(&config, &[&unknown], None),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.code(), "MANIFEST_BLOB_UNKNOWN");
    let m = image(&config, &[&d], None);
    let a = t.push_manifest("team/app", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let md = a.header("docker-content-digest").to_string();
    let a = t.req("GET", "/v2/team/app/manifests/v1", &[], vec![]).await;
    assert_eq!(a.body, serde_json::to_vec(&m).unwrap(), "bytes as sent");
    assert_eq!(a.header("content-type"), OCI_MANIFEST);
    let a = t
        .req("HEAD", &format!("/v2/team/app/manifests/{md}"), &[], vec![])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("docker-content-digest"), md);
    let a = t
        .req("GET", "/v2/team/app/manifests/nope", &[], vec![])
        .await;
    assert_eq!(a.code(), "MANIFEST_UNKNOWN");
    let a = t
        .push_manifest("team/app", "v1", OCI_MANIFEST, &serde_json::json!({"x":1}))
        .await;
    assert_eq!(a.code(), "MANIFEST_INVALID");

    // An index of the image; a referrer with a subject.
    let idx = serde_json::json!({"schemaVersion":2,"mediaType":OCI_INDEX,"manifests":[{"mediaType":OCI_MANIFEST,"digest":md,"size":1}]});
    assert_eq!(
        t.push_manifest("team/app", "multi", OCI_INDEX, &idx)
            .await
            .status,
        StatusCode::CREATED
    );
    let subject = Digest::parse(&md).unwrap();
    let sbom = image(&config, &[], Some(&subject));
    let a = t
        .push_manifest(
            "team/app",
            &Digest::of(Algorithm::Sha256, &serde_json::to_vec(&sbom).unwrap()).to_string(),
            OCI_MANIFEST,
            &sbom,
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("oci-subject"), md);
    let a = t
        .req("GET", &format!("/v2/team/app/referrers/{md}"), &[], vec![])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        a.json()["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    let a = t
        .req(
            "GET",
            &format!("/v2/team/app/referrers/{md}?artifactType=application/other"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(a.json()["manifests"].as_array().unwrap().len(), 0);
    assert_eq!(a.header("oci-filters-applied"), "artifactType");

    // Tags set with the push by digest (`?tag=`), answered with `OCI-Tag`.
    let a = t
        .req(
            "PUT",
            &format!("/v2/team/app/manifests/{md}?tag=x1&tag=x2"),
            &[("content-type", OCI_MANIFEST)],
            serde_json::to_vec(&m).unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let tags: Vec<&str> = a
        .headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["x1", "x2"]);
    for tag in ["x1", "x2"] {
        let a = t
            .req(
                "DELETE",
                &format!("/v2/team/app/manifests/{tag}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{tag} was set");
    }

    // Tags with pagination; catalog.
    for tag in ["a", "b", "c"] {
        assert_eq!(
            t.push_manifest("team/app", tag, OCI_MANIFEST, &m)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let a = t
        .req("GET", "/v2/team/app/tags/list?n=2", &[], vec![])
        .await;
    assert_eq!(a.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        a.header("link"),
        "</v2/team/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let a = t
        .req("GET", "/v2/team/app/tags/list?n=2&last=b", &[], vec![])
        .await;
    assert_eq!(a.json()["tags"], serde_json::json!(["c", "multi"]));
    let a = t.req("GET", "/v2/team/app/tags/list", &[], vec![]).await;
    assert_eq!(a.json()["tags"].as_array().unwrap().len(), 5);
    let a = t.req("GET", "/v2/nothing/tags/list", &[], vec![]).await;
    assert_eq!(a.code(), "NAME_UNKNOWN");
    let a = t.req("GET", "/v2/_catalog", &[], vec![]).await;
    assert_eq!(
        a.json()["repositories"],
        serde_json::json!(["other", "team/app"])
    );

    // Deletes: a tag, a manifest by digest, a blob.
    assert_eq!(
        t.req("DELETE", "/v2/team/app/manifests/a", &[], vec![])
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        t.req("GET", "/v2/team/app/manifests/a", &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.req(
            "DELETE",
            &format!("/v2/team/app/manifests/{md}"),
            &[],
            vec![]
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        t.req("GET", "/v2/team/app/manifests/b", &[], vec![])
            .await
            .status,
        StatusCode::NOT_FOUND,
        "tags of a deleted manifest go"
    );
    assert_eq!(
        t.req("DELETE", &format!("/v2/team/app/blobs/{d}"), &[], vec![])
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        t.req("GET", &format!("/v2/team/app/blobs/{d}"), &[], vec![])
            .await
            .code(),
        "BLOB_UNKNOWN"
    );

    // Names: invalid and traversal.
    for bad in [
        "/v2/../x/tags/list",
        "/v2/a/../../b/manifests/x",
        "/v2/UP/manifests/x",
        "/v2/a/_layers/blobs/uploads/",
    ] {
        let a = t.req("GET", bad, &[], vec![]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.code(), "NAME_INVALID", "{bad}");
    }
    // Upload cancel, unknown session.
    let a = t
        .req("POST", "/v2/team/app/blobs/uploads/", &[], vec![])
        .await;
    let loc = a.header("location").to_string();
    assert_eq!(
        t.req("DELETE", &loc, &[], vec![]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.req("PATCH", &loc, &[], b"x".to_vec()).await.code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    let a = t
        .req("GET", "/v2/team/app/blobs/uploads/../../x", &[], vec![])
        .await;
    assert_ne!(a.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_on_the_filesystem_driver() {
    let dir = tempfile::tempdir().unwrap();
    protocol(T::new(
        Arc::new(FilesystemDriver::new(dir.path()).unwrap()),
        Config::default(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_on_the_inmemory_driver() {
    protocol(T::new(Arc::new(InMemoryDriver::new()), Config::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_quota_and_manifest_limit() {
    let config = Config::parse("read_only: true").unwrap();
    let t = T::new(Arc::new(InMemoryDriver::new()), config);
    let a = t.req("POST", "/v2/a/blobs/uploads/", &[], vec![]).await;
    assert_eq!(a.code(), "UNSUPPORTED");
    assert_eq!(
        t.req("GET", "/v2/", &[], vec![]).await.status,
        StatusCode::OK
    );

    let config =
        Config::parse("quota:\n  repositories:\n    small: 1000\nmax_manifest_bytes: 100000")
            .unwrap();
    let t = T::new(Arc::new(InMemoryDriver::new()), config);
    t.push_blob("small", &[1u8; 600]).await;
    let d = Digest::of(Algorithm::Sha256, &[2u8; 600]);
    let a = t
        .req(
            "POST",
            &format!("/v2/small/blobs/uploads/?digest={d}"),
            &[],
            vec![2u8; 600],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.code(), "DENIED");
    t.push_blob("big", &[2u8; 600]).await;
    let huge = vec![b' '; 200_000];
    let a = t
        .req(
            "PUT",
            "/v2/big/manifests/x",
            &[("content-type", OCI_MANIFEST)],
            huge,
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.code(), "SIZE_INVALID");
}
