//! The OpenAPI 3 document served at `/api/v1/openapi.json`, written by hand.
//! The dashboard's endpoints come from [`crate::dashboard::openapi::paths`]. A test checks
//! that every route in [`crate::api::all_routes`] is described here and nothing else.

use serde_json::{Value, json};

fn op(summary: &str, tag: &str, security: Option<&str>, responses: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "tags": [tag],
        "responses": responses,
    });
    match security {
        Some(scheme) => op["security"] = json!([{ scheme: [] }]),
        None => op["security"] = json!([]),
    }
    op
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({
        "200": { "description": description, "content": { "application/json": { "schema": schema } } },
        "401": { "$ref": "#/components/responses/Unauthorized" },
        "403": { "$ref": "#/components/responses/Forbidden" },
    })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": reference(name) })
}

fn yaml_body() -> Value {
    json!({
        "required": true,
        "description": "The policy, as YAML text.",
        "content": { "application/yaml": { "schema": { "type": "string" } } },
    })
}

fn file_param() -> Value {
    json!({
        "name": "file", "in": "query", "required": false,
        "description": "Name the policy is checked under in diagnostics (default policy.yaml).",
        "schema": { "type": "string" },
    })
}

fn with_invalid(mut responses: Value) -> Value {
    responses["422"] = json!({ "$ref": "#/components/responses/InvalidPolicy" });
    responses
}

/// The document.
pub fn document() -> Value {
    let viewer = Some("viewer");
    let admin = Some("admin");
    let agent = Some("agent");
    let mut apply = op(
        "Apply a policy: checked, recorded, audited, re-planned and pushed. A policy with errors changes nothing.",
        "policy",
        admin,
        with_invalid(ok_json(
            "Applied (or unchanged when the text is the same).",
            reference("Applied"),
        )),
    );
    apply["requestBody"] = yaml_body();
    apply["parameters"] = json!([file_param()]);
    let mut validate = op(
        "Check a policy without changing anything.",
        "policy",
        viewer,
        with_invalid(ok_json("Valid, with warnings.", json!({"type": "object"}))),
    );
    validate["requestBody"] = yaml_body();
    validate["parameters"] = json!([file_param()]);
    let mut diff = op(
        "What applying a policy would change, one line per change.",
        "policy",
        viewer,
        with_invalid(ok_json("The changes.", reference("PolicyDiff"))),
    );
    diff["requestBody"] = yaml_body();
    diff["parameters"] = json!([file_param()]);
    let mut version = op(
        "One recorded policy version, text included.",
        "policy",
        viewer,
        ok_json("The version.", reference("PolicyVersion")),
    );
    version["parameters"] = json!([{ "name": "version", "in": "path", "required": true, "schema": { "type": "integer" } }]);
    version["responses"]["404"] = json!({ "description": "No such version." });
    let mut rollback = op(
        "Apply an earlier version's text again, as a new version: checked against today's rules (refused with its diagnostics, nothing changed, when it no longer passes), recorded and audited like any change.",
        "policy",
        admin,
        with_invalid(ok_json(
            "Applied, with `rolled_back_to` (unchanged when the text is the one in force).",
            reference("Applied"),
        )),
    );
    rollback["parameters"] = json!([{ "name": "version", "in": "query", "required": true, "schema": { "type": "integer" } }]);
    rollback["responses"]["404"] = json!({ "description": "No such version." });
    let mut decisions = op(
        "Steering decisions, newest last, each with its reason and measurements.",
        "steering",
        viewer,
        ok_json("Decisions.", array_of("Decision")),
    );
    decisions["parameters"] = json!([
        { "name": "site", "in": "query", "schema": { "type": "string" } },
        { "name": "class", "in": "query", "schema": { "type": "string" } },
        { "name": "limit", "in": "query", "schema": { "type": "integer", "default": 100, "maximum": 10000 } },
    ]);
    let mut site = op(
        "One site: its agent, lines with live health, and its published rule set.",
        "topology",
        viewer,
        ok_json("The site.", json!({"type": "object"})),
    );
    site["parameters"] =
        json!([{ "name": "site", "in": "path", "required": true, "schema": { "type": "string" } }]);
    site["responses"]["404"] = json!({ "description": "No such site." });
    let mut register = op(
        "Agent session: register the site's lines and what the agent runs.",
        "agent",
        agent,
        ok_json(
            "What the controller publishes for the site.",
            reference("RegisterReply"),
        ),
    );
    register["requestBody"] = json_body("Register");
    let mut report = op(
        "Agent session: per-line measurements, health events and per-class demand.",
        "agent",
        agent,
        json!({
            "204": { "description": "Ingested." },
            "401": { "$ref": "#/components/responses/Unauthorized" },
            "403": { "$ref": "#/components/responses/Forbidden" },
        }),
    );
    report["requestBody"] = json_body("Report");
    let mut ack = op(
        "Agent session: the agent applied (or failed to apply) a rule set version.",
        "agent",
        agent,
        ok_json(
            "The agent's drift after this ack.",
            json!({"type": "object", "properties": {"drift": reference("Drift")}}),
        ),
    );
    ack["requestBody"] = json_body("Ack");
    let mut rules = op(
        "Agent session: Server-Sent Events stream of rule sets. First event `in-sync` when `hash` is current, else `rule-set`; then `rule-set` on every new version.",
        "agent",
        agent,
        json!({
            "200": { "description": "An event stream.", "content": { "text/event-stream": { "schema": { "type": "string" } } } },
            "401": { "$ref": "#/components/responses/Unauthorized" },
            "403": { "$ref": "#/components/responses/Forbidden" },
        }),
    );
    rules["parameters"] = json!([{ "name": "hash", "in": "query", "required": false,
        "description": "Content hash of the rule set the agent runs.", "schema": { "type": "string" } }]);

    let mut audit = op(
        "The live audit log's entries, oldest first: policy changes (who, what changed), steering decisions, refused tokens. Rotated files are not read.",
        "audit",
        admin,
        ok_json("Entries.", array_of("AuditEntry")),
    );
    audit["parameters"] = json!([
        { "name": "since", "in": "query", "description": "Only entries at or after this time (ms since the epoch).", "schema": { "type": "integer" } },
        { "name": "kind", "in": "query", "schema": { "type": "string", "enum": ["policy_change", "decision", "auth_refused"] } },
        { "name": "limit", "in": "query", "description": "At most this many, the newest.", "schema": { "type": "integer", "default": 1000, "maximum": 10000 } },
    ]);
    audit["responses"]["400"] = json!({ "description": "Unknown kind." });

    let mut document = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "wansteer controller",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "SD-WAN traffic steering: sites, lines and their live health, where each class runs and why, decisions, the policy, agents and drift. Bearer tokens: viewer reads, admin changes; agent tokens open one site's session.",
        },
        "paths": {
            "/api/v1/openapi.json": { "get": op("This document. Public: it describes the API and holds no data.", "meta", None, json!({"200": {"description": "OpenAPI 3 document."}})) },
            "/metrics": { "get": op("Prometheus metrics (text format). Needs a viewer or admin token, unless the controller runs with --metrics-public.", "meta", viewer, json!({"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": {"description": "No or unknown token."}, "403": {"description": "An agent token."}})) },
            "/api/v1/sites": { "get": op("Sites with their agent's state and rule set versions.", "topology", viewer, ok_json("Sites.", array_of("Site"))) },
            "/api/v1/sites/{site}": { "get": site },
            "/api/v1/lines": { "get": op("Every WAN line with its capacity and live health.", "topology", viewer, ok_json("Lines.", array_of("Line"))) },
            "/api/v1/classes": { "get": op("Traffic classes and where each is placed, per site and destination, with the reason.", "steering", viewer, ok_json("Classes.", array_of("Class"))) },
            "/api/v1/decisions": { "get": decisions },
            "/api/v1/agents": { "get": op("Agents, the versions they run against the published ones, and drift.", "agents", viewer, ok_json("Agents.", array_of("Agent"))) },
            "/api/v1/policy": {
                "get": op("The policy in force (text, version, who, changes).", "policy", viewer, ok_json("The policy.", reference("PolicyVersion"))),
                "put": apply,
            },
            "/api/v1/policy/versions": { "get": op("Every policy version, oldest first, without its text (see /api/v1/policy/versions/{version}).", "policy", viewer, ok_json("Versions.", array_of("PolicyVersion"))) },
            "/api/v1/policy/versions/{version}": { "get": version },
            "/api/v1/policy/rollback": { "post": rollback },
            "/api/v1/policy/validate": { "post": validate },
            "/api/v1/policy/diff": { "post": diff },
            "/api/v1/agent/register": { "post": register },
            "/api/v1/agent/report": { "post": report },
            "/api/v1/agent/ack": { "post": ack },
            "/api/v1/agent/rules": { "get": rules },
            "/api/v1/audit": { "get": audit },
        },
        "components": {
            "securitySchemes": {
                "viewer": { "type": "http", "scheme": "bearer", "description": "API token with role viewer or admin." },
                "admin": { "type": "http", "scheme": "bearer", "description": "API token with role admin." },
                "agent": { "type": "http", "scheme": "bearer", "description": "The site's agent token." },
            },
            "responses": {
                "Unauthorized": { "description": "No bearer token, or an unknown or revoked one.", "content": { "application/json": { "schema": reference("Error") } } },
                "Forbidden": { "description": "The token's role may not do this.", "content": { "application/json": { "schema": reference("Error") } } },
                "InvalidPolicy": { "description": "The policy has errors; nothing was changed.", "content": { "application/json": { "schema": reference("InvalidPolicy") } } },
            },
            "schemas": schemas(),
        },
    });
    // The dashboard's own endpoints are API too (the page and its assets are not).
    let paths = document["paths"]
        .as_object_mut()
        .expect("paths is an object");
    if let Value::Object(dashboard) = crate::dashboard::openapi::paths() {
        paths.extend(dashboard);
    }
    document
}

fn json_body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": reference(schema) } } })
}

fn schemas() -> Value {
    let string = json!({"type": "string"});
    let int = json!({"type": "integer"});
    let number = json!({"type": "number"});
    let id =
        json!({"type": "object", "nullable": true, "properties": {"version": int, "hash": string}});
    json!({
        "Error": { "type": "object", "properties": { "error": string } },
        "Diagnostic": { "type": "object", "properties": {
            "file": string, "line": int, "column": int,
            "severity": { "type": "string", "enum": ["error", "warning"] },
            "message": string, "hint": { "type": "string", "nullable": true },
            "location": { "type": "string", "description": "file:line:column" } } },
        "InvalidPolicy": { "type": "object", "properties": {
            "error": string, "diagnostics": { "type": "array", "items": reference("Diagnostic") } } },
        "Applied": { "type": "object", "properties": {
            "version": int, "changed": { "type": "boolean" },
            "changes": { "type": "array", "items": string },
            "details": { "type": "array", "items": reference("PolicyChange") },
            "warnings": { "type": "array", "items": reference("Diagnostic") },
            "sites_republished": { "type": "array", "items": string },
            "tokens_added": { "type": "array", "items": string, "description": "Sites that got a fresh agent token in the generated tokens file (STATE/tokens.yaml)." } } },
        "PolicyDiff": { "type": "object", "properties": {
            "current_version": int, "changes": { "type": "array", "items": string },
            "details": { "type": "array", "items": reference("PolicyChange") },
            "warnings": { "type": "array", "items": reference("Diagnostic") } } },
        "PolicyChange": { "type": "object", "properties": {
            "area": { "type": "string", "enum": ["policy", "sites", "classes", "timers"] },
            "kind": { "type": "string", "enum": ["added", "removed", "changed"] },
            "subject": { "type": "string", "description": "What changed: `class voice`, `site branch-1 line lte`, `timers`." },
            "text": string } },
        "AuditEntry": { "type": "object", "required": ["kind", "at_ms"], "properties": {
            "kind": { "type": "string", "enum": ["policy_change", "decision", "auth_refused"] },
            "at_ms": int,
            "by": { "type": "string", "description": "policy_change: who." },
            "from_version": { "type": "integer", "nullable": true }, "to_version": int,
            "changes": { "type": "array", "items": string },
            "peer": { "type": "string", "description": "auth_refused: the client address." },
            "reason": string } },
        "PolicyVersion": { "type": "object", "properties": {
            "version": int, "file": string, "text": string, "by": string, "at_ms": int,
            "changes": { "type": "array", "items": string } } },
        "RuleSetId": id,
        "Drift": { "type": "string", "enum": ["in_sync", "behind", "failed", "no_rule_set", "never_connected"] },
        "Site": { "type": "object", "properties": {
            "name": string, "kind": { "type": "string", "enum": ["branch", "hub", "dc"] },
            "lan": { "type": "array", "items": string }, "lines": { "type": "array", "items": string },
            "drift": reference("Drift"), "connected": { "type": "boolean" },
            "published": reference("RuleSetId"), "applied": reference("RuleSetId"),
            "agent_version": { "type": "string", "nullable": true } } },
        "Line": { "type": "object", "properties": {
            "site": string, "line": string, "transport": string, "interface": string,
            "up_bps": int, "down_bps": int, "cost": number, "preference": int,
            "health": { "type": "string", "enum": ["up", "degraded", "down", "unknown"] },
            "rtt_ms": number, "loss_percent": number, "jitter_ms": number, "samples": int,
            "measured_at_ms": int,
            "class_bps": { "type": "object", "additionalProperties": int,
                "description": "Latest throughput per class on the line (bits/s), from the agents' demand reports." },
            "load_bps": int, "load_percent": { "type": "number", "description": "load_bps against up_bps." } } },
        "Class": { "type": "object", "properties": {
            "name": string, "priority": int, "sla": { "type": "object", "nullable": true },
            "placements": { "type": "array", "items": { "type": "object", "properties": {
                "site": string, "destination": string, "line": string,
                "backups": { "type": "array", "items": string }, "reason": string,
                "rule_set_version": int } } } } },
        "Decision": { "type": "object", "properties": {
            "at_ms": int, "site": string, "class": string, "destination": string,
            "from_line": { "type": "string", "nullable": true }, "to_line": string,
            "reason": string, "measurements": { "type": "object" } } },
        "Agent": { "type": "object", "properties": {
            "site": string, "drift": reference("Drift"), "connected": { "type": "boolean" },
            "published": reference("RuleSetId"),
            "agent": { "type": "object", "nullable": true },
            "last_report_ms": { "type": "integer", "nullable": true } } },
        "Register": { "type": "object", "required": ["protocol", "site", "agent_version", "lines"], "properties": {
            "protocol": int, "site": string, "agent_version": string,
            "lines": { "type": "array", "items": { "type": "object", "properties": { "name": string, "interface": string } } },
            "running": reference("RuleSetId") } },
        "RegisterReply": { "type": "object", "properties": {
            "protocol": int, "published": reference("RuleSetId"), "report_interval_ms": int } },
        "Report": { "type": "object", "required": ["site", "at_ms", "lines", "events", "demand"], "properties": {
            "site": string, "at_ms": int,
            "lines": { "type": "array", "items": { "type": "object", "properties": {
                "line": string, "rtt_ms": number, "loss_percent": number, "jitter_ms": number,
                "samples": int, "health": string } } },
            "events": { "type": "array", "items": { "type": "object" } },
            "demand": { "type": "array", "items": { "type": "object", "properties": {
                "class": string, "line": { "type": "string", "nullable": true },
                "destination": { "type": "string", "nullable": true }, "bps": int } } } } },
        "Ack": { "type": "object", "required": ["site", "version", "hash", "outcome"], "properties": {
            "site": string, "version": int, "hash": string,
            "outcome": { "type": "object", "properties": {
                "result": { "type": "string", "enum": ["applied", "failed"] },
                "error": string } } } },
    })
}
