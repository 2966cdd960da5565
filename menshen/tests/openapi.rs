//! The OpenAPI document: checked in, served, complete, and saying what the
//! LEAP v5 contract says.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::{Backend, CONTRACT_FILE, TestServer};
use menshen_e2e::http::get_text;
use serde_json::Value;

const REGENERATE: &str = "MENSHEN_UPDATE_OPENAPI=1 cargo test -p menshen --test openapi";

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/menshen.json")
}

fn generated() -> Value {
    serde_json::to_value(menshen::api::openapi()).unwrap()
}

/// The document as it is checked in: pretty JSON and a final newline.
fn generated_text() -> String {
    serde_json::to_string_pretty(&menshen::api::openapi()).unwrap() + "\n"
}

#[test]
fn the_checked_in_document_is_what_the_code_generates() {
    let path = checked_in_path();
    let generated = generated_text();
    if std::env::var_os("MENSHEN_UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "openapi/menshen.json is not what the code generates (first difference at line {}).\n\
             If the API change is meant, regenerate it and commit it with the change:\n\n    \
             {REGENERATE}\n",
            line + 1
        );
    }
}

/// The paths of `router`, read from its `Debug` output: axum tells them
/// nowhere else. The output looks like `Router { path_router: PathRouter
/// { routes: {..}, node: Node { paths: {RouteId(1): "/x", ..} } },
/// fallback_router: .. }`.
fn router_paths(router: &axum::Router<menshen::api::SharedState>) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let paths: BTreeSet<String> = debug
        .split("fallback_router")
        .next()
        .and_then(|routes| routes.split("node: Node { paths: {").nth(1))
        .map(|paths| {
            paths
                .split("RouteId(")
                .skip(1)
                .filter_map(|item| item.split_once("): \""))
                .filter_map(|(_, rest)| rest.split('"').next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        paths.contains("/provider.json") && paths.contains("/healthz"),
        "could not read the routes from the router's Debug output (has axum changed it?): {debug}"
    );
    paths
}

fn is_swagger_ui(path: &str) -> bool {
    path == "/docs" || path.starts_with("/docs/")
}

/// Methods the document gives each path.
fn documented_methods() -> BTreeMap<String, BTreeSet<String>> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let document = generated();
    document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[test]
fn every_route_is_in_the_document() {
    let served = router_paths(&menshen::api::routes());
    let documented = documented_methods();

    let undocumented: Vec<&String> = served
        .iter()
        .filter(|p| !is_swagger_ui(p) && !documented.contains_key(*p))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served without an OpenAPI description: {undocumented:?}. Put a #[utoipa::path] \
         beside the handler and add it with OpenApiRouter::routes(routes!(handler))."
    );
    let unserved: Vec<&String> = documented.keys().filter(|p| !served.contains(*p)).collect();
    assert!(
        unserved.is_empty(),
        "described but not served: {unserved:?}"
    );
    assert!(served.contains("/docs"), "Swagger UI is not served");
}

#[tokio::test]
async fn every_described_method_is_served_and_no_other() {
    let backend = Backend::Sqlite(tempfile::tempdir().unwrap());
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let client = reqwest::Client::new();
    for (path, methods) in documented_methods() {
        // A path parameter gets any value: the method is what is checked.
        let concrete: String = path
            .split('/')
            .map(|part| if part.starts_with('{') { "x" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let response = client
                .request(method.parse().unwrap(), server.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if methods.contains(method) {
                assert!(
                    status != 404 && status != 405,
                    "{method} {path} is described but answered {status}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is served but not described");
            }
        }
    }
}

#[tokio::test]
async fn the_document_and_swagger_ui_are_served() {
    let backend = Backend::Sqlite(tempfile::tempdir().unwrap());
    let server = TestServer::start(&backend, CONTRACT_FILE).await;

    let response = reqwest::get(server.url("/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().await.unwrap();
    assert_eq!(
        served,
        generated(),
        "/openapi.json is not the generated document"
    );

    // `/docs` sends browsers on to `/docs/`.
    let response = reqwest::get(server.url("/docs")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/docs/");
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");

    // Everything the page loads is served from here.
    let assets: Vec<&str> = ["href=\"", "src=\""]
        .iter()
        .flat_map(|attribute| page.split(attribute).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(
        assets.iter().any(|a| a.ends_with("swagger-ui.css"))
            && assets.iter().any(|a| a.ends_with("swagger-ui-bundle.js")),
        "{assets:?}"
    );
    for asset in assets {
        assert!(
            !asset.contains("//"),
            "the page loads {asset} from elsewhere"
        );
        let url = server.url(&format!("/docs/{}", asset.trim_start_matches("./")));
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{url}");
    }

    let initializer = get_text(&server.url("/docs/swagger-initializer.js")).await;
    assert!(
        initializer.contains("\"/openapi.json\""),
        "Swagger UI does not read /openapi.json: {initializer}"
    );
}

#[test]
fn the_document_says_what_the_contract_says() {
    let document = generated();
    let schemas = &document["components"]["schemas"];
    let property = |schema: &str, name: &str| -> &Value {
        let p = &schemas[schema]["properties"][name];
        assert!(!p.is_null(), "{schema}.{name} is not described");
        p
    };
    let required = |schema: &str| -> BTreeSet<&str> {
        schemas[schema]["required"]
            .as_array()
            .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default()
    };

    // Location: coordinates and timezone are strings.
    for name in ["lat", "lon", "timezone", "country_code", "display_name"] {
        assert_eq!(
            property("Location", name)["type"],
            "string",
            "Location.{name}"
        );
    }
    assert_eq!(property("Location", "healthy")["type"], "boolean");
    assert!(required("Location").is_empty());

    // Provider: the four lists are always there, nothing else is.
    assert_eq!(
        required("Provider"),
        BTreeSet::from(["api_versions", "languages", "services", "stun_servers"])
    );
    for name in ["api_versions", "languages", "services", "stun_servers"] {
        assert_eq!(
            property("Provider", name)["type"],
            "array",
            "Provider.{name}"
        );
    }

    // Gateway and Bridge: `type`, not `kind`; integer port, number load.
    for schema in ["Gateway", "Bridge"] {
        assert!(required(schema).is_empty(), "{schema} has required fields");
        assert_eq!(property(schema, "type")["type"], "string");
        assert!(schemas[schema]["properties"]["kind"].is_null());
        assert_eq!(property(schema, "port")["type"], "integer");
        assert_eq!(property(schema, "last_seen_millis")["type"], "integer");
        assert_eq!(property(schema, "load")["type"], "number");
        assert_eq!(property(schema, "healthy")["type"], "boolean");
    }
    assert_eq!(property("Bridge", "options")["type"], "object");
    assert_eq!(property("Bridge", "auth")["type"], "string");

    // EipService
    assert_eq!(property("EipService", "locations")["type"], "object");
    assert_eq!(
        property("EipService", "locations")["additionalProperties"]["$ref"],
        "#/components/schemas/Location"
    );
    assert_eq!(
        property("EipService", "openvpn_configuration")["type"],
        "object"
    );
    assert_eq!(property("EipService", "serial")["type"], "integer");

    // The error body.
    assert_eq!(required("ApiError"), BTreeSet::from(["error", "message"]));
    assert_eq!(property("ApiError", "parameter")["type"], "string");
    assert_eq!(
        property("ApiError", "fields")["items"]["$ref"],
        "#/components/schemas/FieldError"
    );

    let paths = &document["paths"];
    let response = |path: &str, method: &str, status: &str| -> &Value {
        let r = &paths[path][method]["responses"][status];
        assert!(!r.is_null(), "{method} {path} has no {status}");
        r
    };

    // Plain text where clients decode plain text.
    for path in [
        "/api/5/openvpn/cert",
        "/api/5/openvpn/config",
        "/api/autoconf",
    ] {
        let content = response(path, "get", "200")["content"].as_object().unwrap();
        assert_eq!(
            content.keys().collect::<Vec<_>>(),
            ["text/plain"],
            "GET {path}"
        );
        assert_eq!(content["text/plain"]["schema"]["type"], "string");
    }

    // JSON with an entity tag, and 304, for the cached answers.
    for (path, schema) in [
        ("/provider.json", "Provider"),
        ("/api/5/service", "EipService"),
        ("/api/5/gateways", "Gateway"),
        ("/api/5/bridges", "Bridge"),
    ] {
        let ok = response(path, "get", "200");
        let body = &ok["content"]["application/json"]["schema"];
        let reference = format!("#/components/schemas/{schema}");
        assert!(
            body["$ref"] == reference.as_str() || body["items"]["$ref"] == reference.as_str(),
            "GET {path}: {body}"
        );
        assert!(!ok["headers"]["ETag"].is_null(), "GET {path}: no ETag");
        let not_modified = response(path, "get", "304");
        assert!(not_modified["content"].is_null());
        assert!(!not_modified["headers"]["ETag"].is_null());
    }
    for path in ["/api/5/gateways", "/api/5/bridges"] {
        assert_eq!(
            response(path, "get", "200")["content"]["application/json"]["schema"]["type"],
            "array"
        );
    }

    // Parameters.
    let parameters = |path: &str, method: &str| -> BTreeMap<String, String> {
        paths[path][method]["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let name = p["name"].as_str().unwrap().to_owned();
                        (name, p["in"].as_str().unwrap().to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let list_query = ["cc", "loc", "port", "tr", "experimental"];
    for path in [
        "/api/5/gateways",
        "/api/5/bridges",
        "/api/5/openvpn/config",
        "/api/autoconf",
    ] {
        let params = parameters(path, "get");
        for name in list_query {
            assert_eq!(
                params.get(name).map(String::as_str),
                Some("query"),
                "{path} {name}"
            );
        }
        assert_eq!(
            params.get("x-menshen-auth-token").map(String::as_str),
            Some("header"),
            "{path}"
        );
        assert_eq!(
            params.contains_key("type"),
            path == "/api/5/bridges",
            "{path}"
        );
    }

    // Errors, with the error body.
    let errors = [
        ("/api/5/gateways", "get", &["400"][..]),
        ("/api/5/bridges", "get", &["400"]),
        ("/api/5/openvpn/config", "get", &["400", "503"]),
        ("/api/autoconf", "get", &["400", "503"]),
        (
            "/api/5/agent/gateways",
            "put",
            &["400", "401", "403", "413", "422"],
        ),
        (
            "/api/5/agent/bridges",
            "put",
            &["400", "401", "403", "413", "422"],
        ),
    ];
    for (path, method, statuses) in errors {
        for status in statuses {
            assert_eq!(
                response(path, method, status)["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ApiError",
                "{method} {path} {status}"
            );
        }
    }

    // Agents: a bearer token, and the whole set in the body.
    assert_eq!(
        document["components"]["securitySchemes"]["agent_token"]["scheme"],
        "bearer"
    );
    for (path, schema) in [
        ("/api/5/agent/gateways", "Gateway"),
        ("/api/5/agent/bridges", "Bridge"),
    ] {
        let operation = &paths[path]["put"];
        assert_eq!(
            operation["security"],
            serde_json::json!([{"agent_token": []}])
        );
        let body = &operation["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["type"], "array");
        assert_eq!(
            body["items"]["$ref"],
            format!("#/components/schemas/{schema}").as_str()
        );
        for status in ["200", "201"] {
            assert_eq!(
                response(path, "put", status)["content"]["application/json"]["schema"]["items"]["$ref"],
                format!("#/components/schemas/{schema}").as_str()
            );
        }
    }
}
