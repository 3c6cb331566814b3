//! OpenAPI path items for the dashboard's endpoints, for [`crate::openapi::document`] to merge
//! (with [`ROUTES`] added to the list its test checks). The dashboard's page and assets are
//! not API and are left out.

use serde_json::{Value, json};

/// The dashboard's API routes as (method, path in OpenAPI form).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/whoami"),
    ("post", "/api/v1/events/ticket"),
    ("get", "/api/v1/events/stream"),
    ("get", "/api/v1/lines/{site}/{line}/history"),
];

fn refusals(mut responses: Value) -> Value {
    responses["401"] = json!({ "$ref": "#/components/responses/Unauthorized" });
    responses["403"] = json!({ "$ref": "#/components/responses/Forbidden" });
    responses
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// The path items, keyed by path.
pub fn paths() -> Value {
    let viewer = json!([{ "viewer": [] }]);
    let path_param = |name: &str, description: &str| {
        json!({ "name": name, "in": "path", "required": true, "description": description,
                "schema": { "type": "string" } })
    };
    json!({
        "/api/v1/whoami": { "get": {
            "summary": "The caller's name and role (the dashboard hides what a viewer may not do).",
            "tags": ["dashboard"], "security": viewer,
            "responses": refusals(json!({ "200": json_response("The caller.", json!({
                "type": "object", "required": ["name", "role"],
                "properties": { "name": { "type": "string" },
                                "role": { "type": "string", "enum": ["viewer", "admin"] } },
            })) })),
        }},
        "/api/v1/events/ticket": { "post": {
            "summary": "A single-use ticket, valid 30 s, that opens the event stream (EventSource cannot send a bearer token).",
            "tags": ["dashboard"], "security": viewer,
            "responses": refusals(json!({ "200": json_response("The ticket.", json!({
                "type": "object", "required": ["ticket", "expires_in_ms"],
                "properties": { "ticket": { "type": "string", "description": "64 hex digits." },
                                "expires_in_ms": { "type": "integer" } },
            })) })),
        }},
        "/api/v1/events/stream": { "get": {
            "summary": "Server-sent events: `hello` once, then `changed` with the parts of the state that changed (lines, decisions, policy, agents).",
            "tags": ["dashboard"], "security": [],
            "parameters": [{ "name": "ticket", "in": "query", "required": true,
                             "description": "From POST /api/v1/events/ticket; works once.",
                             "schema": { "type": "string" } }],
            "responses": {
                "200": { "description": "The stream.", "content": { "text/event-stream": { "schema": { "type": "string" } } } },
                "401": json_response("Missing, spent or expired ticket.", json!({ "$ref": "#/components/schemas/Error" })),
            },
        }},
        "/api/v1/lines/{site}/{line}/history": { "get": {
            "summary": "The last hour of a line's measurements and per-class throughput, and each class's SLA thresholds (RTT is twice the one-way latency).",
            "tags": ["dashboard"], "security": viewer,
            "parameters": [path_param("site", "Site name."), path_param("line", "Line name.")],
            "responses": refusals(json!({
                "200": json_response("Samples oldest first, and thresholds.", json!({
                    "type": "object",
                    "properties": {
                        "site": { "type": "string" }, "line": { "type": "string" },
                        "window_ms": { "type": "integer" },
                        "samples": { "type": "array", "items": { "type": "object", "properties": {
                            "at_ms": { "type": "integer" }, "rtt_ms": { "type": "number" },
                            "jitter_ms": { "type": "number" }, "loss_percent": { "type": "number" },
                            "health": { "type": "string", "enum": ["up", "degraded", "down", "unknown"] },
                            "class_bps": { "type": "object", "additionalProperties": { "type": "integer" },
                                           "description": "Throughput per class, bits/s." },
                        }}},
                        "thresholds": { "type": "array", "items": { "type": "object", "properties": {
                            "class": { "type": "string" },
                            "rtt_ms": { "type": "number", "nullable": true },
                            "jitter_ms": { "type": "number", "nullable": true },
                            "loss_percent": { "type": "number", "nullable": true },
                        }}},
                    },
                })),
                "404": json_response("No such line in the policy.", json!({ "$ref": "#/components/schemas/Error" })),
            })),
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_and_nothing_else() {
        let paths = paths();
        let described: Vec<(String, String)> = paths
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        let mut described = described;
        routes.sort();
        described.sort();
        assert_eq!(routes, described);
    }
}
