//! The window's types come from one source: `desktop/ui/types.js` holds a JSDoc `@typedef`
//! for every document the app sends to the window, generated here from the Rust view types
//! (their JSON Schema, which follows serde's attributes: renames, tags, optional fields). The
//! test fails when the checked-in file drifts; regenerate it with
//!
//! ```text
//! PARLEY_BLESS=1 cargo test -p parley-peer --test types
//! ```
//!
//! It also checks that the documents keep the bytes they have always had: sorted keys, `null`
//! where a value is missing.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use parley_peer::view;
use schemars::{JsonSchema, r#gen::SchemaSettings};
use serde_json::Value;

/// The JSDoc of every document the window receives (and of the types inside them).
fn typedefs() -> String {
    let mut generator = SchemaSettings::draft07().into_generator();
    // The documents a command answers with, or an event carries.
    generator.subschema_for::<view::Boot>();
    generator.subschema_for::<view::Conversation>();
    generator.subschema_for::<view::History>();
    generator.subschema_for::<view::Status>();
    generator.subschema_for::<view::Contact>();
    generator.subschema_for::<view::Event>();
    generator.subschema_for::<view::Outcome>();
    generator.subschema_for::<view::Read>();
    generator.subschema_for::<view::Trusted>();
    generator.subschema_for::<view::TotpEnabled>();
    generator.subschema_for::<view::TotpDisabled>();
    generator.subschema_for::<view::Saved>();
    generator.subschema_for::<view::Staged>();
    generator.subschema_for::<view::Invite>();
    generator.subschema_for::<view::Refusal>();
    let definitions: BTreeMap<String, Value> = generator
        .take_definitions()
        .into_iter()
        .map(|(name, schema)| {
            (
                name,
                serde_json::to_value(schema).expect("a schema is JSON"),
            )
        })
        .collect();

    let mut out = String::from(
        "// The documents the Parley app sends to its window, as JSDoc types.\n\
         // Generated from the Rust view types (adapters/peer/src/view.rs); do not edit by hand:\n\
         // PARLEY_BLESS=1 cargo test -p parley-peer --test types\n",
    );
    for (name, schema) in &definitions {
        out.push_str("\n/**\n");
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            for line in description.lines() {
                let _ = writeln!(out, " * {line}");
            }
        }
        match schema.get("properties").and_then(Value::as_object) {
            Some(properties) if schema.get("oneOf").is_none() => {
                let _ = writeln!(out, " * @typedef {{Object}} {name}");
                let required = required(schema);
                for (field, property) in properties {
                    let field = if required.contains(&field.as_str()) {
                        field.clone()
                    } else {
                        format!("[{field}]")
                    };
                    let about = property
                        .get("description")
                        .and_then(Value::as_str)
                        .map(|d| format!(" {}", d.replace('\n', " ")))
                        .unwrap_or_default();
                    let _ = writeln!(out, " * @property {{{}}} {field}{about}", js(property));
                }
            }
            _ => {
                let _ = writeln!(out, " * @typedef {{{}}} {name}", js(schema));
            }
        }
        out.push_str(" */\n");
    }
    out.push_str("\nexport {};\n");
    out
}

fn required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A schema as a JSDoc (TypeScript-flavoured) type expression.
fn js(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return union(values.iter().map(|v| v.to_string()));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            return union(options.iter().map(js));
        }
    }
    if let Some([only]) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return js(only);
    }
    match schema.get("type") {
        Some(Value::Array(types)) => union(types.iter().map(|t| {
            let mut one = schema.clone();
            one["type"] = t.clone();
            js(&one)
        })),
        Some(Value::String(t)) => match t.as_str() {
            "string" => "string".to_owned(),
            "integer" | "number" => "number".to_owned(),
            "boolean" => "boolean".to_owned(),
            "null" => "null".to_owned(),
            "array" => match schema.get("items") {
                Some(Value::Array(tuple)) => {
                    format!("[{}]", tuple.iter().map(js).collect::<Vec<_>>().join(", "))
                }
                Some(items) => format!("{}[]", atom(&js(items))),
                None => "Array<*>".to_owned(),
            },
            "object" => object(schema),
            other => panic!("no JSDoc for the JSON type {other}"),
        },
        _ => panic!("no JSDoc for the schema {schema}"),
    }
}

/// An inline object type, `{a: T, b?: U}`.
fn object(schema: &Value) -> String {
    let required = required(schema);
    let fields: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(field, property)| {
            let optional = if required.contains(&field.as_str()) {
                ""
            } else {
                "?"
            };
            format!("{field}{optional}: {}", js(property))
        })
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn union(parts: impl Iterator<Item = String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for part in parts {
        if !seen.contains(&part) {
            seen.push(part);
        }
    }
    seen.join("|")
}

/// `T` as an array's element: a union needs parentheses.
fn atom(t: &str) -> String {
    if t.contains('|') {
        format!("({t})")
    } else {
        t.to_owned()
    }
}

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../desktop/ui/types.js")
}

#[test]
fn the_windows_types_are_generated_from_the_view_types() {
    let generated = typedefs();
    let path = checked_in();
    if std::env::var_os("PARLEY_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write desktop/ui/types.js");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "desktop/ui/types.js does not match the Rust view types; regenerate it with \
         `PARLEY_BLESS=1 cargo test -p parley-peer --test types` and commit it"
    );
}

/// Reads `doc` as a `T` and writes it again: the bytes must not change.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize + JsonSchema>(doc: &str) {
    let value: T = serde_json::from_str(doc).expect("the document reads as its type");
    assert_eq!(
        serde_json::to_string(&value).expect("json"),
        doc,
        "the document's bytes changed"
    );
}

const MESSAGE: &str = r#"{"attachments":[{"index":0,"name":"a.txt","sha256":"ab","size":3}],"delivery":"received","delivery_at":"2026-11-22T10:00:01Z","direction":"incoming","expires_at":null,"from":"bob","id":"0123456789abcdef0123456789abcdef","reason":null,"sent_at":"2026-11-22T10:00:00Z","text":"hi","to":"alice","ttl":null,"verification":"verified","verified":true}"#;

#[test]
fn the_documents_keep_sorted_keys_and_nulls() {
    round_trip::<view::Message>(MESSAGE);
    round_trip::<view::History>(&format!(
        r#"{{"chain":{{"incoming":{{"faults":0,"last_seq":3,"missing":[[1,2]],"state":"gap"}},"outgoing":{{"last_seq":0,"state":"sealed"}}}},"messages":[{MESSAGE}],"with":"bob"}}"#
    ));
    round_trip::<Vec<view::Conversation>>(&format!(
        r#"[{{"last":{MESSAGE},"messages":1,"online":null,"ratchet":{{"last_step_at":"2026-11-22T10:00:02Z","steps":3}},"unread":1,"with":"bob"}}]"#
    ));
    round_trip::<view::Status>(
        r#"{"certificate":{"days_left":29,"expires_at":"2026-12-22T10:00:00Z"},"connections":[{"path":"relayed","peer_id":"12D4","user":"bob"}],"listen_addrs":["/ip4/127.0.0.1/tcp/1"],"outbox":1,"peer_id":"12D3","queued":1,"reachability":"private","rekeys":4,"relay":{"addrs":["/ip4/127.0.0.1/tcp/2/p2p/12D5/p2p-circuit/p2p/12D3"],"reserved":true},"rendezvous":{"addrs":["/ip4/127.0.0.1/tcp/2"],"connected":true},"rendezvous_connected":true,"user":"alice"}"#,
    );
    round_trip::<view::Status>(
        r#"{"certificate":{"days_left":2,"expires_at":"2026-11-25T10:00:00Z","warning":"this device's certificate expires in 2 days; keep the daemon running connected to the rendezvous so it renews itself, or run `parley enroll` again"},"connections":[],"home":"/home/a/.parley","listen_addrs":[],"outbox":2,"peer_id":"12D3","queued":0,"reachability":"unknown","rekeys":0,"relay":{"addrs":[],"reserved":false},"rendezvous":{"addrs":[],"connected":false},"rendezvous_connected":false,"user":"alice"}"#,
    );
    round_trip::<view::Contact>(
        r#"{"keys_changed":false,"pending_safety_number":null,"pinned_at":"2026-11-22T10:00:00Z","ratchet":{"last_step_at":null,"steps":0},"safety_number":"123","user":"bob"}"#,
    );
    round_trip::<view::Sent>(r#"{"delivered":true,"id":"00","queued":false,"to":"bob"}"#);
    round_trip::<view::Sent>(r#"{"delivered":false,"id":"00","queued":true,"to":"bob"}"#);
    round_trip::<view::Trusted>(r#"{"trusted":true,"user":"bob"}"#);
    round_trip::<view::Saved>(r#"{"bytes":3,"saved":"/tmp/a.txt"}"#);
    round_trip::<view::Read>(r#"{"with":"bob"}"#);
    round_trip::<view::Event>(&format!(r#"{{"event":"message","message":{MESSAGE}}}"#));
    round_trip::<view::Event>(r#"{"event":"delivered","id":"00","to":"bob"}"#);
    round_trip::<view::Event>(r#"{"event":"queued","id":"00","to":"bob"}"#);
    round_trip::<view::Event>(r#"{"event":"presence","online":false,"user":"bob"}"#);
    round_trip::<view::Event>(r#"{"event":"refused","from":"bob","reason":"altered"}"#);
}
