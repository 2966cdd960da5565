//! Locations: created, updated, refused, deleted unless used, and logged.

use menshen::store::now_millis;
use serde_json::json;

use super::{Harness, gateway};
use crate::common::{
    Backend, PATIENCE, assert_says, eventually, named_fields, on_each_backend, strings_of,
};

on_each_backend!(locations_are_created_updated_and_deleted_unless_used);

async fn locations_are_created_updated_and_deleted_unless_used(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend).await;

    let berlin = json!({"label": "berlin", "display_name": "Berlin", "country_code": "de",
                        "lat": 52.52, "lon": 13.4, "timezone": 1});
    let (status, body) = h.post("/admin/v1/locations", berlin.clone()).await;
    assert_eq!(status, 201, "{name}: {body}");
    assert_eq!(body["country_code"], "DE");
    assert_eq!(body["hemisphere"], "N");
    assert_eq!(body["origin"], "admin");
    let (status, _) = h
        .post(
            "/admin/v1/locations",
            json!({"label": "BERLIN",
        "display_name": "B", "country_code": "DE"}),
        )
        .await;
    assert_eq!(status, 409, "{name}: same label ignoring case");

    // broken input names its fields and writes nothing
    let body = h
        .post_invalid(
            "/admin/v1/locations",
            json!({"label": "bad label", "display_name": "", "country_code": "XX", "lat": 99.0}),
        )
        .await;
    let fields = named_fields(&body);
    for field in ["label", "display_name", "country_code", "lon"] {
        assert!(fields.contains(&field), "{name}: {field} in {body}");
    }
    h.post_invalid(
        "/admin/v1/locations",
        json!({"label": "x", "display_name": "X", "country_code": "DE", "colour": "red"}),
    )
    .await;
    h.post_invalid("/admin/v1/locations", json!("not an object"))
        .await;

    let (_, list) = h.get("/admin/v1/locations").await;
    let labels = strings_of(&list, "label");
    assert_eq!(labels, ["amsterdam", "berlin"], "{name}");

    // the client sees it
    eventually(
        format_args!("{name}: berlin in /api/5/service"),
        PATIENCE,
        || async {
            h.server.json("/api/5/service").await["locations"]["berlin"]["display_name"] == "Berlin"
        },
    )
    .await;

    let (status, body) = h
        .put(
            "/admin/v1/locations/berlin",
            json!({
        "display_name": "Berlin-Mitte", "country_code": "DE"}),
        )
        .await;
    assert_eq!(status, 200, "{name}: {body}");
    assert_eq!(body["display_name"], "Berlin-Mitte");
    // the label cannot change, nor what does not exist or is the provider
    // file's
    for (label, body, expected) in [
        (
            "berlin",
            json!({"label": "paris", "display_name": "P", "country_code": "FR"}),
            422,
        ),
        (
            "nowhere",
            json!({"display_name": "N", "country_code": "FR"}),
            404,
        ),
        (
            "amsterdam",
            json!({"display_name": "A", "country_code": "NL"}),
            409,
        ),
    ] {
        let (status, answer) = h.put(&format!("/admin/v1/locations/{label}"), body).await;
        assert_eq!(status, expected, "{name}: {label}: {answer}");
    }

    // used: refused; unused again: deleted
    let (status, body) = h
        .post("/admin/v1/gateways", gateway("gw.ber", "Berlin"))
        .await;
    assert_eq!(status, 201, "{name}: {body}");
    assert_eq!(body["location"], "berlin", "{name}: canonical label");
    let (status, body) = h.delete("/admin/v1/locations/berlin").await;
    assert_eq!(status, 409, "{name}: {body}");
    assert_eq!(body["error"], "conflict");
    assert_says(&body, "used by");
    // the provider file's is refused; berlin, once unused, is deleted
    h.delete_each(
        name,
        &[
            ("/admin/v1/locations/amsterdam", 409),
            ("/admin/v1/gateways/gw.ber", 204),
            ("/admin/v1/locations/berlin", 204),
            ("/admin/v1/locations/berlin", 404),
        ],
    )
    .await;

    // the audit log, newest first, with before and after
    let audit = h
        .audit_of(
            &[
                "location.delete",
                "gateway.delete",
                "gateway.create",
                "location.update",
                "location.create",
            ],
            name,
        )
        .await;
    assert!(audit.iter().all(|a| a["actor"] == "alice"));
    let update = &audit[3];
    assert_eq!(update["target"], "location/berlin");
    assert_eq!(update["before"]["display_name"], "Berlin");
    assert_eq!(update["after"]["display_name"], "Berlin-Mitte");
    assert!(audit[0]["after"].is_null() && audit[0]["before"]["label"] == "berlin");
    assert!(audit[4]["before"].is_null() && audit[4]["after"]["label"] == "berlin");
    assert!(audit[0]["at_millis"].as_i64().unwrap() <= now_millis());
    let (_, page) = h
        .get(&format!(
            "/admin/v1/audit?limit=2&before={}",
            audit[1]["id"]
        ))
        .await;
    let page = super::actions(page.as_array().unwrap());
    assert_eq!(page, ["gateway.create", "location.update"], "{name}");
    let (status, _) = h.get("/admin/v1/audit?limit=0").await;
    assert_eq!(status, 400, "{name}");
}
