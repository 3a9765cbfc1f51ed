//! The OpenAPI document served at `GET /api/openapi.json`: it is valid JSON in OpenAPI 3.0
//! shape, it is the embedded `src/api/openapi.json`, every `$ref` resolves, and it describes
//! exactly the routes of `whitebeat::api::routes::ROUTES` (path + method, either way round), with
//! the security and error responses the handlers actually have.
use crate::support;
use serde_json::Value;
use std::collections::BTreeSet;
use whitebeat::api::routes::ROUTES;

/// Routes that need no session. Everything else must declare bearer and cookie auth.
const PUBLIC: &[&str] = &[
    "/api/signup",
    "/api/login",
    "/api/health",
    "/api/openapi.json",
];

/// Routes that accept an admin's credentials in the body instead of a session.
const CREDENTIALS_OR_SESSION: &[&str] = &["/api/make-admin", "/api/remove-admin"];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn doc() -> Value {
    serde_json::from_str(whitebeat::api::openapi::OPENAPI_JSON)
        .expect("src/api/openapi.json is valid JSON")
}

fn normalize(path: &str) -> String {
    whitebeat::http::normalize(path).to_string()
}

/// (normalised path, lower-case method) of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, _) in item.as_object().expect("path item is an object") {
            if HTTP_METHODS.contains(&method.as_str()) {
                out.insert((normalize(path), method.clone()));
            }
        }
    }
    out
}

fn routed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .flat_map(|r| {
            r.methods
                .iter()
                .map(move |(m, _)| (r.path.to_string(), m.as_str().to_ascii_lowercase()))
        })
        .collect()
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// Follows `$ref` (one level is all the document uses for responses).
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}")),
        None => v,
    }
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if HTTP_METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), op));
            }
        }
    }
    out
}

#[test]
fn served_document_parses_and_is_the_embedded_one() {
    let s = support::start();
    for path in ["/api/openapi.json", "/api/openapi.json/"] {
        let r = s.get(path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(
            r.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "{path}: content type {:?}",
            r.header("content-type")
        );
        assert_eq!(r.body, doc(), "{path} serves src/api/openapi.json");
    }
    let d = doc();
    assert!(
        d["openapi"].as_str().is_some_and(|v| v.starts_with("3.0.")),
        "OpenAPI 3.0 document, got {}",
        d["openapi"]
    );
    assert!(d["info"]["title"].is_string() && d["info"]["version"].is_string());
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let d = doc();
    let documented = documented(&d);
    let routed = routed();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes in whitebeat::api::routes::ROUTES that src/api/openapi.json does not describe: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "operations in src/api/openapi.json that are not in whitebeat::api::routes::ROUTES: {extra:?}"
    );
}

#[test]
fn paths_use_the_trailing_slash_form() {
    let d = doc();
    for path in d["paths"].as_object().unwrap().keys() {
        if path.ends_with(".json") {
            continue;
        }
        assert!(path.ends_with('/'), "{path} should be written as {path}/");
    }
}

#[test]
fn every_reference_resolves() {
    fn walk(doc: &Value, v: &Value, at: &str) {
        match v {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    assert!(resolve(doc, r).is_some(), "{at}: unresolved $ref {r}");
                }
                for (k, child) in map {
                    walk(doc, child, &format!("{at}/{k}"));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(doc, child, &format!("{at}/{i}"));
                }
            }
            _ => {}
        }
    }
    let d = doc();
    walk(&d, &d, "#");
}

#[test]
fn security_matches_who_may_call_each_route() {
    let d = doc();
    let schemes = &d["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["type"], "http");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["cookieAuth"]["type"], "apiKey");
    assert_eq!(schemes["cookieAuth"]["in"], "cookie");
    assert_eq!(schemes["cookieAuth"]["name"], "whitebeat_session");

    for (path, method, op) in operations(&d) {
        let route = normalize(&path);
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: no `security` (use [] for public)"));
        let names: BTreeSet<String> = security
            .iter()
            .flat_map(|req| req.as_object().unwrap().keys().cloned())
            .collect();
        let anonymous_ok = security.is_empty()
            || security
                .iter()
                .any(|req| req.as_object().unwrap().is_empty());
        let responses = op["responses"].as_object().unwrap();
        if PUBLIC.contains(&route.as_str()) {
            assert!(
                security.is_empty(),
                "{method} {path} is public: security []"
            );
            assert!(
                !responses.contains_key("401") || route == "/api/login",
                "{method} {path} is public and cannot answer 401"
            );
        } else {
            for scheme in ["bearerAuth", "cookieAuth"] {
                assert!(names.contains(scheme), "{method} {path}: lacks {scheme}");
            }
            assert!(
                responses.contains_key("401"),
                "{method} {path} needs a session: document 401"
            );
            assert_eq!(
                anonymous_ok,
                CREDENTIALS_OR_SESSION.contains(&route.as_str()),
                "{method} {path}: only make/remove-admin may go without a session"
            );
        }
    }
}

#[test]
fn every_operation_documents_its_errors_as_json() {
    let d = doc();
    for (path, method, op) in operations(&d) {
        let responses = op["responses"].as_object().unwrap();
        // Any API request can be malformed (bad path encoding), too large, hit a failing
        // disk, or meet a server at its connection cap.
        for status in ["400", "413", "500", "503"] {
            assert!(
                responses.contains_key(status),
                "{method} {path}: document {status}"
            );
        }
        if op.get("requestBody").is_some() {
            assert!(
                responses.contains_key("415"),
                "{method} {path} takes a JSON body: document 415"
            );
        }
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success response"
        );
        for (status, r) in responses {
            let r = deref(&d, r);
            assert!(
                r["description"].is_string(),
                "{method} {path} {status}: description"
            );
            if status.starts_with('4') || status.starts_with('5') {
                let schema = deref(&d, &r["content"]["application/json"]["schema"]);
                let text = schema.to_string();
                assert!(
                    text.contains("Error") || schema["properties"].get("error").is_some(),
                    "{method} {path} {status}: errors are {{\"error\": string}}, got {text}"
                );
            }
        }
    }
    let error = &d["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    assert_eq!(error["properties"]["error"]["type"], "string");
}

#[test]
fn event_stream_is_text_event_stream() {
    let d = doc();
    let ok = &d["paths"]["/api/events/"]["get"]["responses"]["200"]["content"];
    assert!(ok.get("text/event-stream").is_some(), "events 200: {ok}");
}
