//! The OpenAPI 3.1 description, generated from the handlers' annotations: their response types
//! are the bodies they serialize, errors are the one [`Problem`] schema as
//! `application/problem+json` ([`crate::error::answers`]), request bodies are [`super::bodies`].
//! Nothing imports this module but the router.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{accounts, capabilities, fleet, health, legacy, processes, queue_items};
use crate::error::Problem;
use crate::error::answers::{
    BadRequest, Conflict, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthorized,
    Unavailable, Unprocessable, UnsupportedMediaType,
};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Phonefarm API", description = "Runs work on fleets of Android phones."),
    paths(
        processes::enqueue, processes::maintenance, processes::get, processes::list,
        processes::cancel,
        legacy::ingest, legacy::cancel, legacy::snapshot,
        accounts::put, accounts::get, accounts::list,
        capabilities::list, capabilities::put,
        health::healthz, health::readyz, health::metrics,
        fleet::agents, fleet::phones, fleet::phone, fleet::put_phone, fleet::move_phone,
        fleet::phone_moves, fleet::reboot_phone, fleet::locate_phone,
        queue_items::get, queue_items::retry,
    ),
    components(
        schemas(Problem<'static>),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
                  UnsupportedMediaType, Unprocessable, Internal, Unavailable),
    ),
    modifiers(&Security),
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use utoipa::OpenApi;

    fn spec() -> Value {
        serde_json::to_value(super::ApiDoc::openapi()).expect("the OpenAPI document serializes")
    }

    fn operations(spec: &Value) -> Vec<(String, String, Value)> {
        let mut ops = Vec::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                ops.push((method.clone(), path.clone(), op.clone()));
            }
        }
        ops
    }

    /// Statuses every operation of a kind can answer, whatever its handler does: the auth
    /// extractor (401, 500 `auth_not_configured`, 503), the JSON body extractor (413, 415,
    /// 422), the path extractor (400).
    #[test]
    fn every_operation_documents_the_errors_its_extractors_answer() {
        let spec = spec();
        let mut missing = Vec::new();
        for (method, path, op) in operations(&spec) {
            let responses = op["responses"].as_object().expect("responses");
            let mut need: Vec<&str> = vec!["500"];
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if secured {
                need.extend(["401", "503"]);
            }
            if op.get("requestBody").is_some() {
                need.extend(["413", "415", "422"]);
            }
            if path.contains('{') {
                need.push("400");
            }
            for code in need {
                if !responses.contains_key(code) {
                    missing.push(format!("{method} {path}: {code}"));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented statuses: {missing:#?}");
    }

    /// Error answers are the one problem schema with its media type; success answers are JSON
    /// with a schema (or the metrics' text).
    #[test]
    fn errors_are_problems_and_successes_have_a_schema() {
        let spec = spec();
        let components = &spec["components"]["responses"];
        let mut wrong = Vec::new();
        for (method, path, op) in operations(&spec) {
            for (code, resp) in op["responses"].as_object().expect("responses") {
                let resp = match resp.get("$ref").and_then(Value::as_str) {
                    Some(r) => &components[r.trim_start_matches("#/components/responses/")],
                    None => resp,
                };
                let content = resp["content"].as_object();
                let ok = match (code.starts_with('2'), content) {
                    (_, None) => false,
                    (true, Some(c)) => c
                        .iter()
                        .all(|(mime, m)| mime == "text/plain" || m.get("schema").is_some()),
                    (false, Some(c)) => {
                        (code == "503" && path == "/readyz")
                            || c.get("application/problem+json").is_some_and(|m| {
                                m["schema"]["$ref"] == "#/components/schemas/Problem"
                            })
                    }
                };
                if !ok {
                    wrong.push(format!("{method} {path} {code}: {resp}"));
                }
            }
        }
        assert!(wrong.is_empty(), "responses not as documented: {wrong:#?}");
    }
}
